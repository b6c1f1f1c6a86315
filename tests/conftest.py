"""Test database: a real PostgreSQL 15 with TimescaleDB, pg_cron, PL/Python and pgTAP.

Where the server comes from, in order: ``PGTRADE_DATABASE_URL`` (an existing server; the URL must name a superuser
and a database where pg_cron may be created), a Docker engine through testcontainers (the project's db image), or a
throwaway local cluster started with the same code as ``pgtrade db up``. The schema is built once per session;
each test runs in a transaction that is rolled back (``db``), or commits with names of its own (``db_url``).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cluster_support import throwaway_cluster
from psycopg import sql

from pgtrade.migrate import migrate

TEST_DB = "pgtrade_test"
ROOT = Path(__file__).resolve().parent.parent


def _docker_reachable() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        import docker  # testcontainers' dependency

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A URL to the test database on a running server with pgtrade's extensions."""
    if os.environ.get("PGTRADE_DATABASE_URL"):
        yield os.environ["PGTRADE_DATABASE_URL"]
        return
    if _docker_reachable():
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.image import DockerImage
        from testcontainers.core.waiting_utils import wait_for_logs

        with DockerImage(path=str(ROOT), dockerfile_path="docker/db/Dockerfile", tag="pgtrade-db:test") as image:
            # The entry point migrates on a socket-only server first; only the final server logs "ready".
            with (
                DockerContainer(str(image))
                .with_env("POSTGRES_PASSWORD", "test")
                .with_env("POSTGRES_DB", TEST_DB)
                .with_exposed_ports(5432)
                .with_kwargs(shm_size="256m")
            ) as c:
                wait_for_logs(c, "database system is ready to accept connections", timeout=300)
                yield (f"postgresql://postgres:test@{c.get_container_host_ip()}:{c.get_exposed_port(5432)}/{TEST_DB}")
        return
    with throwaway_cluster("test", TEST_DB, migrated=False) as cluster:  # db_url migrates it
        yield cluster.url()


@pytest.fixture(scope="session")
def db_url(server_url: str) -> str:
    """The migrated test database (built once per session), with pgTAP."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        migrate(conn)
        conn.execute("CREATE EXTENSION IF NOT EXISTS pgtap")
    return server_url


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg.Connection]:
    """A connection inside a transaction that is rolled back after the test."""
    with psycopg.connect(db_url) as conn:
        yield conn
        conn.rollback()


@pytest.fixture
def scratch_db(server_url: str) -> Iterator[str]:
    """An empty database of its own on the same server (for migration tests); dropped afterwards."""
    name = f"pgtrade_scratch_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    info = psycopg.conninfo.conninfo_to_dict(server_url) | {"dbname": name}
    try:
        yield psycopg.conninfo.make_conninfo(**info)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def unique_symbol() -> str:
    """A symbol no other test uses (for tests that commit)."""
    return f"T{uuid.uuid4().hex[:8].upper()}"
