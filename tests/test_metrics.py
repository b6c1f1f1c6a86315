"""The metrics of db/procedures/ops_metrics.sql on a seeded database: each equals an independent count of the same
thing (or, for the portfolio, trading.portfolio and the newest snapshot), and pgtrade_monitor, the exporter's login,
reads these metrics and nothing else of pgtrade.

``seed`` is also the data of tests/test_monitoring_stack.py (a real exporter and Prometheus read it back)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from ml_support import register_model, toy_model, walk
from trading_support import account, instrument, order

from pgtrade.ingest import Bar, Unparsed, ingest_batch
from pgtrade.migrate import migrate

METRIC_FUNCTIONS = [
    "connections",
    "database",
    "replication",
    "statements",
    "hypertables",
    "bars",
    "rejected_bars",
    "signals",
    "anomalies",
    "orders",
    "fills",
    "rejections",
    "portfolio",
    "alerts",
    "backtests",
]


@dataclass(frozen=True, kw_only=True)
class Seeded:
    symbol: str
    account: str
    account_id: int
    model: str


def seed(conn: psycopg.Connection) -> Seeded:
    """Every kind of business fact, through the real procedures: bars (and rejected ones), a model whose signals
    the closed bars cause, a live account with filled, resting, cancelled and rejected orders (two rules), its
    snapshot, an anomaly and an alert, and a backtest run."""
    tag = uuid.uuid4().hex[:8]
    sym = f"M{tag.upper()}"
    model = f"m_{tag}"
    name = f"metrics-{tag}"
    instrument(conn, sym, asset_class="crypto", session_open=None, session_close=None, trades_weekends=True)
    register_model(conn, toy_model(), name=model, symbols=[sym], interval="1m")
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=70)
    bars = walk(sym, 60, start)
    ingest_batch(conn, bars, source="test")
    bad = bars[-1]
    ingest_batch(
        conn,
        [
            Bar(sym, "1m", bad.ts + timedelta(minutes=1), "10", "9", "8", "9.5", "1"),  # high below open
            Bar(sym, "1m", bad.ts + timedelta(minutes=2), "-1", "1", "-2", "1", "1"),  # negative price
            Unparsed(raw="garbage,line", problem="not a bar", symbol="NO SUCH THING", interval="1m"),
        ],
        source="test",
    )
    acct = account(
        conn, name, kind="live", clock=None, max_price_age="1 day", commission_rate="0.0005", commission_min="1"
    )
    order(conn, acct, sym, "buy", 10)  # filled at the last price
    order(conn, acct, sym, "buy", 5)  # filled
    resting = order(conn, acct, sym, "buy", 1, "limit", limit_price=Decimal(bars[-1].close) / 2)
    cancel = order(conn, acct, sym, "buy", 1, "limit", limit_price=Decimal(bars[-1].close) / 3)
    conn.execute("SELECT trading.cancel_order(%s, 'test')", (cancel["id"],))
    order(conn, acct, sym, "buy", 100000)  # more than the cash: rejected
    order(conn, acct, sym, "sell", 1000)  # more than the position: rejected by another rule
    assert resting["status"] == "accepted", resting
    conn.execute("SELECT trading.snapshot_portfolio(%s)", (acct,))
    anomaly = conn.execute(
        "INSERT INTO ml.anomalies (symbol, interval, ts, type, score, severity) VALUES (%s, '1m', %s, 'gap', 9, "
        "'CRITICAL') RETURNING id",
        (sym, bars[10].ts),
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO ops.alerts (kind, severity, symbol, message, anomaly_id) VALUES ('anomaly', 'CRITICAL', %s, "
        "'metrics test', %s)",
        (sym, anomaly),
    )
    run = conn.execute(
        "SELECT status FROM backtest.run('sma_crossover', %s, '1m', %s, %s, '{\"fast\": 3, \"slow\": 8}'::jsonb)",
        ([sym], bars[0].ts, bars[-1].ts),
    ).fetchone()
    assert run[0] == "done", run
    return Seeded(symbol=sym, account=name, account_id=acct, model=model)


def rows(conn: psycopg.Connection, query: str, params=()) -> set[tuple]:
    return {tuple(r) for r in conn.execute(query, params).fetchall()}


@pytest.fixture
def seeded(db) -> Seeded:
    return seed(db)


def test_business_metrics_equal_independent_counts(db, seeded):
    s = seeded
    assert rows(db, "SELECT symbol, interval, stored FROM ops.metrics_bars() WHERE symbol = %s", (s.symbol,)) == {
        (s.symbol, "1m", 60)
    }
    got = rows(db, "SELECT * FROM ops.metrics_rejected_bars()")
    want = rows(
        db,
        """SELECT CASE WHEN symbol IN (SELECT symbol FROM market.instruments) THEN symbol ELSE '(invalid)' END,
                  CASE WHEN interval IN (SELECT code FROM market.intervals) THEN interval ELSE '(invalid)' END,
                  count(*)
           FROM market.rejected_bars GROUP BY 1, 2""",
    )
    assert got == want
    assert (s.symbol, "1m", 2) in got and any(r[0] == "(invalid)" for r in got)
    got = rows(db, "SELECT * FROM ops.metrics_signals() WHERE model = %s", (s.model,))
    want = rows(
        db,
        "SELECT m.name, m.kind, s.signal, count(*) FROM ml.signals s, ml.models m "
        "WHERE m.id = s.model_id AND m.name = %s GROUP BY 1, 2, 3",
        (s.model,),
    )
    assert got == want and sum(r[3] for r in got) > 0
    assert rows(db, "SELECT * FROM ops.metrics_anomalies()") == rows(
        db, "SELECT type, severity, count(*) FROM ml.anomalies GROUP BY 1, 2"
    )
    assert (
        rows(db, "SELECT * FROM ops.metrics_orders() WHERE account = %s", (s.account,))
        == {
            (s.account, "filled", 2),
            (s.account, "accepted", 1),
            (s.account, "cancelled", 1),
            (s.account, "rejected", 2),
        }
        == rows(
            db,
            "SELECT %s::text, status, count(*) FROM trading.orders WHERE account_id = %s GROUP BY status",
            (s.account, s.account_id),
        )
    )
    assert rows(db, "SELECT * FROM ops.metrics_fills() WHERE account = %s", (s.account,)) == rows(
        db,
        "SELECT %s::text, count(*), sum(qty * price), sum(commission) FROM trading.fills WHERE account_id = %s",
        (s.account, s.account_id),
    )
    rejections = rows(db, "SELECT code, total FROM ops.metrics_rejections() WHERE account = %s", (s.account,))
    assert rejections == rows(
        db,
        "SELECT reject_code, count(*) FROM trading.orders WHERE account_id = %s AND status = 'rejected' GROUP BY 1",
        (s.account_id,),
    )
    assert len(rejections) == 2  # two rules, one row each
    assert rows(db, "SELECT * FROM ops.metrics_alerts()") == rows(
        db,
        "SELECT kind, severity, count(*) FILTER (WHERE acknowledged_at IS NULL), count(*) FROM ops.alerts "
        "GROUP BY 1, 2",
    )
    assert rows(db, "SELECT * FROM ops.metrics_backtests()") == rows(
        db, "SELECT status, count(*) FROM backtest.runs GROUP BY 1"
    )
    # only live accounts: the backtest's own account is in no business metric
    live = {r[0] for r in db.execute("SELECT name FROM trading.accounts WHERE kind = 'live'")}
    for fn in ("orders", "fills", "rejections", "portfolio"):
        assert {r[0] for r in db.execute(f"SELECT account FROM ops.metrics_{fn}()")} <= live


def test_portfolio_metrics_are_the_existing_valuation(db, seeded):
    s = seeded
    order(db, s.account_id, s.symbol, "sell", 4)  # some realized P&L too
    got = db.execute(
        "SELECT value, cash, positions_value, realized_pnl, unrealized_pnl, net_pnl, commissions, gross_exposure,"
        " drawdown_ratio, peak_value FROM ops.metrics_portfolio() WHERE account = %s",
        (s.account,),
    ).fetchall()
    want = db.execute(
        """SELECT p.total_value, p.cash, p.positions_value, p.realized_pnl, p.unrealized_pnl, p.net_pnl, p.commissions,
                  p.gross_exposure, ps.drawdown, ps.peak_value
           FROM trading.portfolio(%s) p,
                LATERAL (SELECT * FROM trading.portfolio_snapshots WHERE account_id = %s
                         ORDER BY ts DESC LIMIT 1) ps""",
        (s.account_id, s.account_id),
    ).fetchall()
    assert got == want and len(got) == 1
    assert got[0][6] > 0 and got[0][2] > 0  # commissions paid, a position held


def test_system_metrics_equal_the_statistics_views(db, seeded):
    states = dict(db.execute("SELECT * FROM ops.metrics_connections()").fetchall())
    assert states["active"] >= 1 and set(states) >= {"idle", "idle in transaction"}
    assert (
        sum(states.values())
        == db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND state IS NOT NULL"
        ).fetchone()[0]
    )
    size, ratio = db.execute("SELECT size_bytes, cache_hit_ratio FROM ops.metrics_database()").fetchone()
    assert size == db.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    assert 0 < ratio <= 1
    # no replica: no rows (tests/test_replica.py starts one)
    assert (
        db.execute("SELECT count(*) FROM ops.metrics_replication()").fetchone()[0]
        == db.execute("SELECT count(*) FROM pg_stat_replication").fetchone()[0]
    )
    # hypertables: chunk counts and the compression ratio, after compressing the seeded series' chunk
    db.execute(
        """SELECT compress_chunk(format('%I.%I', c.chunk_schema, c.chunk_name)) FROM timescaledb_information.chunks c
           WHERE c.hypertable_name = 'bars' AND c.range_start <= now() AND c.range_end > now()"""
    )
    got = {r[0]: r for r in db.execute("SELECT * FROM ops.metrics_hypertables()")}
    assert {"market.bars", "market.bars_5m", "market.bars_1h", "market.bars_1d"} <= set(got)
    _, chunks, compressed, size, biggest, before, after, ratio = got["market.bars"]
    assert chunks == db.execute("SELECT count(*) FROM show_chunks('market.bars')").fetchone()[0]
    assert (
        compressed
        == db.execute(
            "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'bars' AND is_compressed"
        ).fetchone()[0]
    )
    assert compressed >= 1 and ratio == pytest.approx(before / after) and 0 < biggest <= size
    for name, row in got.items():  # the size is TimescaleDB's own total
        rel = name if name == "market.bars" else _materialization(db, name)
        assert (
            row[3] == db.execute("SELECT total_bytes FROM hypertable_detailed_size(%s::regclass)", (rel,)).fetchone()[0]
        )


def _materialization(db, view: str) -> str:
    schema, name = view.split(".")
    return db.execute(
        "SELECT format('%%I.%%I', materialization_hypertable_schema, materialization_hypertable_name)"
        " FROM timescaledb_information.continuous_aggregates WHERE view_schema = %s AND view_name = %s",
        (schema, name),
    ).fetchone()[0]


def test_statement_latency_names_the_key_procedures(scratch_db):
    """Committed calls (pg_stat_statements counts a statement when it ends): place_order through the API's
    function, ingest, the closed-bars step the bar trigger runs (a nested statement), and a backtest. In a database
    of its own: the seed commits, and the statistics are per database."""
    with psycopg.connect(scratch_db, autocommit=True) as conn:
        migrate(conn)
        before = dict(
            ((p, t), c) for p, t, c in conn.execute("SELECT procedure, toplevel, calls FROM ops.metrics_statements()")
        )
        with conn.transaction():
            s = seed(conn)
            conn.execute("SET LOCAL ROLE pgtrade_admin")
            conn.execute("SELECT set_config('request.jwt.claims', '{\"role\": \"pgtrade_admin\"}', true)")
            conn.execute(
                "SELECT * FROM api.place_order(%s, 'buy', 1, account => %s)",
                (s.symbol, s.account),
            )
        after = {
            (p, t): (c, total, mean)
            for p, t, c, total, mean, _ in conn.execute("SELECT * FROM ops.metrics_statements()")
        }
    for key in [
        ("api.place_order", True),
        ("trading.place_order", True),
        ("market.ingest_staged", True),
        ("internal.process_closed", False),
        ("backtest.run", True),
    ]:
        calls, total, mean = after[key]
        assert calls > before.get(key, 0), key
        assert total > 0 and mean == pytest.approx(total / calls)
    assert not any(p.startswith("api.") and not t for p, t in after)  # api functions are only called from outside


def test_monitor_reads_the_metrics_and_nothing_else(db, seeded):
    db.execute("SET LOCAL ROLE pgtrade_monitor")
    for fn in METRIC_FUNCTIONS:
        with db.transaction():
            db.execute(f"SELECT * FROM ops.metrics_{fn}()").fetchall()
    forbidden = [
        "SELECT * FROM trading.orders",
        "SELECT * FROM trading.accounts",
        "SELECT * FROM market.bars",
        "SELECT * FROM ml.signals",
        "SELECT * FROM ops.alerts",
        "SELECT * FROM trading.portfolio(1)",
        "SELECT * FROM trading.place_order(1, 'X', 'buy', 1)",
        "SELECT * FROM api.place_order('X', 'buy', 1)",
        "SELECT * FROM api.orders",
        "SELECT * FROM ops.alerts_pending('x')",
    ]
    for stmt in forbidden:
        with pytest.raises(psycopg.errors.InsufficientPrivilege), db.transaction():
            db.execute(stmt)


def test_monitor_executes_exactly_the_metric_functions(db):
    """Catalog-wide: every function of pgtrade's schemas pgtrade_monitor may execute is an ops.metrics_* one (and
    each of those is SECURITY DEFINER only when it reads pgtrade's tables); it reads no table of pgtrade."""
    executable = {
        r[0]
        for r in db.execute(
            """SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
               WHERE n.nspname IN ('api', 'market', 'trading', 'internal', 'ml', 'backtest', 'ops')
                 AND has_function_privilege('pgtrade_monitor', p.oid, 'EXECUTE')"""
        )
    }
    assert executable == {f"ops.metrics_{fn}()" for fn in METRIC_FUNCTIONS}
    readable = db.execute(
        """SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname IN ('api', 'market', 'trading', 'internal', 'ml', 'backtest', 'ops', '_timescaledb_internal')
             AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
             AND NOT EXISTS (SELECT 1 FROM pg_depend d  -- TimescaleDB's own catalog (what PUBLIC may read of it)
                             WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
             AND has_table_privilege('pgtrade_monitor', c.oid, 'SELECT, INSERT, UPDATE, DELETE')"""
    ).fetchall()
    assert readable == []
    definer = {
        r[0]
        for r in db.execute(
            "SELECT proname FROM pg_proc WHERE pronamespace = 'ops'::regnamespace AND proname LIKE 'metrics%' "
            "AND prosecdef AND proowner = 'pgtrade_owner'::regrole"
        )
    }
    assert definer == {f"metrics_{fn}" for fn in METRIC_FUNCTIONS[4:]}
    member = db.execute("SELECT pg_has_role('pgtrade_monitor', 'pg_monitor', 'MEMBER')").fetchone()[0]
    assert member
