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
from pgtrade.migrate import migrate

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "docker" / "db" / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "db" / "entrypoint.sh"
SECRET = "jwt-secret-from-the-environment-0123456789"
ENV = {
    "POSTGRES_PASSWORD": "pw0123456789",
    "PGRST_AUTHENTICATOR_PASSWORD": "auth0123456789",
    "PGRST_JWT_SECRET": SECRET,
    "PGTRADE_MONITOR_PASSWORD": "mon0123456789",
    "GRAFANA_ADMIN_PASSWORD": "graf0123456789",
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
    assert re.fullmatch(r"postgrest/postgrest:v1[4-9]\.\d+", api["image"])  # 14+: `postgrest --ready`
    api_env = _env_of(api)
    assert api_env["PGRST_DB_SCHEMAS"] == "api"
    assert api_env["PGRST_DB_ANON_ROLE"] == "web_anon"
    assert api_env["PGRST_JWT_SECRET"] == SECRET
    # PostgREST reaches the database through pgbouncer (transaction pooling: docs/reliability.md, "Load"), which
    # forwards to db:5432 as the same login role; neither prepared statements nor LISTEN survive transaction pooling
    pw = ENV["PGRST_AUTHENTICATOR_PASSWORD"]
    assert api_env["PGRST_DB_URI"] == f"postgres://authenticator:{pw}@pgbouncer:6432/pgtrade"
    assert (api_env["PGRST_DB_PREPARED_STATEMENTS"], api_env["PGRST_DB_CHANNEL_ENABLED"]) == ("false", "false")
    assert api_env["PGRST_OPENAPI_SERVER_PROXY_URI"].startswith("http")
    assert ("127.0.0.1", "3000", "3000") in _ports(api)
    assert api["depends_on"]["pgbouncer"]["condition"] == "service_healthy"
    bouncer = services["pgbouncer"]
    assert _env_of(bouncer)["PGRST_AUTHENTICATOR_PASSWORD"] == pw and not bouncer.get("ports")
    assert bouncer["depends_on"]["db"]["condition"] == "service_healthy"
    ini = (ROOT / "docker" / "pgbouncer" / "pgbouncer.ini").read_text()
    for setting in ("* = host=db port=5432", "listen_port = 6432", "pool_mode = transaction"):
        assert re.search(rf"^{re.escape(setting)}$", ini, re.M), setting
    for line in (ROOT / "docker" / "pgbouncer" / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            assert (ROOT / line.split()[1]).is_file(), line

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
        "PGTRADE_MONITOR_PASSWORD": "mon",
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
            # postgres_exporter's login, as the compose file gives it (DATA_SOURCE_USER/PASS)
            assert "password of role pgtrade_monitor set from PGTRADE_MONITOR_PASSWORD" in out
            with psycopg.connect(f"postgresql://pgtrade_monitor:mon@127.0.0.1:{port}/pgtrade_docker") as conn:
                assert conn.execute("SELECT current_user").fetchone()[0] == "pgtrade_monitor"
            psycopg.connect(url).close()  # the volume's password stays
        finally:
            assert _stop(proc) == 0
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ compose: the stack
SCHEMA = ROOT / "tests" / "fixtures" / "compose-spec.json"  # see tests/fixtures/compose-spec.md: source and version
SERVICES = {
    "db",
    "pgbouncer",
    "postgrest",
    "swagger-ui",
    "sample",
    "feed",
    "postgres_exporter",
    "prometheus",
    "grafana",
    "cli",
}


def _env_example() -> dict[str, str]:
    return dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )


def test_compose_file_is_valid_against_the_compose_specification_schema():
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    raw = yaml.safe_load(COMPOSE.read_text())
    resolved = _interpolate(raw, _env_example())  # as written, and with every variable substituted
    for doc in (raw, resolved):
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
        assert not errors, errors
    # the schema does refuse what compose would: an unknown key, a port in a wrong shape
    broken = json.loads(json.dumps(raw))
    broken["services"]["feed"]["healthcheck"]["tst"] = ["CMD", "true"]
    broken["services"]["grafana"]["ports"] = [{"published": "x", "nonsense": 1}]
    assert len(list(validator.iter_errors(broken))) >= 2


def _compose_v1(env_file: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker-compose", "--env-file", str(env_file), "-f", str(COMPOSE), "--profile", "cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")},
    )


def test_docker_compose_v1_resolves_the_file_with_an_env_made_from_env_example(tmp_path):
    """Debian's docker-compose 1.29 (a real compose implementation; it validates against its own copy of the
    compose-spec schema) resolves the file with .env.example's values, and refuses it without a required one."""
    env_file = tmp_path / ".env"
    env_file.write_text((ROOT / ".env.example").read_text())
    res = _compose_v1(env_file, "config")
    assert res.returncode == 0, res.stderr
    cfg = yaml.safe_load(res.stdout)
    example = _env_example()
    assert set(cfg["services"]) == SERVICES
    assert set(cfg["volumes"]) == {"pgtrade-data", "prometheus-data", "grafana-data"}
    exporter = _env_of(cfg["services"]["postgres_exporter"])
    assert exporter["DATA_SOURCE_PASS"] == example["PGTRADE_MONITOR_PASSWORD"]
    assert exporter["DATA_SOURCE_USER"] == "pgtrade_monitor"
    assert _env_of(cfg["services"]["db"])["PGTRADE_MONITOR_PASSWORD"] == example["PGTRADE_MONITOR_PASSWORD"]
    grafana = _env_of(cfg["services"]["grafana"])
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == example["GRAFANA_ADMIN_PASSWORD"]
    assert _env_of(cfg["services"]["swagger-ui"])["API_URL"].startswith(example["PGRST_OPENAPI_SERVER_PROXY_URI"])
    ports = {name: _ports(svc) for name, svc in cfg["services"].items() if svc.get("ports")}
    assert ports == {
        "db": {("127.0.0.1", example["PGTRADE_DB_PORT"], "5432")},
        "postgrest": {("127.0.0.1", example["POSTGREST_PORT"], "3000")},
        "swagger-ui": {("127.0.0.1", example["SWAGGER_UI_PORT"], "8080")},
        "prometheus": {("127.0.0.1", example["PROMETHEUS_PORT"], "9090")},
        "grafana": {("127.0.0.1", example["GRAFANA_PORT"], "3000")},
    }
    env_file.write_text(
        "".join(f"{line}\n" for line in env_file.read_text().splitlines() if not line.startswith("GRAFANA_ADMIN_PASS"))
    )
    res = _compose_v1(env_file, "config")
    assert res.returncode != 0 and "GRAFANA_ADMIN_PASSWORD" in res.stderr


def test_every_variable_of_the_compose_file_is_in_env_example_and_back():
    text = COMPOSE.read_text()
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    assert not re.findall(r"\$(?![{$])", text), "a bare $VAR: write ${VAR}"
    assert used == set(_env_example()), used ^ set(_env_example())
    # nothing secret in the repository: every password/secret/key variable is empty or a placeholder there
    for name, value in _env_example().items():
        if re.search(r"PASSWORD|SECRET|_KEY$", name):
            assert value == "" or "change-me" in value or "replace-with" in value, name


def test_every_service_is_pinned_published_on_loopback_health_checked_and_ordered():
    raw = yaml.safe_load(COMPOSE.read_text())
    services = raw["services"]
    assert set(services) == SERVICES
    for name, svc in services.items():
        image = svc["image"]
        if "build" not in svc:
            repo, _, tag = image.rpartition(":")
            assert repo and tag and tag != "latest" and re.search(r"\d", tag), f"{name}: pin {image}"
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} must bind to 127.0.0.1"
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert cond["condition"] in ("service_healthy", "service_completed_successfully"), (name, dep)
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep] or dep == "db", f"{name} waits on {dep}, which has no check"
        long_running = "profiles" not in svc and svc.get("restart") != "no"
        assert ("healthcheck" in svc) == long_running, f"{name}: health check on every long-running service"
        if long_running:
            check = svc["healthcheck"]
            assert check["test"][0] in ("CMD", "CMD-SHELL") and not check.get("disable"), f"{name}: a real check"
        for vol in svc.get("volumes", []):
            source = vol.split(":", 1)[0]
            if not source.startswith("."):
                assert source in raw["volumes"], f"{name}: {source} is not a named volume"
    assert services["feed"]["depends_on"]["sample"]["condition"] == "service_completed_successfully"
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    assert services["swagger-ui"]["depends_on"]["postgrest"]["condition"] == "service_healthy"


