"""Where the trading functions live: the procedures meant for users in ``trading``, the internals in ``internal``
(migration 0012), which nobody but the owner reaches; every function commented, search paths pinned; the old
``trading.*`` copies of moved functions dropped on migrate."""

from __future__ import annotations

import psycopg
import pytest

from pgtrade.migrate import migrate

USER_FACING = {
    # procedures a psql user (or the CLI, or api.*) calls
    "place_order",
    "cancel_order",
    "close_position",
    "create_account",
    "configure_account",
    "set_paused",
    "advance_clock",
    "account_now",
    "portfolio",
    "snapshot_portfolio",
    "snapshot_live_portfolios",  # pg_cron job
    "expire_orders",  # pg_cron job
    "replay_positions",
    # the pure rules (no table access, no side effects; trading_rules.sql, trading_clock.sql)
    "account_clock",
    "commission",
    "pnl_step",
    "fill_rule",
    "slipped_price",
    "affordability",
    "exposure_rule",
    # trigger functions (PostgreSQL refuses to call them other than as triggers)
    "tg_bars__fire_live_orders",
    "tg_orders__record_history",
}
INTERNAL = {
    "apply_fill",
    "end_order",
    "emit",
    "execute_bar_event",
    "may_act",
    "match_orders",
    "mark_latest",
    "mark_positions",
    # ML (issue 12): the closed-bar hand-off and ONNX scoring
    "on_closed_bars",
    "onnx_run",
    "process_closed",
    "on_late_bars",
    # models and training (issue 12): the ml package's PL/Python entry points and the check of a training request
    "python_importer",
    "model_kinds",
    "train_model",
    "evaluate_model",
    "onnx_describe",
    "check_training_input",
    # scoring and auto-trading (issue 12)
    "feature_rows",
    "incompatible_model",
    "scored",
    "score_bars",
    "auto_trade",
    # anomalies (issue 12)
    "detect_anomalies",  # the anomaly step of internal.on_closed_bars (db/procedures/ml_anomalies.sql)
    "window_stats",  # its rolling robust statistics, numpy in PL/Python (db/superuser/2_2_ml_python.sql)
    # backtesting (issue 13): the engine's steps (db/procedures/backtest_*.sql)
    "backtest_engine_defaults",
    "backtest_request",
    "backtest_params",
    "backtest_decide",
    "backtest_exact",
    "backtest_fast",
    "backtest_snapshots",
    "backtest_fingerprint",
    "backtest_trades",  # round-trip trades of a run (db/procedures/backtest_trades.sql)
    "backtest_parent",  # the parent run of a grid or walk-forward (db/procedures/backtest_grid.sql)
    # reproducibility (issue 13): the fingerprint's steps (db/procedures/backtest_fingerprint.sql)
    "backtest_data_version",
    "backtest_fingerprint_warmup",
}


def _names(db, schema: str) -> set[str]:
    return {r[0] for r in db.execute("SELECT proname FROM pg_proc WHERE pronamespace = %s::regnamespace", (schema,))}


def test_trading_holds_the_user_facing_functions_and_internal_the_rest(db):
    assert _names(db, "trading") == USER_FACING
    assert _names(db, "internal") == INTERNAL


def test_nobody_but_the_owner_reaches_internal(db):
    assert db.execute("SELECT obj_description('internal'::regnamespace, 'pg_namespace')").fetchone()[0]
    rows = db.execute(
        """SELECT r.rolname FROM pg_roles r
           WHERE r.rolname IN ('web_anon', 'trader', 'pgtrade_admin', 'authenticator')
             AND has_schema_privilege(r.oid, 'internal'::regnamespace, 'USAGE')"""
    ).fetchall()
    assert rows == []
    assert not db.execute("SELECT has_schema_privilege('public', 'internal'::regnamespace, 'USAGE')").fetchone()[0]
    executable = db.execute(
        """SELECT p.oid::regprocedure::text FROM pg_proc p
           WHERE p.pronamespace = 'internal'::regnamespace AND has_function_privilege('public', p.oid, 'EXECUTE')"""
    ).fetchall()
    assert executable == []


