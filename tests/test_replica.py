"""A streaming read replica (pgtrade/replica.py) serving the REST API's reads and the read side of backtests.

A primary of its own (pgtrade.cluster.Cluster), migrated as tests/conftest.py migrates, with the GOOG daily sample,
a live account with a fill and a backtest run started through the API; a hot standby copied from it with
pg_basebackup -R. Requests run as PostgREST runs them: per request ``BEGIN ISOLATION LEVEL READ COMMITTED`` with
``READ ONLY`` for GET (and for POST to a STABLE function) and ``READ WRITE`` for POST to a VOLATILE one, then
``SET LOCAL ROLE``, the request.jwt.claims and the role's own settings (tests/postgrest.py).

What the tests show (docs/scaling.md, "Read replicas"): every `api` view and read function answers on the replica
what it answers on the primary, for every role that may read it; bars and fills committed on the primary appear
on the replica, with the lag measured; a write through the API on the replica fails with the error PostgREST
would return; a backtest's read side (its bars, the strategy's decisions, the stored run's metrics, trades and
equity curve) runs on the replica, while the engine itself, which writes, runs on a writable node whose bars come
from the replica through postgres_fdw and gives the same result as on the primary; TimescaleDB's and pg_cron's
schedulers do not run on the standby.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from cluster_support import throwaway_cluster
from postgrest import apply_role_settings, role_settings
from psycopg import sql
from psycopg.rows import dict_row
from test_api import postgrest_status
from trading_support import instrument

from loaders.sample import load_sample
from pgtrade.cluster import Cluster, free_port
from pgtrade.ingest import Bar, ingest
from pgtrade.replica import REPLICATION_ROLE, Replica

DB = "pgtrade_repl"
LIVE = "REPLX"  # a 24x7 instrument, so a market order finds a fresh price at any hour
TRADER = "repl_trader"
ROLES = ("web_anon", "trader", "pgtrade_admin")
GOOG_FROM, GOOG_TO = "2004-08-19", "2013-03-02"
CLOCK_COLUMNS = {"as_of", "time"}


# ------------------------------------------------------------------------------------------------ nodes
class Nodes:
    def __init__(self, primary: Cluster, replica: Replica, run_id: int):
        self.primary, self.replica, self.run_id = primary, replica, run_id

    def p(self, **kw) -> psycopg.Connection:
        return psycopg.connect(self.primary.url(), **kw)

    def r(self, **kw) -> psycopg.Connection:
        return psycopg.connect(self.replica.url(), **kw)

    def caught_up(self, timeout: float = 30) -> float:
        """Wait until the replica has replayed everything the primary committed so far; the seconds it took."""
        with self.p(autocommit=True) as p:
            target = p.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        t0 = time.monotonic()
        with self.r(autocommit=True) as r:
            while True:
                if r.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)).fetchone()[0]:
                    return time.monotonic() - t0
                assert time.monotonic() - t0 < timeout, f"replica did not replay up to {target} in {timeout} s"
                time.sleep(0.01)


def _live_bars(conn: psycopg.Connection, closes: list[str], end: datetime) -> None:
    """1-minute bars of LIVE ending at the minute before ``end`` (the ingest path, committed)."""
    n = len(closes)
    items = [
        Bar(
            symbol=LIVE, interval="1m", ts=end - timedelta(minutes=n - i), open=c, high=c, low=c, close=c, volume="1000"
        )
        for i, c in enumerate(closes)
    ]
    report = ingest(conn, items, source="test_replica")
    assert report.total.rejected == 0, report.as_dict()
    conn.commit()


@pytest.fixture(scope="module")
def nodes() -> Iterator[Nodes]:
    with throwaway_cluster("replica", DB) as primary:
        replica = Replica(primary=primary, home=primary.home.parent / "replica", port=free_port())
        try:
            with psycopg.connect(primary.url()) as conn:
                load_sample(conn, symbols=["GOOG"])
                conn.commit()
                instrument(
                    conn,
                    LIVE,
                    asset_class="crypto",
                    session_tz="UTC",
                    session_open=None,
                    session_close=None,
                    trades_weekends=True,
                )
                conn.commit()
                _live_bars(
                    conn,
                    ["100", "101", "102"],
                    datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10),
                )
                conn.execute(
                    "SELECT trading.create_account(%s, 100000, 'live', NULL, %s::jsonb)",
                    (TRADER, json.dumps({"max_position_pct": 100, "max_price_age": "1 day"})),
                )
                conn.commit()
            # the trader buys (a fill) and runs a backtest, through the API on the primary
            with psycopg.connect(primary.url(), autocommit=True) as conn:
                res = rest(
                    conn, "POST", "trader", "SELECT * FROM api.place_order(%s, 'buy', 10)", (LIVE,), account=TRADER
                )
                assert res.status == 200 and res.row["status"] == "filled", (res.status, res.message, res.rows)
                res = rest(
                    conn,
                    "POST",
                    "trader",
                    "SELECT * FROM api.run_backtest('sma_crossover', ARRAY['GOOG'], '1d', %s, %s,"
                    " '{\"cash\": 10000, \"commission\": 0.002}'::jsonb, 'fast')",
                    (GOOG_FROM, GOOG_TO),
                    account=TRADER,
                )
                assert res.status == 200 and res.row["status"] == "done", (res.status, res.message, res.rows)
                run_id = res.row["id"]
            t0 = time.monotonic()
            replica.create()
            replica.start()
            replica.wait_streaming()
            print(f"\nreplica created and streaming in {time.monotonic() - t0:.2f} s")
            yield Nodes(primary, replica, run_id)
        finally:
            replica.destroy()


# ------------------------------------------------------------------------------------------------ requests
class Response:
    def __init__(self, rows=None, status=200, sqlstate=None, message=None):
        self.rows, self.status, self.sqlstate, self.message = rows or [], status, sqlstate, message

    @property
    def row(self) -> dict:
        assert len(self.rows) == 1, (self.status, self.message, self.rows)
        return self.rows[0]


def rest(
    conn: psycopg.Connection,
    method: str,
    role: str,
    query: str,
    params=(),
    *,
    account: str | None = None,
    volatile=True,
) -> Response:
    """One request as PostgREST (v12) runs it on an autocommit connection: the access mode from the method and the
    function's volatility (GET and HEAD, and POST to a STABLE or IMMUTABLE function, READ ONLY; POST to a VOLATILE
    function READ WRITE), SET LOCAL ROLE, the claims, the role's settings, the query, COMMIT."""
    assert conn.autocommit
    mode = "READ WRITE" if method == "POST" and volatile else "READ ONLY"
    claims = {"role": role} | ({"account": account} if account else {})
    settings = role_settings(conn, role)
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(f"BEGIN ISOLATION LEVEL READ COMMITTED {mode}")
            try:
                cur.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
                cur.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
                apply_role_settings(conn, settings)
                cur.execute(query, params)
                rows = cur.fetchall()
                status = cur.execute("SELECT current_setting('response.status', true) AS s").fetchone()["s"]
                cur.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
    except psycopg.Error as exc:
        return Response(
            status=postgrest_status(exc.sqlstate, role != "web_anon"),
            sqlstate=exc.sqlstate,
            message=exc.diag.message_primary,
        )
    return Response(rows, int(status) if status else 200)