def _bind_mounts() -> list[tuple[str, Path, str]]:
    out = []
    for name, svc in yaml.safe_load(COMPOSE.read_text())["services"].items():
        for vol in svc.get("volumes", []):
            source, target, *_ = vol.split(":")
            if source.startswith("."):
                out.append((name, (ROOT / source).resolve(), target))
    return out


def test_every_file_the_compose_file_mounts_exists():
    """The monitoring files (docker/prometheus, docker/postgres_exporter, docker/grafana) are mounted by path."""
    mounts = _bind_mounts()
    assert {n for n, _, _ in mounts} == {"postgres_exporter", "prometheus", "grafana"}
    missing = [str(p.relative_to(ROOT)) for _, p, _ in mounts if not p.exists()]
    assert not missing, f"mounted but not in the repository: {missing}"
    dashboards = ROOT / "docker" / "grafana" / "dashboards"
    assert sorted(dashboards.glob("*.json")), "no dashboard JSON under docker/grafana/dashboards"
    providers = ROOT / "docker" / "grafana" / "provisioning"
    assert (providers / "datasources").is_dir() and (providers / "dashboards").is_dir()
    text = "".join(p.read_text() for p in (providers / "dashboards").glob("*.y*ml"))
    assert "/var/lib/grafana/dashboards" in text  # where the compose file mounts the dashboards


