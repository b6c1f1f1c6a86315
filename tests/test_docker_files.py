"""The docker files, checked without a Docker engine (none on the build machines).

- docker-compose.yml resolves (``docker compose config`` when the compose plugin is installed, else the YAML read
  here with compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` interpolation) to the services and
  settings PostgREST needs, with the JWT secret taken from the environment.
- docker/db/Dockerfile installs the system through scripts/install-system.sh and copies only files that exist.
- docker/db/entrypoint.sh parses, and run on this machine (as in the image, as root) it creates a cluster, migrates,
  serves in the foreground as ``postgres``, stops on SIGINT, and on its second start sets the PostgREST login
  role's password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
import yaml

from pgtrade.cluster import Cluster, default_cluster, free_port
from pgtrade.errors import PgtradeError

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "docker" / "db" / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "db" / "entrypoint.sh"
SECRET = "jwt-secret-from-the-environment-0123456789"
ENV = {
    "POSTGRES_PASSWORD": "pw0123456789",
    "PGRST_AUTHENTICATOR_PASSWORD": "auth0123456789",
    "PGRST_JWT_SECRET": SECRET,
}


# ------------------------------------------------------------------------------------------------ compose
def _compose_plugin() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\?)([^}]*))?\}")


def _interpolate(value, env: dict[str, str]):
    """Compose's variable syntax, as far as docker-compose.yml uses it."""
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        name, op, arg = m.groups()
        if env.get(name):
            return env[name]
        if op == ":?":
            raise ValueError(f"required variable {name} is missing a value: {arg}")
        return arg if op == ":-" else ""

    return _VAR.sub(sub, value)


def compose_config(env: dict[str, str]) -> dict:
    """The resolved compose file (all profiles), from `docker compose config` or read here."""
    if _compose_plugin():
        with tempfile.NamedTemporaryFile("w", suffix=".env") as no_dotenv:  # not a developer's own .env
            res = subprocess.run(
                [
                    "docker",
                    "compose",
                    "--env-file",
                    no_dotenv.name,
                    "-f",
                    str(COMPOSE),
                    "--profile",
                    "cli",
                    "config",
                    "--format",
                    "json",
                ],
                capture_output=True,
                text=True,
                cwd=tempfile.gettempdir(),
                env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **env},
            )
        if res.returncode != 0:
            raise ValueError(res.stderr.strip())
        return json.loads(res.stdout)
    return _interpolate(yaml.safe_load(COMPOSE.read_text()), env)