@pytest.mark.parametrize("role", ["trader", "pgtrade_admin", "web_anon"])
def test_a_web_role_cannot_forge_an_event_or_a_fill(db, role):
    db.execute(f"SET LOCAL ROLE {role}")
    for call in (
        "SELECT internal.emit(1, 'fill', NULL, now(), '{}')",
        "SELECT internal.apply_fill(1, 1, 1, 1, 1)",
        "SELECT internal.match_orders(ARRAY[]::market.ohlcv[])",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            with db.transaction():
                db.execute(call)


def test_web_roles_execute_nothing_outside_api(db):
    """Least privilege: a function called in an api view runs with the caller's privileges, so a trading function
    used by an api view would need EXECUTE for the web roles; none has it (the valuation rule is a view for that)."""
    rows = db.execute(
        """SELECT r.rolname, p.oid::regprocedure::text FROM pg_roles r CROSS JOIN pg_proc p
           JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE r.rolname IN ('web_anon', 'trader', 'pgtrade_admin')
             AND n.nspname IN ('trading', 'internal', 'market', 'ops')
             AND has_function_privilege(r.oid, p.oid, 'EXECUTE')"""
    ).fetchall()
    assert rows == []


def test_every_trading_and_internal_function_is_commented_and_pins_its_path(db):
    uncommented = db.execute(
        """SELECT p.oid::regprocedure::text FROM pg_proc p
           WHERE p.pronamespace IN ('trading'::regnamespace, 'internal'::regnamespace)
             AND obj_description(p.oid, 'pg_proc') IS NULL"""
    ).fetchall()
    assert uncommented == []
    # Internal functions pin search_path (cached plans survive callers with other paths), except the scalar SQL
    # rule may_act: a SET clause would stop it being inlined into the queries that use it.
    unpinned = db.execute(
        """SELECT p.proname::text FROM pg_proc p
           WHERE p.pronamespace = 'internal'::regnamespace
             AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)"""
    ).fetchall()
    assert unpinned == [("may_act",)]


def test_migrate_drops_the_old_trading_copies_of_moved_functions(scratch_db):
    """A database migrated by the code before 0012 has trading.emit, trading.apply_fill, ... recorded as defined by
    the repeatable files; the next migrate drops every one of them."""
    with psycopg.connect(scratch_db, autocommit=True) as conn:
        migrate(conn)
        old = {
            "trading.emit(bigint, text, bigint, timestamptz, jsonb)": "bigint",
            "trading.apply_fill(bigint, numeric, numeric, numeric, numeric, timestamptz)": "trading.fills",
            "trading.end_order(bigint, text, text)": "trading.orders",
            "trading.may_act(text, text, boolean, numeric, numeric, numeric, numeric)": "boolean",
            "trading.match_orders(market.ohlcv[], bigint)": "integer",
        }
        for sig, ret in old.items():
            conn.execute(f"CREATE FUNCTION {sig} RETURNS {ret} LANGUAGE sql AS 'SELECT NULL::{ret}'")
            ident = conn.execute("SELECT %s::regprocedure::text", (sig,)).fetchone()[0]
            conn.execute("INSERT INTO ops.repeatable_objects VALUES ('function', %s)", (ident,))
        report = migrate(conn)
        assert len([d for d in report.dropped if d.startswith("function trading.")]) == len(old)
        left = conn.execute(
            "SELECT count(*) FROM pg_proc WHERE pronamespace = 'trading'::regnamespace"
            " AND proname IN ('emit', 'apply_fill', 'end_order', 'may_act', 'match_orders')"
        ).fetchone()[0]
        assert left == 0
        moved = "SELECT to_regprocedure('internal.emit(bigint, text, bigint, timestamptz, jsonb)') IS NOT NULL"
        assert conn.execute(moved).fetchone()[0] is True