def _api_reads(conn: psycopg.Connection) -> list[tuple[str, str, bool]]:
    """Every GET the API serves, found in the catalog (grows with the API): (role, query, volatile) per view a web
    role may read (ordered by every column) and per STABLE api function without arguments it may execute."""
    views = conn.execute(
        """SELECT r.role, c.relname FROM pg_class c CROSS JOIN unnest(%s::text[]) r(role)
           WHERE c.relnamespace = 'api'::regnamespace AND c.relkind = 'v'
             AND has_table_privilege(r.role, c.oid, 'SELECT')
           ORDER BY 2, 1""",
        (list(ROLES),),
    ).fetchall()
    fns = conn.execute(
        """SELECT r.role, p.proname FROM pg_proc p CROSS JOIN unnest(%s::text[]) r(role)
           WHERE p.pronamespace = 'api'::regnamespace AND p.provolatile <> 'v' AND p.pronargs - p.pronargdefaults = 0
             AND has_function_privilege(r.role, p.oid, 'EXECUTE')
           ORDER BY 2, 1""",
        (list(ROLES),),
    ).fetchall()
    reads = [(role, f"SELECT * FROM api.{v} ORDER BY 1", False) for role, v in views]
    reads += [(role, f"SELECT * FROM api.{f}()", False) for role, f in fns]
    return reads


