"""The monitoring stack of docker-compose.yml, run natively: the real prometheus-postgres-exporter (Debian's, 0.11)
logged in as pgtrade_monitor with docker/postgres_exporter/queries.yaml, and a real Prometheus (Debian's) on a copy
of docker/prometheus/prometheus.yml and its rules whose targets point at them, on a seeded database of its own.
The metrics come back through Prometheus's HTTP API equal to SQL, and every query of every Grafana dashboard
(docker/grafana/dashboards) runs there without error and, where the seeded data has what it shows, with series.

The command lines here are the ones docker-compose.yml mirrors (EXPORTER_ARGS, prometheus_command)."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import yaml
from psycopg import sql
from test_metrics import Seeded, seed

from pgtrade.cluster import free_port
from pgtrade.migrate import migrate

ROOT = Path(__file__).resolve().parent.parent
QUERIES = ROOT / "docker" / "postgres_exporter" / "queries.yaml"
PROMETHEUS_DIR = ROOT / "docker" / "prometheus"
DOCS = ROOT / "docs" / "operations.md"
DASHBOARDS = sorted((ROOT / "docker" / "grafana" / "dashboards").glob("*.json"))
EXPORTER = shutil.which("prometheus-postgres-exporter") or "/usr/bin/prometheus-postgres-exporter"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
#: only the custom queries: the exporter's built-in metrics would be a second definition of the same figures
EXPORTER_ARGS = [
    "--extend.query-path={queries}",
    "--disable-default-metrics",
    "--disable-settings-metrics",
    "--no-collector.database",
    "--no-collector.bgwriter",
]
#: queries with no rows on a server without a standby
EMPTY_WITHOUT_REPLICA = {"pgtrade_replication"}
#: a ratio of rates: NaN while none of the key procedures was called in the window (none is, during this test)
NAN_WITHOUT_CALLS = {"Key procedures: mean latency over the interval"}
SCRAPE_INTERVAL = "1s"
RATE_INTERVAL = "20s"  # what the test puts for Grafana's $__rate_interval: many 1 s scrapes


@dataclass(frozen=True, kw_only=True)
class Stack:
    url: str  # the seeded database (superuser)
    exporter: str  # http://127.0.0.1:port
    prometheus: str
    seeded: Seeded


def _get(url: str, params: dict | None = None, timeout: float = 10) -> bytes:
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def promql(stack: Stack, expr: str) -> list[dict]:
    """The instant vector of expr now (fails on a PromQL error)."""
    try:
        body = json.loads(_get(stack.prometheus + "/api/v1/query", {"query": expr}))
    except urllib.error.HTTPError as exc:  # Prometheus answers 400 with the error in the body
        body = json.loads(exc.read())
    assert body["status"] == "success", (expr, body.get("error"))
    return body["data"]["result"]


def value(stack: Stack, expr: str) -> float:
    result = promql(stack, expr)
    assert len(result) == 1, (expr, result)
    return float(result[0]["value"][1])


def _wait(what: str, check, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (OSError, AssertionError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def prometheus_config(exporter_port: int, prometheus_port: int) -> dict:
    """docker/prometheus/prometheus.yml with the compose targets pointed at the local processes."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = SCRAPE_INTERVAL
    config["global"]["evaluation_interval"] = SCRAPE_INTERVAL
    targets = {"postgres_exporter:9187": f"127.0.0.1:{exporter_port}", "localhost:9090": f"127.0.0.1:{prometheus_port}"}
    for job in config["scrape_configs"]:
        job.pop("scrape_timeout", None)  # may not exceed the shortened interval
        for static in job["static_configs"]:
            static["targets"] = [targets[t] for t in static["targets"]]
    return config


