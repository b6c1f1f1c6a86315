"""A throwaway PostgreSQL cluster of pgtrade's settings (pgtrade.cluster.Cluster) in a temporary home, created,
started, with its database, migrated from this checkout's db/ unless told otherwise, and destroyed afterwards: the
test session's server (conftest.py) and the tests and benchmarks that need a server of their own (settings of their
own, killing or restarting it, a replica beside it) all start theirs here."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from pgtrade.cluster import Cluster, free_port
from pgtrade.migrate import migrate


@contextmanager
def throwaway_cluster(
    prefix: str, dbname: str, *, overrides: tuple[tuple[str, str], ...] = (), migrated: bool = True
) -> Iterator[Cluster]:
    """Yield a running cluster (home ``/tmp/pgtrade-<prefix>-*/cluster``; siblings of ``cluster`` in that directory,
    e.g. a replica's home, go with it). A server left half-dead by a test (killed, crashed) is killed at the end."""
    home = Path(tempfile.mkdtemp(prefix=f"pgtrade-{prefix}-", dir="/tmp"))
    os.chmod(home, 0o755)  # the postgres OS user runs the server
    cluster = Cluster(home=home / "cluster", port=free_port(), dbname=dbname, overrides=overrides)
    try:
        cluster.init()
        cluster.start()
        cluster.create_database()
        if migrated:
            with psycopg.connect(cluster.url(), autocommit=True) as conn:
                migrate(conn)
        yield cluster
    finally:
        try:
            cluster.destroy()
        except Exception:  # noqa: BLE001 - a test failed half-way through a crash: end what is left of it
            pid_file = cluster.data_dir / "postmaster.pid"
            if pid_file.exists():
                try:
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        shutil.rmtree(home, ignore_errors=True)
