"""A project-local PostgreSQL 15 cluster: create, start, stop, report.

The cluster runs Debian's PostgreSQL 15 with TimescaleDB, pg_cron and PL/Python preloaded. Run as root, the
server runs as the ``postgres`` OS user (initdb refuses root), so the data directory and the Python packages that
PL/Python imports must be readable by that user. The postmaster starts with PYTHONPATH set to this interpreter's
site-packages so that PL/Python imports the project's numpy, onnxruntime and scikit-learn.

When ``PGTRADE_DATABASE_URL`` is set nothing here is used: every command talks to that server instead.

By default the server listens on 127.0.0.1 only. The docker image sets ``PGTRADE_LISTEN`` (``listen_addresses``,
e.g. ``*``) and ``PGTRADE_HBA_NETWORKS`` (networks, or ``all``, allowed to log in over TCP with scram-sha-256).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from .errors import PgtradeError

PG_BIN = Path(os.environ.get("PGTRADE_PG_BIN", "/usr/lib/postgresql/15/bin"))
DEFAULT_PORT = 54329
DB_NAME = "pgtrade"
SUPERUSER = "postgres"


def _server_settings(dbname: str) -> dict[str, str]:
    """The postgresql.conf settings pgtrade needs; the one place they are chosen."""
    return {
        "shared_preload_libraries": "'timescaledb,pg_cron,pg_stat_statements'",
        # latency of the key procedures (ops.metrics_statements): nested statements too, so the closed-bars step
        # that the ingest trigger runs shows on its own (see docs/operations.md, Metrics, for its measured cost)
        "pg_stat_statements.track": "'all'",
        "pg_stat_statements.max": "10000",
        "timescaledb.telemetry_level": "off",
        "timescaledb.max_background_workers": "8",
        # TimescaleDB's scheduler, pg_cron's workers and parallel query share this pool (8 is too few).
        "max_worker_processes": "24",
        "cron.database_name": f"'{dbname}'",
        # pg_cron runs jobs in background workers: no password or libpq connection needed.
        "cron.use_background_workers": "on",
        "cron.max_running_jobs": "5",
        "cron.timezone": "'UTC'",
        "timezone": "'UTC'",
        "log_timezone": "'UTC'",
        "max_connections": "100",
        "shared_buffers": "'512MB'",
        "work_mem": "'32MB'",
        "maintenance_work_mem": "'256MB'",
        # SSD-class storage and a mostly cached working set: index scans in time order (ordered chunk append,
        # no sort) beat bitmap scans plus a sort for range reads.
        "random_page_cost": "1.1",
        "effective_cache_size": "'8GB'",
        "max_wal_size": "'4GB'",
        "logging_collector": "off",
        "log_min_messages": "warning",
    }


@dataclass(frozen=True, kw_only=True)
class Cluster:
    """A local cluster's locations. ``home`` holds ``data/``, the log, the password file and the socket."""

    home: Path
    port: int
    dbname: str = DB_NAME
    #: postgresql.conf settings that override pgtrade's (tests use it to run a server without TimescaleDB)
    overrides: tuple[tuple[str, str], ...] = ()
    #: listen_addresses ($PGTRADE_LISTEN; ``*`` in the docker image)
    listen: str = "127.0.0.1"
    #: networks besides loopback whose clients may log in with scram-sha-256 ($PGTRADE_HBA_NETWORKS)
    hba_networks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.listen or any(c in self.listen for c in "'\\\n"):
            raise PgtradeError(f"PGTRADE_LISTEN must be addresses for listen_addresses, not {self.listen!r}")
        for net in self.hba_networks:
            if net != "all":
                try:
                    ipaddress.ip_network(net, strict=False)
                except ValueError as exc:
                    raise PgtradeError(f"PGTRADE_HBA_NETWORKS: {net!r} is neither a network (CIDR) nor 'all'") from exc

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_file(self) -> Path:
        return self.home / "server.log"

    @property
    def password_file(self) -> Path:
        return self.home / "password"

    @property
    def socket_dir(self) -> Path:
        return self.home

    def password(self) -> str:
        try:
            return self.password_file.read_text().strip()
        except FileNotFoundError as exc:
            raise PgtradeError(f"no cluster at {self.home} (run: pgtrade db up)") from exc

    def url(self, dbname: str | None = None) -> str:
        return (
            f"postgresql://{SUPERUSER}:{quote(self.password(), safe='')}@127.0.0.1:{self.port}/{dbname or self.dbname}"
        )

    def socket_url(self, dbname: str | None = None) -> str:
        """The URL through the Unix socket (works while the server listens on no TCP address)."""
        return (
            f"postgresql://{SUPERUSER}:{quote(self.password(), safe='')}@/{dbname or self.dbname}"
            f"?host={quote(str(self.socket_dir), safe='')}&port={self.port}"
        )

    # -- state ---------------------------------------------------------------------------------------------
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def running(self) -> bool:
        if not self.initialized():
            return False
        res = _run_as_server_user([str(PG_BIN / "pg_ctl"), "status", "-D", str(self.data_dir)], check=False)
        return res.returncode == 0

    # -- lifecycle -----------------------------------------------------------------------------------------
    def init(self, password: str | None = None) -> None:
        """Create the data directory (initdb) with pgtrade's settings; a no-op when it exists.

        The superuser's password is ``password`` (the docker image passes $POSTGRES_PASSWORD), else a random one.
        """
        if self.initialized():
            return
        if password is not None and (not password.strip() or "\n" in password):
            raise PgtradeError("the superuser password must be one non-empty line")
        _require_binaries()
        self.home.mkdir(parents=True, exist_ok=True)
        self.password_file.write_text((password or secrets.token_urlsafe(24)) + "\n")
        self.password_file.chmod(0o600)
        owner = _server_user()
        pwfile = self.home / ".pwfile"
        pwfile.write_text(self.password())
        try:
            if owner is not None:
                _chown(self.home, owner)
                _check_reachable(self.home, owner.pw_name)
            _run_as_server_user(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                    f"--pwfile={pwfile}",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        conf = self.data_dir / "postgresql.conf"
        settings = _server_settings(self.dbname) | {
            "port": str(self.port),
            "listen_addresses": f"'{self.listen}'",
            "unix_socket_directories": f"'{self.socket_dir}'",
        }
        settings |= dict(self.overrides)
        with conf.open("a") as fh:
            fh.write("\n# --- pgtrade ---\n")
            fh.writelines(f"{k} = {v}\n" for k, v in settings.items())
        if self.hba_networks:
            with (self.data_dir / "pg_hba.conf").open("a") as fh:
                fh.write("\n# --- pgtrade: clients on these networks log in with a password ---\n")
                fh.writelines(f"host all all {net} scram-sha-256\n" for net in self.hba_networks)

    def start(self, *, socket_only: bool = False) -> None:
        """Start the server with PYTHONPATH set for PL/Python; a no-op when it runs already.

        ``socket_only``: listen on the Unix socket alone (the docker entry point migrates before clients may come).
        """
        if self.running():
            return
        if _port_in_use(self.port):
            raise PgtradeError(
                f"port {self.port} on 127.0.0.1 is taken by another program (set PGTRADE_PORT to another port)"
            )
        cmd = [str(PG_BIN / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.data_dir), "-l", str(self.log_file)]
        if socket_only:
            cmd += ["-o", "-c listen_addresses=''"]
        res = _run_as_server_user(cmd, check=False, env=server_env())
        if res.returncode != 0:
            tail = _tail(self.log_file)
            raise PgtradeError(f"the server did not start (log {self.log_file}): {tail}")

    def stop(self) -> None:
        if self.running():
            _run_as_server_user([str(PG_BIN / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self.data_dir)])

    def create_database(self, maintenance_url: str | None = None) -> None:
        """Create the pgtrade database if missing (connects to the maintenance database)."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(maintenance_url or self.url("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.dbname,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.dbname)))

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)


def server_env() -> dict[str, str]:
    """The whole environment the postmaster runs with (PYTHONPATH for PL/Python)."""
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": plpython_path()}


def plpython_path() -> str:
    """Where PL/Python finds the project's packages: this interpreter's site-packages."""
    paths = sysconfig.get_paths()
    return os.pathsep.join(dict.fromkeys([paths["purelib"], paths["platlib"]]))


def default_cluster() -> Cluster:
    """The cluster for this checkout: ``$PGTRADE_HOME`` or ``./.pgtrade`` (see ``_reachable_home``)."""
    home = Path(os.environ.get("PGTRADE_HOME") or Path.cwd() / ".pgtrade").resolve()
    port = int(os.environ.get("PGTRADE_PORT", DEFAULT_PORT))
    listen = os.environ.get("PGTRADE_LISTEN") or "127.0.0.1"
    networks = tuple(os.environ.get("PGTRADE_HBA_NETWORKS", "").replace(",", " ").split())
    return Cluster(home=_reachable_home(home), port=port, listen=listen, hba_networks=networks)


def _reachable_home(home: Path) -> Path:
    """As root the server runs as ``postgres``, which cannot enter e.g. /root. Then the cluster lives under
    /var/lib/pgtrade/<hash of the requested home> instead (stable, so every command finds the same one)."""
    owner = _server_user()
    if owner is None or _can_traverse(home.parent, owner.pw_name):
        return home
    digest = hashlib.sha1(str(home).encode()).hexdigest()[:10]
    return Path("/var/lib/pgtrade") / f"{home.parent.name or 'root'}-{digest}"


def _server_user() -> pwd.struct_passwd | None:
    """The OS user the server runs as when we are root; None when we run it as ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError as exc:
        raise PgtradeError("running as root needs the 'postgres' OS user (apt-get install postgresql-15)") from exc


def _run_as_server_user(cmd: list[str], *, check: bool = True, env: dict[str, str] | None = None):
    owner = _server_user()
    prefix = ["runuser", "-u", owner.pw_name, "--"] if owner is not None else []
    if env is not None:
        prefix += ["env", "-i", *(f"{k}={v}" for k, v in env.items())]
    res = subprocess.run([*prefix, *cmd], capture_output=True, text=True, cwd="/")
    if check and res.returncode != 0:
        detail = (res.stderr or res.stdout).strip().splitlines()
        raise PgtradeError(f"{Path(cmd[0]).name} failed: {detail[-1] if detail else res.returncode}")
    return res


def _require_binaries() -> None:
    if not (PG_BIN / "initdb").exists():
        raise PgtradeError(f"PostgreSQL 15 not found at {PG_BIN} (run: sudo scripts/install-system.sh)")


def _chown(path: Path, owner: pwd.struct_passwd) -> None:
    for p in [path, *path.rglob("*")]:
        os.chown(p, owner.pw_uid, owner.pw_gid)


def _can_traverse(path: Path, user: str) -> bool:
    probe = path
    while not probe.exists():
        probe = probe.parent
    return subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(probe)], capture_output=True).returncode == 0


def _check_reachable(home: Path, user: str) -> None:
    if not _can_traverse(home, user):
        raise PgtradeError(f"the '{user}' OS user cannot enter {home}; set PGTRADE_HOME to a directory it can reach")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for throwaway test clusters)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