@pytest.fixture(scope="module")
def stack(server_url: str) -> Iterator[Stack]:
    for binary in (EXPORTER, PROMETHEUS, PROMTOOL):
        assert Path(binary).exists(), f"{binary} missing (scripts/install-system.sh installs it)"
    name = f"pgtrade_monitoring_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    info = psycopg.conninfo.conninfo_to_dict(server_url)
    url = psycopg.conninfo.make_conninfo(**(info | {"dbname": name}))
    tmp = Path(tempfile.mkdtemp(prefix="pgtrade-monitoring-"))
    procs: list[subprocess.Popen] = []
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn)
            conn.execute(sql.SQL("ALTER ROLE pgtrade_monitor PASSWORD {}").format(sql.Literal(password)))
            with conn.transaction():
                seeded = seed(conn)
            # a compressed chunk, so that the compression figures have something to show
            conn.execute(
                """SELECT compress_chunk(format('%I.%I', c.chunk_schema, c.chunk_name))
                   FROM timescaledb_information.chunks c
                   WHERE c.hypertable_name = 'bars' AND c.range_start <= now() AND c.range_end > now()"""
            )
        exporter_port, prometheus_port = free_port(), free_port()
        dsn = (
            f"postgresql://pgtrade_monitor:{password}@{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/"
            f"{name}?sslmode=disable"
        )
        exporter_log = (tmp / "exporter.log").open("w")
        procs.append(
            subprocess.Popen(
                [
                    EXPORTER,
                    f"--web.listen-address=127.0.0.1:{exporter_port}",
                    *(a.format(queries=QUERIES) for a in EXPORTER_ARGS),
                ],
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DATA_SOURCE_NAME": dsn},
                stdout=exporter_log,
                stderr=subprocess.STDOUT,
            )
        )
        config_dir = tmp / "prometheus"
        config_dir.mkdir()
        shutil.copy(PROMETHEUS_DIR / "pgtrade_rules.yml", config_dir)
        (config_dir / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config(exporter_port, prometheus_port)))
        prometheus_log = (tmp / "prometheus.log").open("w")
        procs.append(
            subprocess.Popen(
                prometheus_command(config_dir / "prometheus.yml", tmp / "data", prometheus_port),
                stdout=prometheus_log,
                stderr=subprocess.STDOUT,
            )
        )
        st = Stack(
            url=url,
            exporter=f"http://127.0.0.1:{exporter_port}",
            prometheus=f"http://127.0.0.1:{prometheus_port}",
            seeded=seeded,
        )
        _wait("Prometheus ready", lambda: _get(st.prometheus + "/-/ready") is not None)
        # enough scrapes for a rate over RATE_INTERVAL, and the rules evaluated
        _wait(
            "Prometheus to hold 8 scrapes of the exporter",
            lambda: value(st, "count_over_time(pgtrade_database_size_bytes[1m])") >= 8,
        )
        yield st
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in tmp.glob("*.log"):
            if os.environ.get("PGTRADE_MONITORING_LOGS"):
                print(log.read_text())
        shutil.rmtree(tmp, ignore_errors=True)
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def prometheus_command(config: Path, data: Path, port: int) -> list[str]:
    return [
        PROMETHEUS,
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]


def _queries() -> dict:
    return yaml.safe_load(QUERIES.read_text())


def test_the_exporter_runs_every_query_and_types_every_metric_as_declared(stack):
    text = _get(stack.exporter + "/metrics").decode()
    assert re.search(r"^pg_up 1$", text, re.M)
    assert re.search(r"^pg_exporter_last_scrape_error 0$", text, re.M)
    assert re.search(r"^pg_exporter_user_queries_load_error\{[^}]*\} 0$", text, re.M), "queries.yaml did not load"
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    declared: dict[str, str] = {}
    for namespace, query in _queries().items():
        # the function it calls is one of the monitor's
        assert re.search(r"FROM ops\.metrics_[a-z_]+\(\)", query["query"]), namespace
        for column in query["metrics"]:
            ((col, spec),) = column.items()
            if spec["usage"] == "LABEL":
                continue
            metric = f"{namespace}_{col}"
            declared[metric] = spec["usage"].lower()
            # Prometheus's naming rule: counters, and only counters, end in _total
            assert (spec["usage"] == "COUNTER") == metric.endswith("_total"), metric
            if namespace in EMPTY_WITHOUT_REPLICA:
                assert metric not in types
                continue
            assert types.get(metric) == spec["usage"].lower(), metric
            assert re.search(rf"^{metric}\{{", text, re.M), f"{metric}: no series"
    # docs/operations.md, "Metrics", has one row for each metric, with its type
    documented = dict(re.findall(r"^\| `(pgtrade_[a-z_]+)` \| (counter|gauge) \|", DOCS.read_text(), re.M))
    assert documented == declared