def _comparable(rows: list[dict]) -> list:
    """Rows as comparable values, in a stable order. The request's own clock is left out: api.portfolio's as_of of a
    wall-clock account and api.health's time are now() of the request, which differs between two requests."""
    out = []
    for row in rows:
        row = {k: v for k, v in row.items() if k not in CLOCK_COLUMNS}
        for k, v in list(row.items()):
            if isinstance(v, dict):
                row[k] = {kk: vv for kk, vv in v.items() if kk not in CLOCK_COLUMNS}
        out.append(json.dumps(row, default=str, sort_keys=True))
    return sorted(out)


# ------------------------------------------------------------------------------------------------ tests
def test_every_api_read_answers_on_the_replica_what_it_answers_on_the_primary(nodes):
    with nodes.p(autocommit=True) as p, nodes.r(autocommit=True) as r:
        reads = _api_reads(p)
        assert {q.split()[3] for _, q, _ in reads} >= {"api.bars", "api.fills", "api.backtests", "api.health()"}
        # health describes the node it runs on (its uptime, whether it is a standby, its schedulers, ages against
        # its now()): the same verdict and the same jobs on both, the standby saying it is one
        health = {}
        for name, conn in (("primary", p), ("replica", r)):
            res = rest(conn, "GET", "web_anon", "SELECT * FROM api.health()")
            assert res.status == 200, (name, res.message)
            health[name] = res.row["health"]
        assert (health["primary"]["server"]["in_recovery"], health["replica"]["server"]["in_recovery"]) == (False, True)
        assert health["replica"]["status"] == health["primary"]["status"] == "ok", health["replica"]["problems"]
        assert [j["job"] for j in health["replica"]["pg_cron"]["jobs"]] == [
            j["job"] for j in health["primary"]["pg_cron"]["jobs"]
        ]
        reads = [read for read in reads if read[1] != "SELECT * FROM api.health()"]
        nonempty = 0
        for role, query, volatile in reads:
            for attempt in range(3):  # noqa: B007 (reported on failure)
                # a pg_cron snapshot or a policy may commit between the two reads: read again
                nodes.caught_up()
                on_primary = rest(p, "GET", role, query, account=TRADER, volatile=volatile)
                nodes.caught_up()
                on_replica = rest(r, "GET", role, query, account=TRADER, volatile=volatile)
                if _comparable(on_primary.rows) == _comparable(on_replica.rows):
                    break
            assert on_primary.status == 200, (role, query, on_primary.message)
            assert (on_replica.status, on_replica.sqlstate) == (200, None), (role, query, on_replica.message)
            assert _comparable(on_replica.rows) == _comparable(on_primary.rows), (role, query, attempt)
            nonempty += bool(on_primary.rows)
        print(f"\n{len(reads)} API reads (role x view or function) equal on both nodes, {nonempty} of them non-empty")
        assert nonempty >= 15  # bars, instruments, the trader's orders, fills, positions, runs, equity, ... are there