def _env_of(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # the list form KEY=VALUE
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _ports(service: dict) -> set[tuple[str, str, str]]:
    out = set()
    for p in service.get("ports", []):
        if isinstance(p, dict):  # docker compose config's long form
            out.add((p.get("host_ip", ""), str(p["published"]), str(p["target"])))
        else:
            ip, published, target = str(p).split("/")[0].split(":")
            out.add((ip, published, target))
    return out


def test_compose_defines_db_postgrest_and_cli_with_what_postgrest_needs():
    cfg = compose_config(ENV)
    services = cfg["services"]
    assert {"db", "postgrest", "cli"} <= set(services)

    db = services["db"]
    assert Path(db["build"]["context"]).resolve() in (ROOT, Path(".").resolve()) or db["build"]["context"] == "."
    assert db["build"]["dockerfile"] in ("docker/db/Dockerfile", str(DOCKERFILE))
    assert ("127.0.0.1", "54329", "5432") in _ports(db)
    assert any("/var/lib/pgtrade" in (v if isinstance(v, str) else v["target"]) for v in db["volumes"])
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    db_env = _env_of(db)
    assert db_env["POSTGRES_PASSWORD"] == ENV["POSTGRES_PASSWORD"]
    assert db_env["PGRST_AUTHENTICATOR_PASSWORD"] == ENV["PGRST_AUTHENTICATOR_PASSWORD"]
    assert db_env["POSTGRES_DB"] == "pgtrade"

    api = services["postgrest"]
    assert re.fullmatch(r"postgrest/postgrest:v12\.\d+\.\d+", api["image"])
    api_env = _env_of(api)
    assert api_env["PGRST_DB_SCHEMAS"] == "api"
    assert api_env["PGRST_DB_ANON_ROLE"] == "web_anon"
    assert api_env["PGRST_JWT_SECRET"] == SECRET
    assert api_env["PGRST_DB_URI"] == f"postgres://authenticator:{ENV['PGRST_AUTHENTICATOR_PASSWORD']}@db:5432/pgtrade"
    assert api_env["PGRST_OPENAPI_SERVER_PROXY_URI"].startswith("http")
    assert ("127.0.0.1", "3000", "3000") in _ports(api)
    assert api["depends_on"]["db"]["condition"] == "service_healthy"

    cli = services["cli"]
    assert _env_of(cli)["PGTRADE_DATABASE_URL"] == f"postgresql://postgres:{ENV['POSTGRES_PASSWORD']}@db:5432/pgtrade"
    assert cli["image"] == db["image"]


def test_jwt_secret_and_passwords_come_from_the_environment_never_the_file():
    raw = yaml.safe_load(COMPOSE.read_text())
    assert re.fullmatch(
        r"\$\{PGRST_JWT_SECRET:\?[^}]+\}", raw["services"]["postgrest"]["environment"]["PGRST_JWT_SECRET"]
    )
    for name in ENV:
        without = {k: v for k, v in ENV.items() if k != name}
        with pytest.raises(ValueError, match=name):
            compose_config(without)


def test_env_example_names_every_required_variable():
    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    required = set(re.findall(r"\$\{([A-Z_]+):\?", COMPOSE.read_text()))
    assert required == set(ENV)
    assert required <= set(example)
    assert ".env" in (ROOT / ".gitignore").read_text().split()


# ------------------------------------------------------------------------------------------------ images
def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_db_dockerfile_runs_the_projects_install_script_not_a_copy_of_it():
    ins = _instructions(DOCKERFILE)
    assert ins[0] == ("FROM", "debian:bookworm-slim")
    runs = " ".join(rest for word, rest in ins if word == "RUN")
    assert re.search(r"\bbash /opt/pgtrade/src/scripts/install-system\.sh\b", runs)
    assert ("COPY", "scripts/install-system.sh /opt/pgtrade/src/scripts/install-system.sh") in ins
    # the packages are the script's business: the Dockerfile names none of them
    assert not re.search(r"postgresql-15|timescaledb-2|packagecloud", runs)
    assert "/usr/bin/python3 -m venv /opt/pgtrade/venv" in runs
    assert any(w == "ENTRYPOINT" and "entrypoint.sh" in r for w, r in ins)
    assert any(w == "HEALTHCHECK" and "pg_isready" in r for w, r in ins)
    assert ("VOLUME", "/var/lib/pgtrade") in ins


def test_every_file_the_dockerfile_copies_exists_and_is_in_the_build_context():
    ignored = [p for p in (ROOT / ".dockerignore").read_text().split() if not p.startswith("#")]
    for word, rest in _instructions(DOCKERFILE):
        if word != "COPY":
            continue
        *sources, _dest = rest.split()
        for src in sources:
            assert (ROOT / src).exists(), f"COPY {src}: no such file in the repository"
            assert not any(src == pat or src.startswith(pat + "/") for pat in ignored), f"{src} is .dockerignored"


def test_entrypoint_is_valid_bash_and_executes_postgres_in_place():
    res = subprocess.run(["bash", "-n", str(ENTRYPOINT)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert os.access(ENTRYPOINT, os.X_OK)
    text = ENTRYPOINT.read_text()
    assert re.search(r"^exec setpriv --reuid=postgres .*\n.*/bin/postgres -D", text, re.M)


def test_make_jwt_signs_the_trader_claims_with_the_secret():
    res = subprocess.run(
        [sys.executable, str(ROOT / "docker" / "make_jwt.py"), "--account", "alice"],
        capture_output=True,
        text=True,
        env={**os.environ, "PGRST_JWT_SECRET": SECRET},
        check=True,
    )
    header, payload, sig = res.stdout.strip().split(".")
    expected = hmac.new(SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)) == expected
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["role"] == "trader" and claims["account"] == "alice" and claims["exp"] > time.time()
    short = subprocess.run(
        [sys.executable, str(ROOT / "docker" / "make_jwt.py")],
        capture_output=True,
        text=True,
        env={**os.environ, "PGRST_JWT_SECRET": "short"},
    )
    assert short.returncode != 0 and "32 characters" in short.stderr


# ------------------------------------------------------------------------------------------------ cluster
def test_listen_and_host_auth_come_from_the_environment_and_default_to_loopback(monkeypatch, tmp_path):
    monkeypatch.setenv("PGTRADE_HOME", str(tmp_path))
    monkeypatch.delenv("PGTRADE_LISTEN", raising=False)
    monkeypatch.delenv("PGTRADE_HBA_NETWORKS", raising=False)
    assert (default_cluster().listen, default_cluster().hba_networks) == ("127.0.0.1", ())
    monkeypatch.setenv("PGTRADE_LISTEN", "*")
    monkeypatch.setenv("PGTRADE_HBA_NETWORKS", "all, 172.16.0.0/12")
    assert (default_cluster().listen, default_cluster().hba_networks) == ("*", ("all", "172.16.0.0/12"))
    with pytest.raises(PgtradeError, match="PGTRADE_HBA_NETWORKS"):
        Cluster(home=tmp_path, port=1, hba_networks=("everyone",))
    with pytest.raises(PgtradeError, match="PGTRADE_LISTEN"):
        Cluster(home=tmp_path, port=1, listen="*'; evil = '1")


def _start_entrypoint(env: dict[str, str], log: Path) -> subprocess.Popen:
    fh = log.open("w")
    return subprocess.Popen(
        [str(ENTRYPOINT)],
        stdout=fh,
        stderr=subprocess.STDOUT,
        cwd="/",
        env={k: v for k, v in os.environ.items() if k != "PGTRADE_DATABASE_URL"} | env,
    )


def _wait_for(log: Path, proc: subprocess.Popen, text: str, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = log.read_text()
        if text in out:
            return out
        if proc.poll() is not None:
            pytest.fail(f"entrypoint exited {proc.returncode}: {out[-2000:]}")
        time.sleep(0.2)
    pytest.fail(f"no {text!r} within {timeout}s: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGINT)  # the image's STOPSIGNAL
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def test_entrypoint_prepares_the_cluster_then_serves_in_the_foreground(tmp_path):
    if os.geteuid() != 0:  # the image runs it as root; as anyone else it must refuse in one line
        res = subprocess.run([str(ENTRYPOINT)], capture_output=True, text=True)
        assert res.returncode == 1 and "runs as root" in res.stderr
        return
    base = Path(tempfile.mkdtemp(prefix="pgtrade-entrypoint-", dir="/tmp"))
    base.chmod(0o755)
    port = free_port()
    env = {
        "PGTRADE_HOME": str(base / "home"),
        "PGTRADE_PORT": str(port),
        "PGTRADE_LISTEN": "127.0.0.1",
        "PGTRADE_HBA_NETWORKS": "all",
        "PGTRADE_VENV": str(Path(sys.executable).parent.parent),
        "POSTGRES_DB": "pgtrade_docker",
        "POSTGRES_PASSWORD": "pw-first",
        "PGRST_AUTHENTICATOR_PASSWORD": "auth",
    }
    url = f"postgresql://postgres:pw-first@127.0.0.1:{port}/pgtrade_docker"
    try:
        proc = _start_entrypoint(env, base / "first.log")
        try:
            out = _wait_for(base / "first.log", proc, "database system is ready to accept connections")
            # migration 0010 creates the API roles, so the first start already sets the login's password
            assert "password of role authenticator set" in out and "no role authenticator yet" not in out
            # exec all the way down: the process we started is the postmaster, running as postgres
            assert Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"/bin/postgres")
            assert Path(f"/proc/{proc.pid}").stat().st_uid != 0
            with psycopg.connect(url, autocommit=True) as conn:
                assert conn.execute("SELECT count(*) > 0 FROM ops.schema_migrations").fetchone()[0]
                assert conn.execute("SHOW cron.database_name").fetchone()[0] == "pgtrade_docker"
                assert conn.execute(
                    "SELECT rolcanlogin AND NOT rolinherit FROM pg_roles WHERE rolname = 'authenticator'"
                ).fetchone()[0]
        finally:
            assert _stop(proc) == 0
        assert "host all all all scram-sha-256" in (base / "home" / "data" / "pg_hba.conf").read_text()

        proc = _start_entrypoint(env | {"POSTGRES_PASSWORD": "ignored-now"}, base / "second.log")
        try:
            out = _wait_for(base / "second.log", proc, "database system is ready to accept connections")
            assert "migrations applied: none new" in out
            assert "password of role authenticator set" in out
            url_auth = f"postgresql://authenticator:auth@127.0.0.1:{port}/pgtrade_docker"
            with psycopg.connect(url_auth) as conn:
                assert conn.execute("SELECT current_user").fetchone()[0] == "authenticator"
            psycopg.connect(url).close()  # the volume's password stays
        finally:
            assert _stop(proc) == 0
    finally:
        shutil.rmtree(base, ignore_errors=True)
