"""A streaming read replica of a local pgtrade cluster, from Debian's PostgreSQL 15 packages.

The replica is a physical copy of the primary (``pg_basebackup -R``, run as the server's OS user) that streams the
primary's WAL and serves read-only queries (``hot_standby``) on a port of its own: the `api` views and read
functions, dashboards, and the read-heavy part of backtests (docs/scaling.md says what runs where). It replicates
the whole cluster: every database, role and extension (TimescaleDB's chunks and continuous aggregates included).

Least privilege: the replica logs in as ``pgtrade_replicator``, a role with LOGIN and REPLICATION only (no
superuser, no database privileges, member of nothing), whose random password is kept beside the primary's
(``<primary home>/replicator_password``, mode 0600) and in the replica's ``postgresql.auto.conf`` (``primary_conninfo``,
written by ``pg_basebackup -R``; mode 0600, the server's OS user). pgtrade's pg_hba.conf already admits replication
connections from 127.0.0.1 with scram-sha-256 (initdb's lines); a replica on another machine needs a ``host
replication pgtrade_replicator <its address> scram-sha-256`` line on the primary.
"""

from __future__ import annotations

import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .cluster import (
    PG_BIN,
    Cluster,
    _check_reachable,
    _chown,
    _require_binaries,
    _run_as_server_user,
    _server_user,
    server_env,
)
from .errors import PgtradeError

REPLICATION_ROLE = "pgtrade_replicator"

#: Settings of the standby on top of the primary's (the copied postgresql.conf): later lines win.
_STANDBY_SETTINGS = {
    # read-only queries while it replays (the default in PostgreSQL 15; stated, since everything here depends on it)
    "hot_standby": "on",
    # long reads (a backtest's bars, a dashboard) are not cancelled because the primary vacuumed rows they still
    # see; the cost is that the primary keeps those rows until the read ends
    "hot_standby_feedback": "on",
    # a read that still conflicts with replay (e.g. a lock of a DROP of a chunk) may hold replay back this long
    "max_standby_streaming_delay": "'30s'",
}