def test_bars_and_fills_committed_on_the_primary_appear_on_the_replica_with_the_lag_measured(nodes):
    end = datetime.now(UTC).replace(second=0, microsecond=0)  # two bars after the fixture's three
    visible = {}
    with nodes.p() as p, nodes.r(autocommit=True) as r:
        before = p.execute("SELECT count(*) FROM market.bars WHERE symbol = %s", (LIVE,)).fetchone()[0]
        t0 = time.monotonic()
        _live_bars(p, ["103", "104"], end)  # committed here
        committed = time.monotonic()
        q = "SELECT count(*) FROM api.bars WHERE symbol = %s"
        while rest(r, "GET", "web_anon", q, (LIVE,)).row["count"] < before + 2:
            assert time.monotonic() - committed < 10, "new bars did not reach the replica in 10 s"
        visible["bars"] = time.monotonic() - committed
        print(f"\ningest of 2 bars: {committed - t0:.3f} s on the primary")
    with nodes.p(autocommit=True) as p, nodes.r(autocommit=True) as r:
        t0 = time.monotonic()
        res = rest(p, "POST", "trader", "SELECT * FROM api.place_order(%s, 'buy', 5)", (LIVE,), account=TRADER)
        committed = time.monotonic()
        assert res.row["status"] == "filled", res.rows
        order_id = res.row["id"]
        q = "SELECT qty, price FROM api.fills WHERE order_id = %s"
        while not (seen := rest(r, "GET", "trader", q, (order_id,), account=TRADER)).rows:
            assert time.monotonic() - committed < 10, "the fill did not reach the replica in 10 s"
        visible["fill"] = time.monotonic() - committed
        assert seen.row["qty"] == Decimal(5) and seen.row["price"] > 0
        lag = p.execute(
            """SELECT state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) AS replay_bytes,
                      extract(epoch FROM write_lag) * 1000 AS write_ms,
                      extract(epoch FROM flush_lag) * 1000 AS flush_ms,
                      extract(epoch FROM replay_lag) * 1000 AS replay_ms
               FROM pg_stat_replication WHERE application_name = %s""",
            (nodes.replica.application_name,),
        ).fetchone()
        status = nodes.replica.status()
        # the exporter's replication metric (ops.metrics_replication) names this standby on the primary, and the
        # standby itself reports none
        metric = p.execute("SELECT replica, state, lag_bytes FROM ops.metrics_replication()").fetchall()
        assert [(m[0], m[1]) for m in metric] == [(nodes.replica.application_name, "streaming")], metric
        assert metric[0][2] >= 0
        assert r.execute("SELECT count(*) FROM ops.metrics_replication()").fetchone()[0] == 0
    print(
        f"place_order through the API: {committed - t0:.3f} s; visible on the replica after: bars "
        f"{visible['bars'] * 1000:.1f} ms, fill {visible['fill'] * 1000:.1f} ms (poll from commit to first read "
        f"that sees it); pg_stat_replication: {lag}"
    )
    assert lag[0] == "streaming"
    assert status["standby"]["in_recovery"] and status["standby"]["receiver_status"] == "streaming"
    assert status["primary"]["state"] == "streaming"


def test_a_write_through_the_api_on_the_replica_fails_read_only(nodes):
    with nodes.r(autocommit=True) as r:
        # POST /rpc/place_order: PostgREST opens READ WRITE, which a standby refuses before anything runs
        res = rest(r, "POST", "trader", "SELECT * FROM api.place_order(%s, 'buy', 1)", (LIVE,), account=TRADER)
        assert (res.sqlstate, res.status) == ("0A000", 400), (res.sqlstate, res.message)
        assert res.message == "cannot set transaction read-write mode during recovery"
        print(f"\nPOST /rpc/place_order on the replica: HTTP {res.status}, {res.sqlstate}: {res.message}")
        # the same call in a read-only transaction (GET /rpc/place_order): the first write fails
        res = rest(r, "GET", "trader", "SELECT * FROM api.place_order(%s, 'buy', 1)", (LIVE,), account=TRADER)
        assert (res.sqlstate, res.status) == ("25006", 405), (res.sqlstate, res.message)
        assert res.message.startswith("cannot execute") and "read-only transaction" in res.message
        print(f"GET /rpc/place_order on the replica: HTTP {res.status}, {res.sqlstate}: {res.message}")
        for query in (
            "SELECT * FROM api.cancel_order(1)",
            "SELECT * FROM api.pause_trading()",
            "SELECT * FROM api.run_backtest('sma_crossover', ARRAY['GOOG'], '1d', '2010-01-01', '2011-01-01')",
        ):
            res = rest(r, "GET", "trader", query, account=TRADER)
            assert res.sqlstate == "25006", (query, res.sqlstate, res.message)
    with nodes.p(autocommit=True) as p:  # nothing of it reached the primary
        n = p.execute(
            "SELECT count(*) FROM trading.orders o JOIN trading.accounts a ON a.id = o.account_id WHERE a.name = %s",
            (TRADER,),
        ).fetchone()[0]
        assert n in (1, 2)  # the fixture's order and the lag test's, never one from the replica