def test_prometheus_reads_back_what_sql_says(stack):
    s = stack.seeded
    acct = f'account="{s.account}"'
    with psycopg.connect(stack.url) as conn:

        def one(query: str, *params) -> float:
            return float(conn.execute(query, params).fetchone()[0])

        checks = {
            f'pgtrade_bars_stored{{symbol="{s.symbol}",interval="1m"}}': one(
                "SELECT count(*) FROM market.bars WHERE symbol = %s", s.symbol
            ),
            f'pgtrade_rejected_bars_total{{symbol="{s.symbol}"}}': one(
                "SELECT count(*) FROM market.rejected_bars WHERE symbol = %s", s.symbol
            ),
            'pgtrade_rejected_bars_total{symbol="(invalid)"}': one(
                "SELECT count(*) FROM market.rejected_bars r WHERE NOT EXISTS "
                "(SELECT 1 FROM market.instruments i WHERE i.symbol = r.symbol)"
            ),
            f'sum(pgtrade_signals_total{{model="{s.model}"}})': one(
                "SELECT count(*) FROM ml.signals s JOIN ml.models m ON m.id = s.model_id WHERE m.name = %s", s.model
            ),
            'sum(pgtrade_anomalies_total{severity="CRITICAL"})': one(
                "SELECT count(*) FROM ml.anomalies WHERE severity = 'CRITICAL'"
            ),
            f"pgtrade_fills_total{{{acct}}}": one(
                "SELECT count(*) FROM trading.fills WHERE account_id = %s", s.account_id
            ),
            f"pgtrade_fills_value_total{{{acct}}}": one(
                "SELECT sum(qty * price) FROM trading.fills WHERE account_id = %s", s.account_id
            ),
            f"pgtrade_fills_commission_total{{{acct}}}": one(
                "SELECT sum(commission) FROM trading.fills WHERE account_id = %s", s.account_id
            ),
            f"sum(pgtrade_rejections_total{{{acct}}})": one(
                "SELECT count(*) FROM trading.orders WHERE account_id = %s AND status = 'rejected'", s.account_id
            ),
            f"pgtrade_portfolio_value{{{acct}}}": one("SELECT total_value FROM trading.portfolio(%s)", s.account_id),
            f"pgtrade_portfolio_unrealized_pnl{{{acct}}}": one(
                "SELECT unrealized_pnl FROM trading.portfolio(%s)", s.account_id
            ),
            f"pgtrade_portfolio_drawdown_ratio{{{acct}}}": one(
                "SELECT drawdown FROM trading.portfolio_snapshots WHERE account_id = %s ORDER BY ts DESC LIMIT 1",
                s.account_id,
            ),
            'pgtrade_alerts_open{kind="anomaly",severity="CRITICAL"}': one(
                "SELECT count(*) FROM ops.alerts WHERE kind = 'anomaly' AND acknowledged_at IS NULL"
            ),
            'pgtrade_backtest_runs{status="done"}': one("SELECT count(*) FROM backtest.runs WHERE status = 'done'"),
            'pgtrade_hypertable_chunks{hypertable="market.bars"}': one(
                "SELECT count(*) FROM show_chunks('market.bars')"
            ),
            'pgtrade_hypertable_compressed_chunks{hypertable="market.bars"}': one(
                "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'bars' AND is_compressed"
            ),
        }
        for status, n in conn.execute(
            "SELECT status, count(*) FROM trading.orders WHERE account_id = %s GROUP BY status", (s.account_id,)
        ):
            checks[f'pgtrade_orders_count{{{acct},status="{status}"}}'] = float(n)
        size = one("SELECT pg_database_size(current_database())")
        ratio = one(
            "SELECT before_compression_total_bytes::float8 / after_compression_total_bytes"
            " FROM hypertable_compression_stats('market.bars')"
        )
    for expr, want in checks.items():
        assert value(stack, expr) == pytest.approx(want, rel=1e-9), expr
    assert len(checks) >= 20 and value(stack, 'pgtrade_hypertable_compressed_chunks{hypertable="market.bars"}') >= 1
    # changing figures: of the right size, and moving as they should
    assert value(stack, "pgtrade_database_size_bytes") == pytest.approx(size, rel=0.05)
    assert value(stack, 'pgtrade_connections{state="active"}') >= 1
    assert value(stack, 'pgtrade_hypertable_compression_ratio{hypertable="market.bars"}') == pytest.approx(ratio)
    for procedure in ("backtest.run", "market.ingest_staged", "trading.place_order"):
        assert value(stack, f'pgtrade_statements_calls_total{{procedure="{procedure}",toplevel="true"}}') >= 1
    assert value(stack, 'pgtrade_statements_calls_total{procedure="internal.process_closed",toplevel="false"}') >= 1
    assert value(stack, f"sum(rate(pgtrade_database_xact_commit_total[{RATE_INTERVAL}]))") > 0  # the scrapes commit
    assert promql(stack, "pgtrade_replication_lag_bytes") == []  # no replica