# ------------------------------------------------------------------------------------------------ services, run here
FEED_SH = ROOT / "docker" / "db" / "feed.sh"
IN_IMAGE = "/opt/pgtrade/docker/"  # where the Dockerfile copies docker/db/*.sh


def _native(argv: list[str]) -> list[str]:
    """A service's command as the image has it, pointed at this checkout's copy of the script."""
    return [str(ROOT / "docker" / "db" / a.removeprefix(IN_IMAGE)) if a.startswith(IN_IMAGE) else a for a in argv]


@pytest.fixture
def stack_db(scratch_db: str) -> str:
    """A migrated database of its own (the feed loads the sample into it)."""
    with psycopg.connect(scratch_db, autocommit=True) as conn:
        migrate(conn)
    return scratch_db


def _feed_env(url: str) -> dict[str, str]:
    cfg_env = _env_of(compose_config(ENV)["services"]["feed"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGTRADE_", "FEED_", "ALPACA_"))}
    # the compose file's environment of the service, with the database URL of this test
    return (
        env
        | cfg_env
        | {
            "PGTRADE_DATABASE_URL": url,
            "PGTRADE_BIN": f"{sys.executable} -m pgtrade.cli",
            "PYTHONPATH": str(ROOT),
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        }
    )


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_feed_loads_the_sample_once_then_streams_and_a_restart_resumes(stack_db):
    """The sample and feed services' commands (docker/db/feed.sh, as the compose file gives them), run here against
    a real database: the sample loads once (a second start finds it stored), the stream is healthy while it runs,
    and a second stream continues the replay where the first stopped (--resume)."""
    services = compose_config(ENV)["services"]
    env = _feed_env(stack_db)
    assert env["PGTRADE_LOG_JSON"] == "1" and env["FEED_SOURCE"] == "auto"
    manifest = json.loads((ROOT / "data" / "manifest.json").read_text())

    first = subprocess.run(_native(services["sample"]["command"]), capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    lines = _json_lines(first.stderr)
    end = next(e for e in lines if e["event"] == "load.end")
    assert end["status"] == "done" and end["inserted"] == sum(m["rows"] for m in manifest)
    with psycopg.connect(stack_db) as conn:
        row = conn.execute(
            "SELECT kind, source, status, inserted, rejected FROM ops.ingest_runs WHERE id = %s", (end["run_id"],)
        ).fetchone()
    assert row == ("load", "sample", "done", end["inserted"], 0)
    again = subprocess.run(_native(services["sample"]["command"]), capture_output=True, text=True, env=env)
    assert again.returncode == 0 and "stored already" in again.stderr

    health = _native(services["feed"]["healthcheck"]["test"][1:])  # ["CMD", ...]
    assert subprocess.run(health, capture_output=True, env=env).returncode == 1  # no stream yet: unhealthy

    def stream(*bound: str) -> list[dict]:
        proc = subprocess.Popen(
            [*_native(services["feed"]["command"]), *bound], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        healthy = False
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline and not healthy:
            healthy = subprocess.run(health, capture_output=True, env=env).returncode == 0
            time.sleep(0.3)
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert healthy, "the health check never saw the stream's session"
        return _json_lines(err.decode())

    # two bounded runs, 30 simulated minutes each, placed so they do not overlap (the second ends now)
    run1 = stream("--speed", "600", "--duration", "3", "--ends-ago", "60")
    run2 = stream("--speed", "600", "--duration", "3")
    end1, end2 = (next(e for e in r if e["event"] == "stream.end") for r in (run1, run2))
    assert end1["inserted"] > 0 and end2["inserted"] > 0 and end1["run_id"] != end2["run_id"]
    with psycopg.connect(stack_db) as conn:
        closes = [
            r[0]
            for r in conn.execute(
                "SELECT close FROM market.bars WHERE symbol = 'SPX' AND interval = '1d' ORDER BY ts"
            ).fetchall()
        ]
        replayed = [
            r[0]
            for r in conn.execute(
                "SELECT close FROM market.bars WHERE symbol = 'SPX' AND interval = '1m' AND source LIKE 'replay:%' "
                "ORDER BY ts"
            ).fetchall()
        ]
        runs = conn.execute(
            "SELECT status, inserted FROM ops.ingest_runs WHERE id = ANY(%s) ORDER BY id",
            ([end1["run_id"], end2["run_id"]],),
        ).fetchall()
    # the replay of both runs together is the stored history from its first bar on, without a gap or a repeat
    assert replayed == closes[: len(replayed)] and len(replayed) > end1["inserted"] // 2
    assert runs == [("done", end1["inserted"]), ("done", end2["inserted"])]


def test_feed_chooses_alpaca_when_both_keys_are_set(tmp_path):
    """FEED_SOURCE=auto: the stream command feed.sh runs (a stand-in for pgtrade records its arguments)."""
    argv_file = tmp_path / "argv"
    fake = tmp_path / "pgtrade"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {argv_file}\n')
    fake.chmod(0o755)
    base = {"PATH": os.environ["PATH"], "PGTRADE_DATABASE_URL": "postgresql://unused", "PGTRADE_BIN": str(fake)}
    for extra, expected in (
        ({}, ["--source", "replay", "--symbols", "SPX,IXIC", "--interval", "1m", "--resume"]),
        ({"ALPACA_API_KEY": "k"}, ["--source", "replay"]),  # one key is not enough
        (
            {"ALPACA_API_KEY": "k", "ALPACA_SECRET_KEY": "s", "FEED_SYMBOLS": "AAPL"},
            ["--source", "alpaca", "--symbols", "AAPL", "--interval", "1m", "--poll", "30"],
        ),
    ):
        res = subprocess.run([str(FEED_SH), "stream"], capture_output=True, text=True, env=base | extra)
        assert res.returncode == 0, res.stderr
        argv = argv_file.read_text().split()
        assert argv[0] == "stream" and argv[1 : 1 + len(expected)] == expected, argv
    res = subprocess.run([str(FEED_SH), "stream"], capture_output=True, text=True, env=base | {"FEED_SOURCE": "x"})
    assert res.returncode == 2 and "FEED_SOURCE" in res.stderr


def _rerooted(service: dict, root: Path, listen: dict[str, int]) -> list[str]:
    """The service's command with every container path under ``root`` (where its mounts are laid out) and each
    ``--web.listen-address=:PORT`` on 127.0.0.1 at the free port ``listen`` maps PORT to."""
    out = []
    for arg in service["command"]:
        flag, eq, value = arg.partition("=")
        if flag == "--web.listen-address":
            value = f"127.0.0.1:{listen[value.lstrip(':')]}"
        elif value.startswith("/"):
            value = str(root / value.lstrip("/"))
        out.append(f"{flag}{eq}{value}" if eq else arg)
    return out


def _lay_out_mounts(name: str, root: Path) -> None:
    for service, source, target in _bind_mounts():
        if service == name:
            dest = root / target.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            assert source.exists(), f"{source.relative_to(ROOT)} (mounted by {name}) is missing"
            shutil.copy(source, dest) if source.is_file() else shutil.copytree(source, dest)


def _busybox_path(tmp: Path) -> str:
    """A PATH whose wget is busybox's: the wget the exporter, Prometheus, Grafana and Swagger UI images ship."""
    busybox = shutil.which("busybox")
    assert busybox, "busybox is not installed (scripts/install-system.sh installs it)"
    shim = tmp / "busybox-bin"
    shim.mkdir()
    (shim / "wget").symlink_to(busybox)
    return f"{shim}:{os.environ['PATH']}"


def _healthcheck(service: dict, ports: dict[str, int], path: str) -> int:
    test = service["healthcheck"]["test"]
    for inside, outside in ports.items():
        test = [t.replace(f"127.0.0.1:{inside}", f"127.0.0.1:{outside}") for t in test]
    argv = ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
    return subprocess.run(argv, capture_output=True, env={"PATH": path}, timeout=20).returncode


def _http_json(url: str) -> dict:
    import urllib.parse
    import urllib.request

    head, sep, query = url.partition("?query=")
    with urllib.request.urlopen(head + sep + urllib.parse.quote(query), timeout=5) as resp:
        return json.loads(resp.read())


def test_exporter_and_prometheus_run_with_the_compose_files_command_lines(stack_db, tmp_path):
    """postgres_exporter and Prometheus (Debian's builds) started with the compose file's arguments, environment and
    mounted files (laid out under a directory as in the containers), against a real database: both health checks
    (run with busybox's wget, as in the images) pass, and Prometheus scrapes every query of queries.yaml."""
    import signal as _signal

    services = compose_config(ENV)["services"]
    info = psycopg.conninfo.conninfo_to_dict(stack_db)
    sys.path.insert(0, str(ROOT / "docker" / "db"))
    try:
        import prepare  # the db entry point's helper: sets the exporter login's password as the container does
    finally:
        sys.path.pop(0)
    with psycopg.connect(stack_db, autocommit=True) as conn:
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'pgtrade_monitor'").fetchone(), (
            "no role pgtrade_monitor (the exporter's login; created by migrate)"
        )
        os.environ["PGTRADE_MONITOR_PASSWORD"] = ENV["PGTRADE_MONITOR_PASSWORD"]
        try:
            prepare.set_login_password(conn, "pgtrade_monitor", "PGTRADE_MONITOR_PASSWORD")
        finally:
            del os.environ["PGTRADE_MONITOR_PASSWORD"]
    path = _busybox_path(tmp_path)
    procs: list[subprocess.Popen] = []
    try:
        # ---- the exporter
        exp = services["postgres_exporter"]
        exp_root = tmp_path / "exporter"
        _lay_out_mounts("postgres_exporter", exp_root)
        exp_port = free_port()
        exp_env = _env_of(exp)
        assert exp_env["DATA_SOURCE_URI"].startswith("db:5432/pgtrade?")
        exp_env["DATA_SOURCE_URI"] = exp_env["DATA_SOURCE_URI"].replace(
            "db:5432/pgtrade", f"{info['host']}:{info['port']}/{info['dbname']}"
        )
        exp_log = (tmp_path / "exporter.log").open("w")
        procs.append(
            subprocess.Popen(
                ["prometheus-postgres-exporter", *_rerooted(exp, exp_root, {"9187": exp_port})],
                env={"PATH": os.environ["PATH"], **exp_env},
                stdout=exp_log,
                stderr=subprocess.STDOUT,
            )
        )
        deadline = time.monotonic() + 60
        while _healthcheck(exp, {"9187": exp_port}, path) != 0:
            assert procs[0].poll() is None, (tmp_path / "exporter.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the exporter's health check never passed"
            time.sleep(0.5)

        # ---- Prometheus, on the mounted config with its targets pointed here (and a 1 s interval)
        prom = services["prometheus"]
        prom_root = tmp_path / "prometheus"
        _lay_out_mounts("prometheus", prom_root)
        prom_port = free_port()
        config_path = Path(str(prom_root) + "/etc/prometheus/prometheus.yml")
        config = yaml.safe_load(config_path.read_text())
        config["global"] = config.get("global", {}) | {"scrape_interval": "1s", "evaluation_interval": "1s"}
        targets = {"postgres_exporter:9187": f"127.0.0.1:{exp_port}", "localhost:9090": f"127.0.0.1:{prom_port}"}
        for job in config["scrape_configs"]:
            job.pop("scrape_timeout", None)
            for sc in job.get("static_configs", []):
                sc["targets"] = [targets[t] for t in sc["targets"]]
        config_path.write_text(yaml.safe_dump(config))
        argv = _rerooted(prom, prom_root, {"9090": prom_port})
        assert f"--storage.tsdb.path={prom_root}/prometheus" in argv
        check = subprocess.run(["promtool", "check", "config", str(config_path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        prom_log = (tmp_path / "prometheus.log").open("w")
        procs.append(subprocess.Popen(["prometheus", *argv], stdout=prom_log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 60
        while _healthcheck(prom, {"9090": prom_port}, path) != 0:
            assert procs[1].poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "Prometheus' health check never passed"
            time.sleep(0.5)

        # Prometheus holds the exporter's scrape of queries.yaml: loaded without error, every query ran without
        # error (pg_exporter_last_scrape_error 0), and the queries that return rows on this database came back
        # (one returns none until there are, e.g., orders or a replica; tests/test_monitoring_stack.py has data)
        namespaces = set(yaml.safe_load((ROOT / "docker" / "postgres_exporter" / "queries.yaml").read_text()))
        base = f"http://127.0.0.1:{prom_port}/api/v1/query?query="

        def value(query: str) -> list[str]:
            return [r["value"][1] for r in _http_json(base + query)["data"]["result"]]

        def up() -> dict[str, str]:
            return {r["metric"]["job"]: r["value"][1] for r in _http_json(base + "up")["data"]["result"]}

        deadline = time.monotonic() + 60
        while (len(up()) < 2 or not value("pg_exporter_last_scrape_error")) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert up() == {"postgres": "1", "prometheus": "1"}
        assert value("pg_up") == ["1"]
        assert value("pg_exporter_user_queries_load_error") == ["0"]
        assert value("pg_exporter_last_scrape_error") == ["0"], (tmp_path / "exporter.log").read_text()[-2000:]
        names = {r["metric"]["__name__"] for r in _http_json(base + '{__name__=~".+"}')["data"]["result"]}
        came_back = {ns for ns in namespaces if any(n.startswith(f"{ns}_") for n in names)}
        assert came_back, f"no metric of queries.yaml ({sorted(namespaces)}) in Prometheus"
    finally:
        for proc in procs:
            proc.send_signal(_signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