def test_the_standby_runs_no_scheduler_and_refuses_every_write_even_temporary_tables(nodes):
    workers = "SELECT backend_type FROM pg_stat_activity WHERE backend_type ~ '^(TimescaleDB|pg_cron)' ORDER BY 1"
    with nodes.p(autocommit=True) as p, nodes.r(autocommit=True) as r:
        on_primary = [t for (t,) in p.execute(workers)]
        on_replica = [t for (t,) in r.execute(workers)]
        assert "pg_cron launcher" in on_primary and "TimescaleDB Background Worker Launcher" in on_primary
        assert on_replica == [], on_replica
        # the jobs' definitions and history are replicated and readable
        jobs = r.execute(
            "SELECT count(*) FROM timescaledb_information.jobs WHERE hypertable_schema = 'market'"
        ).fetchone()
        cron = r.execute("SELECT count(*) FROM cron.job WHERE jobname LIKE 'pgtrade-%'").fetchone()
        assert jobs[0] >= 4 and cron[0] >= 1
        print(
            f"\nprimary background workers: {on_primary}; replica: none; "
            f"{jobs[0]} TimescaleDB jobs, {cron[0]} pg_cron jobs readable"
        )
        # and nothing about them in the standby's log (no launcher started, none failed)
        log = nodes.replica.cluster.log_file.read_text(errors="replace")
        assert not [ln for ln in log.splitlines() if "background worker" in ln and ("cron" in ln or "Timescale" in ln)]
        job = r.execute(
            "SELECT min(job_id) FROM timescaledb_information.jobs"
            " WHERE proc_name = 'policy_refresh_continuous_aggregate'"
        ).fetchone()[0]
        for stmt in (
            "CREATE TEMP TABLE t (x int)",
            "SELECT cron.schedule('x', '* * * * *', 'SELECT 1')",
            f"CALL run_job({job})",
            "SELECT nextval('trading.orders_id_seq')",
        ):
            with pytest.raises(psycopg.Error) as exc:
                r.execute(stmt)
            assert exc.value.sqlstate == "25006", (stmt, exc.value.sqlstate, str(exc.value))