def ensure_replication_role(primary: Cluster) -> str:
    """Create (or re-assert) the replication login on the primary; return its password (kept in the primary's home).

    Only LOGIN and REPLICATION: it can stream WAL and take base backups, and nothing else (no CONNECT is needed for
    a physical replication connection, and it owns and belongs to nothing).
    """
    import psycopg
    from psycopg import sql

    pw_file = primary.home / "replicator_password"
    if pw_file.exists():
        password = pw_file.read_text().strip()
    else:
        password = secrets.token_urlsafe(24)
        pw_file.write_text(password + "\n")
        pw_file.chmod(0o600)
    with psycopg.connect(primary.url("postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (REPLICATION_ROLE,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(
            sql.SQL(
                "{} ROLE {} LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT PASSWORD {}"
            ).format(sql.SQL(verb), sql.Identifier(REPLICATION_ROLE), sql.Literal(password))
        )
        conn.execute(
            sql.SQL("COMMENT ON ROLE {} IS {}").format(
                sql.Identifier(REPLICATION_ROLE),
                sql.Literal("pgtrade: streaming replicas log in as this role (LOGIN, REPLICATION, nothing else)"),
            )
        )
    return password


@dataclass(frozen=True, kw_only=True)
class Replica:
    """A hot standby of ``primary`` in ``home`` (``data/``, its log, the password file), listening on ``port``."""

    primary: Cluster
    home: Path
    port: int
    #: application_name of its replication connection (its row of pg_stat_replication on the primary); by default
    #: pgtrade_replica_<port>, so that several replicas of one primary are told apart
    name: str = ""

    @property
    def application_name(self) -> str:
        return self.name or f"pgtrade_replica_{self.port}"

    @property
    def cluster(self) -> Cluster:
        """The replica as a local cluster (start, stop, url, running); its superuser password is the primary's."""
        return Cluster(home=self.home, port=self.port, dbname=self.primary.dbname)

    def url(self, dbname: str | None = None) -> str:
        return self.cluster.url(dbname)

    def initialized(self) -> bool:
        return self.cluster.initialized()

    def running(self) -> bool:
        return self.cluster.running()

    def create(self) -> None:
        """Copy the running primary with pg_basebackup (WAL streamed alongside, fast checkpoint) and configure the
        copy as a hot standby on this replica's port; a no-op when it exists."""
        if self.initialized():
            return
        _require_binaries()
        if not self.primary.running():
            raise PgtradeError(f"the primary at {self.primary.home} is not running (start it: pgtrade db up)")
        password = ensure_replication_role(self.primary)
        self.home.mkdir(parents=True, exist_ok=True)
        owner = _server_user()
        if owner is not None:
            _chown(self.home, owner)
            _check_reachable(self.home, owner.pw_name)
        conninfo = (
            f"host=127.0.0.1 port={self.primary.port} user={REPLICATION_ROLE} application_name={self.application_name}"
        )
        res = _run_as_server_user(
            [
                str(PG_BIN / "pg_basebackup"),
                "-D",
                str(self.cluster.data_dir),
                "-d",
                conninfo,
                "-R",  # standby.signal + primary_conninfo in postgresql.auto.conf
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-password",
            ],
            check=False,
            env=server_env() | {"PGPASSWORD": password},
        )
        if res.returncode != 0:
            detail = (res.stderr or res.stdout).strip().splitlines()
            shutil.rmtree(self.cluster.data_dir, ignore_errors=True)
            raise PgtradeError(f"pg_basebackup failed: {detail[-1] if detail else res.returncode}")
        settings = _STANDBY_SETTINGS | {"port": str(self.port), "unix_socket_directories": f"'{self.home}'"}
        with (self.cluster.data_dir / "postgresql.conf").open("a") as fh:
            fh.write("\n# --- pgtrade: streaming replica (pgtrade/replica.py) ---\n")
            fh.writelines(f"{k} = {v}\n" for k, v in settings.items())
        self.cluster.password_file.write_text(self.primary.password() + "\n")
        self.cluster.password_file.chmod(0o600)

    def start(self) -> None:
        self.cluster.start()

    def stop(self) -> None:
        self.cluster.stop()

    def destroy(self) -> None:
        self.cluster.destroy()

    def wait_streaming(self, timeout: float = 60) -> None:
        """Wait until the primary lists this replica as streaming (bounded poll)."""
        import psycopg

        deadline = time.monotonic() + timeout
        with psycopg.connect(self.primary.url("postgres"), autocommit=True) as conn:
            while True:
                row = conn.execute(
                    "SELECT state FROM pg_stat_replication WHERE application_name = %s", (self.application_name,)
                ).fetchone()
                if row and row[0] == "streaming":
                    return
                if time.monotonic() > deadline:
                    raise PgtradeError(
                        f"the replica did not start streaming within {timeout:.0f} s (log {self.cluster.log_file})"
                    )
                time.sleep(0.1)

    def status(self) -> dict:
        """What the primary and the replica say about the stream: state, LSNs, lag in bytes and time."""
        import psycopg
        from psycopg.rows import dict_row

        info: dict = {"home": str(self.home), "port": self.port, "initialized": self.initialized()}
        info["running"] = info["initialized"] and self.running()
        if self.primary.running():
            with psycopg.connect(self.primary.url("postgres"), autocommit=True, row_factory=dict_row) as conn:
                info["primary"] = conn.execute(REPLICATION_STATUS_SQL, (self.application_name,)).fetchone()
        if info["running"]:
            with psycopg.connect(self.url("postgres"), autocommit=True, row_factory=dict_row) as conn:
                info["standby"] = conn.execute(STANDBY_STATUS_SQL).fetchone()
        return info


#: On the primary: the replica's row of pg_stat_replication with the lag as bytes of WAL and as time.
REPLICATION_STATUS_SQL = """
SELECT r.application_name, r.state, r.sync_state, r.sent_lsn::text, r.write_lsn::text, r.flush_lsn::text,
       r.replay_lsn::text, pg_current_wal_lsn()::text AS primary_lsn,
       pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::bigint AS replay_lag_bytes,
       extract(epoch FROM r.write_lag) * 1000 AS write_lag_ms,
       extract(epoch FROM r.flush_lag) * 1000 AS flush_lag_ms,
       extract(epoch FROM r.replay_lag) * 1000 AS replay_lag_ms
FROM pg_stat_replication r WHERE r.application_name = %s
"""

#: On the replica: recovery state, what it received and replayed, and the commit time of the last replayed
#: transaction.
STANDBY_STATUS_SQL = """
SELECT pg_is_in_recovery() AS in_recovery, pg_last_wal_receive_lsn()::text AS receive_lsn,
       pg_last_wal_replay_lsn()::text AS replay_lsn, pg_last_xact_replay_timestamp() AS last_replayed_commit,
       (SELECT status FROM pg_stat_wal_receiver) AS receiver_status
"""


# ---------------------------------------------------------------------------------------------------- CLI
def default_replica() -> Replica:
    """The replica of this checkout's cluster: in ``<cluster home>/replica``, port ``$PGTRADE_REPLICA_PORT`` or the
    primary's + 1."""
    import os

    from .cluster import default_cluster

    primary = default_cluster()
    port = int(os.environ.get("PGTRADE_REPLICA_PORT") or primary.port + 1)
    return Replica(primary=primary, home=primary.home / "replica", port=port)


def _register_cli() -> None:
    import click

    from .cli import _local_cluster, console, db, emit_json, redact, user_errors

    @db.group("replica")
    def replica_group() -> None:
        """A streaming read replica of the local cluster (hot standby on its own port; docs/scaling.md)."""

    @replica_group.command("up")
    @user_errors
    def replica_up() -> None:
        """Copy the running primary (pg_basebackup), start the copy as a hot standby and wait until it streams."""
        _local_cluster()  # refuses when PGTRADE_DATABASE_URL names a server pgtrade does not manage
        rep = default_replica()
        created = not rep.initialized()
        rep.create()
        rep.start()
        rep.wait_streaming()
        state = "created and streaming" if created else "streaming"
        console.print(
            f"replica {state}: {redact(rep.url())} (read-only; data in {rep.cluster.data_dir})", highlight=False
        )

    @replica_group.command("status")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    @user_errors
    def replica_status(as_json: bool) -> None:
        """Whether the replica runs and streams, and its lag (bytes of WAL and time) as the primary sees it."""
        _local_cluster()
        rep = default_replica()
        info = rep.status()
        if rep.initialized():
            info["url"] = redact(rep.url())
        if as_json:
            emit_json(info)
        else:
            prim, stby = info.get("primary") or {}, info.get("standby") or {}
            console.print(
                f"replica: {'running' if info['running'] else 'not running'} on port {rep.port} ({rep.home})\n"
                f"primary sees: {prim.get('state', 'no replication connection')}, replay lag "
                f"{prim.get('replay_lag_bytes')} bytes, {prim.get('replay_lag_ms')} ms\n"
                f"standby: receiver {stby.get('receiver_status')}, replayed up to {stby.get('replay_lsn')}, "
                f"last replayed commit {stby.get('last_replayed_commit')}",
                highlight=False,
            )
        if not info["running"]:
            raise SystemExit(3)

    @replica_group.command("down")
    @click.option("--destroy", is_flag=True, help="Also delete the replica's data directory.")
    @user_errors
    def replica_down(destroy: bool) -> None:
        """Stop the replica (the primary is not touched); --destroy deletes its copy."""
        _local_cluster()
        rep = default_replica()
        if destroy:
            rep.destroy()
            console.print("replica stopped and deleted")
        else:
            rep.stop()
            console.print("replica stopped")


_register_cli()