def _panel_queries() -> list[tuple[str, str, str, str]]:
    """(dashboard, panel title, expression, datasource uid) of every target of every panel."""
    out = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            uids = {(panel.get("datasource") or {}).get("uid")}
            for target in panel["targets"]:
                uids.add((target.get("datasource") or {}).get("uid"))
                out.append((path.name, panel["title"], target["expr"], "/".join(sorted(map(str, uids)))))
        for var in board["templating"]["list"]:
            out.append((path.name, f"variable {var['name']}", _variable_query(var), var["datasource"]["uid"]))
    return out


def _variable_query(var: dict) -> str:
    """A label_values(metric, label) variable as the query Prometheus answers: the metric itself."""
    m = re.fullmatch(r"label_values\((\w+), *(\w+)\)", var["query"]["query"])
    assert m, var
    return m[1]


def _expand(expr: str) -> str:
    """The query Grafana sends: its interval variables, and every dashboard variable as All (.*)."""
    expr = expr.replace("$__rate_interval", RATE_INTERVAL).replace("$__interval", "1s")
    return re.sub(r"\$\{?([a-z_]+)\}?", ".*", expr)


def test_every_dashboard_query_runs_and_shows_the_seeded_data(stack):
    queries = _panel_queries()
    assert {d for d, *_ in queries} == {"pgtrade-business.json", "pgtrade-system.json"}
    assert len(queries) > 40
    failures = []
    for board, title, expr, uid in queries:
        if uid != "prometheus":
            failures.append(f"{board} / {title}: datasource {uid!r}, not 'prometheus'")
            continue
        try:
            result = promql(stack, _expand(expr))
        except AssertionError as exc:
            failures.append(f"{board} / {title}: {expr}: {exc}")
            continue
        may_be_empty = any(ns in expr for ns in EMPTY_WITHOUT_REPLICA)
        if not result and not may_be_empty:
            failures.append(f"{board} / {title}: {expr}: no series")
        values = [float(r["value"][1]) for r in result]
        if values and not any(math.isfinite(v) for v in values) and title not in NAN_WITHOUT_CALLS:
            failures.append(f"{board} / {title}: {expr}: only NaN/Inf")
    assert failures == []


def test_the_config_is_valid_and_the_rules_evaluate(stack):
    res = subprocess.run([PROMTOOL, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml")], capture_output=True)
    assert res.returncode == 0, res.stdout + res.stderr
    targets = json.loads(_get(stack.prometheus + "/api/v1/targets"))["data"]["activeTargets"]
    assert {t["labels"]["job"]: t["health"] for t in targets} == {"postgres": "up", "prometheus": "up"}

    def rules_ok() -> bool:
        groups = json.loads(_get(stack.prometheus + "/api/v1/rules"))["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        assert len(rules) >= 10
        assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
        return all(r.get("lastEvaluation", "").startswith("2") for r in rules)

    _wait("every rule evaluated", rules_ok, timeout=30)
    # the seeded anomaly alert is open: one Prometheus alert for its kind and severity
    alerts = json.loads(_get(stack.prometheus + "/api/v1/alerts"))["data"]["alerts"]
    open_alerts = {
        (a["labels"]["kind"], a["labels"]["severity"])
        for a in alerts
        if a["labels"]["alertname"] == "PgtradeOpenAlerts"
    }
    assert open_alerts == {("anomaly", "CRITICAL")}