def test_a_backtest_reads_on_the_replica_and_its_engine_runs_on_a_writable_node_fed_by_the_replica(nodes):
    run_id = nodes.run_id
    with nodes.p(autocommit=True) as p:
        stored = (
            p.cursor(row_factory=dict_row).execute("SELECT * FROM backtest.runs WHERE id = %s", (run_id,)).fetchone()
        )
        stored_decisions = p.execute(
            "SELECT symbol, ts, target FROM backtest.decisions WHERE run_id = %s ORDER BY ts", (run_id,)
        ).fetchall()
        metrics, data_hash = p.execute(
            "SELECT metrics, data_hash FROM backtest.runs WHERE id = %s", (run_id,)
        ).fetchone()
    assert stored is not None and len(stored_decisions) > 50
    nodes.caught_up()
    with nodes.r(autocommit=True) as r:
        # the engine writes its run, account, orders and snapshots: refused on the standby, nothing half-done
        with pytest.raises(psycopg.Error) as exc:
            r.execute("SELECT backtest.run('sma_crossover', ARRAY['GOOG'], '1d', %s, %s)", (GOOG_FROM, GOOG_TO))
        assert exc.value.sqlstate == "25006"
        # the read side: the run's bars and the strategy's decisions, recomputed on the replica, are the run's
        t0 = time.monotonic()
        r.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        n_bars = r.execute(
            "SELECT count(*) FROM backtest.bars((SELECT r FROM backtest.runs r WHERE r.id = %s))", (run_id,)
        ).fetchone()[0]
        decided = r.execute(
            """WITH d AS (SELECT d.symbol, d.ts, d.target FROM backtest.runs r, backtest.sma_crossover(r) d
                          WHERE r.id = %s AND d.target IS NOT NULL AND d.ts >= r.start_ts AND d.ts < r.end_ts)
               SELECT symbol, ts, target FROM (
                 SELECT d.*, coalesce(lag(d.target) OVER (PARTITION BY d.symbol ORDER BY d.ts), 0) AS prev FROM d) c
               WHERE target <> prev ORDER BY ts""",
            (run_id,),
        ).fetchall()
        recomputed = r.execute("SELECT backtest.compute_metrics(%s)", (run_id,)).fetchone()[0]
        r.execute("COMMIT")
        read_side = time.monotonic() - t0
        assert n_bars == stored["bars"]
        assert decided == stored_decisions
        assert recomputed == metrics
        # and the stored run through the API, as the trader who started it (GET /backtests, /backtest_equity)
        runs = rest(r, "GET", "trader", "SELECT id, status, metrics FROM api.backtests", account=TRADER)
        assert [(x["id"], x["status"], x["metrics"]) for x in runs.rows] == [(run_id, "done", metrics)]
        equity = rest(
            r,
            "GET",
            "trader",
            "SELECT count(*), max(total_value) FROM api.backtest_equity WHERE run_id = %s",
            (run_id,),
            account=TRADER,
        ).row
        assert equity["count"] == n_bars + 1 or equity["count"] == n_bars
    print(
        f"\nread side of run {run_id} on the replica ({n_bars} bars, {len(decided)} decisions, metrics): "
        f"{read_side:.3f} s"
    )

    # the engine on a writable node whose market data comes from the replica (postgres_fdw)
    reader_pw = uuid.uuid4().hex
    with nodes.p(autocommit=True) as p:  # a read-only login for the worker, created on the primary, replicated
        p.execute(f"CREATE ROLE pgtrade_bars_reader LOGIN PASSWORD '{reader_pw}'")
        p.execute("GRANT USAGE ON SCHEMA market TO pgtrade_bars_reader")
        p.execute("GRANT SELECT ON market.bars, market.instruments TO pgtrade_bars_reader")
    nodes.caught_up()
    try:
        with throwaway_cluster("worker", "pgtrade_worker") as worker:
            with psycopg.connect(worker.url(), autocommit=True) as w:
                w.execute("CREATE EXTENSION IF NOT EXISTS postgres_fdw")
                w.execute(
                    sql.SQL(
                        "CREATE SERVER replica FOREIGN DATA WRAPPER postgres_fdw"
                        " OPTIONS (host '127.0.0.1', port {}, dbname {})"
                    ).format(sql.Literal(str(nodes.replica.port)), sql.Literal(DB))
                )
                w.execute(
                    sql.SQL(
                        "CREATE USER MAPPING FOR CURRENT_USER SERVER replica"
                        " OPTIONS (user 'pgtrade_bars_reader', password {})"
                    ).format(sql.Literal(reader_pw))
                )
                w.execute("CREATE SCHEMA replica_market")
                w.execute(
                    "IMPORT FOREIGN SCHEMA market LIMIT TO (bars, instruments) FROM SERVER replica INTO replica_market"
                )
                t0 = time.monotonic()
                w.execute(
                    """INSERT INTO market.instruments (symbol, name, asset_class, currency, exchange, active,
                           qty_step, session_tz, session_open, session_close, trades_weekends, tick_size)
                       SELECT symbol, name, asset_class, currency, exchange, active, qty_step, session_tz, session_open,
                              session_close, trades_weekends, tick_size
                       FROM replica_market.instruments WHERE symbol = 'GOOG'"""
                )
                pulled = w.execute(
                    """INSERT INTO market.bars (symbol, interval, ts, open, high, low, close, volume, source)
                       SELECT symbol, interval, ts, open, high, low, close, volume, source FROM replica_market.bars
                       WHERE symbol = 'GOOG' AND interval = '1d' AND ts >= %s AND ts < %s""",
                    (GOOG_FROM, GOOG_TO),
                ).rowcount
                pull = time.monotonic() - t0
                t0 = time.monotonic()
                again = w.execute(
                    """SELECT status, bars, metrics, data_hash
                       FROM backtest.run('sma_crossover', ARRAY['GOOG'], '1d', %s, %s,
                                         '{"cash": 10000, "commission": 0.002}'::jsonb, 'fast')""",
                    (GOOG_FROM, GOOG_TO),
                ).fetchone()
                engine = time.monotonic() - t0
            assert again[0] == "done" and again[1] == stored["bars"] == pulled
            assert again[3] == data_hash  # the very bars the primary's run read
            assert again[2] == metrics
            print(
                f"writable node fed by the replica: pulled {pulled} bars in {pull:.3f} s, engine run {engine:.3f} s, "
                "same data hash and metrics as the primary's run"
            )
    finally:
        with nodes.p(autocommit=True) as p:
            p.execute("REVOKE ALL ON market.bars, market.instruments FROM pgtrade_bars_reader")
            p.execute("REVOKE ALL ON SCHEMA market FROM pgtrade_bars_reader")
            p.execute("DROP ROLE pgtrade_bars_reader")


def test_the_replication_role_has_replication_and_nothing_else(nodes):
    with nodes.p(autocommit=True) as p:
        row = p.execute(
            """SELECT rolcanlogin, rolreplication, rolsuper, rolcreatedb, rolcreaterole, rolbypassrls, rolinherit,
                      (SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid) AS memberships
               FROM pg_roles r WHERE rolname = %s""",
            (REPLICATION_ROLE,),
        ).fetchone()
        assert row[:8] == (True, True, False, False, False, False, False, 0)
        owned = p.execute("SELECT count(*) FROM pg_class WHERE relowner = %s::regrole", (REPLICATION_ROLE,)).fetchone()
        assert owned[0] == 0


def cli_environment(monkeypatch, primary, replica_port: int) -> None:
    """The environment under which `pgtrade db ...` manages this primary as the local cluster (and its replica on
    replica_port)."""
    monkeypatch.setenv("PGTRADE_HOME", str(primary.home))
    monkeypatch.setenv("PGTRADE_PORT", str(primary.port))
    monkeypatch.setenv("PGTRADE_REPLICA_PORT", str(replica_port))
    monkeypatch.delenv("PGTRADE_DATABASE_URL", raising=False)


def test_cli_replica_up_status_down(nodes, monkeypatch):
    from click.testing import CliRunner

    from pgtrade.cli import main as cli

    port = free_port()
    cli_environment(monkeypatch, nodes.primary, port)
    runner = CliRunner()
    try:
        res = runner.invoke(cli, ["db", "replica", "up"])
        assert res.exit_code == 0, res.output
        assert f"127.0.0.1:{port}" in res.output and "streaming" in res.output
        res = runner.invoke(cli, ["db", "replica", "status", "--json"])
        assert res.exit_code == 0, res.output
        info = json.loads(res.output)
        assert (
            info["primary"]["state"] == "streaming" and info["primary"]["application_name"] == f"pgtrade_replica_{port}"
        )
        assert info["standby"]["in_recovery"] is True
        res = runner.invoke(cli, ["db", "replica", "down", "--destroy"])
        assert res.exit_code == 0, res.output
        res = runner.invoke(cli, ["db", "replica", "status"])
        assert res.exit_code == 3 and "not running" in res.output
    finally:
        Replica(primary=nodes.primary, home=nodes.primary.home / "replica", port=port).destroy()


def test_cli_db_down_stops_the_replica_too(monkeypatch):
    """`pgtrade db down` stops the local replica with the primary (it was left running, retrying its primary)."""
    from click.testing import CliRunner

    from pgtrade.cli import main as cli

    with throwaway_cluster("replica-down", DB, migrated=False) as primary:
        port = free_port()
        rep = Replica(primary=primary, home=primary.home / "replica", port=port)
        cli_environment(monkeypatch, primary, port)
        runner = CliRunner()
        try:
            res = runner.invoke(cli, ["db", "replica", "up"])
            assert res.exit_code == 0, res.output
            assert rep.running()
            res = runner.invoke(cli, ["db", "down"])
            assert res.exit_code == 0, res.output
            assert "replica stopped" in res.output and "database stopped" in res.output
            assert not rep.running() and not primary.running()
        finally:
            rep.destroy()
