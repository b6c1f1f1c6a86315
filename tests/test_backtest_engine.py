"""The backtest engine's contract: market-on-open accounts, what a bad request gets, failed runs kept as failed."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal as D

import psycopg
import pytest
from backtest_support import ensure_sample, run
from trading_support import T0, account, bars, instrument, order

BARS = [(100, 101, 99, 100.5), (102, 103, 101, 102.5), (104, 105, 103, 104.5), (106, 107, 105, 106.5)]


@pytest.fixture
def series(db, unique_symbol):
    instrument(db, unique_symbol, session_open=None, session_close=None, trades_weekends=True, session_tz="UTC")
    bars(db, unique_symbol, BARS, interval="1m")
    return unique_symbol


def test_a_market_order_on_a_market_on_open_account_fills_at_the_open_of_the_bar_opening_at_the_clock(db, series):
    a = account(db, "moo", clock=T0 + timedelta(minutes=2), match_interval="1m", market_fill="open", slippage_bps=10)
    o = order(db, a, series, "buy", 10)
    assert o["status"] == "filled"
    # the open of the bar opening at T0 + 2 min is 104; buys pay 10 bps: 104 x 1.001
    assert o["avg_fill_price"] == D("104.104")
    assert o["est_price"] == D("104.104")


def test_a_market_on_open_account_rejects_a_market_order_when_no_bar_opens_at_its_clock(db, series):
    a = account(db, "moo", clock=T0 + timedelta(seconds=30), match_interval="1m", market_fill="open")
    o = order(db, a, series, "buy", 10)
    assert (o["status"], o["reject_code"]) == ("rejected", "TR008")
    assert "opens at" in o["reject_reason"]


def test_market_on_open_is_for_manual_clock_accounts_with_a_match_interval_only(db):
    with pytest.raises(psycopg.errors.CheckViolation), db.transaction():
        account(db, "wall", kind="live", clock=None, market_fill="open", match_interval="1m")
    with pytest.raises(psycopg.errors.CheckViolation), db.transaction():
        account(db, "no-interval", market_fill="open")


def _raises(db, code, *args, **params):
    with pytest.raises(psycopg.Error) as e, db.transaction():
        db.execute(
            "SELECT * FROM backtest.run(%s, %s, %s, %s, %s, %s::jsonb, %s)",
            (*args[:5], json.dumps(params.pop("params", {})), params.pop("mode", "auto")),
        )
    assert e.value.sqlstate == code, e.value
    assert e.value.diag.message_hint, "every error carries a hint"
    return e.value


GOOG = ("sma_crossover", ["GOOG"], "1d", "2005-01-01", "2006-01-01")


@pytest.fixture
def goog(db):
    ensure_sample(db, "GOOG")
    return db


@pytest.mark.parametrize(
    "args, params, mode, code",
    [
        (("no_such", ["GOOG"], "1d", "2005-01-01", "2006-01-01"), {}, "auto", "BT001"),
        (("sma_crossover", [], "1d", "2005-01-01", "2006-01-01"), {}, "auto", "BT002"),
        (("sma_crossover", ["NOPE"], "1d", "2005-01-01", "2006-01-01"), {}, "auto", "BT002"),
        (("sma_crossover", ["GOOG"], "7m", "2005-01-01", "2006-01-01"), {}, "auto", "BT003"),
        (("sma_crossover", ["GOOG"], "1d", "2006-01-01", "2005-01-01"), {}, "auto", "BT003"),
        (("sma_crossover", ["GOOG"], "1d", "2005-01-01", "infinity"), {}, "auto", "BT003"),
        (GOOG, {"fastt": 3}, "auto", "BT004"),
        (GOOG, {"cash": -5}, "auto", "BT004"),
        (GOOG, {"cash": "lots"}, "auto", "BT004"),
        (GOOG, {"commission": 1.5}, "auto", "BT004"),
        (GOOG, {"sizing": "kelly"}, "auto", "BT004"),
        (GOOG, {}, "turbo", "BT004"),
    ],
    ids=[
        "unknown-strategy", "no-symbol", "unknown-symbol", "unknown-interval", "reversed-range", "infinite-range",
        "unknown-param", "negative-cash", "cash-not-a-number", "commission-over-1", "unknown-sizing", "unknown-mode",
    ],
)  # fmt: skip
def test_a_bad_request_raises_with_its_code_and_records_nothing(goog, args, params, mode, code):
    before = goog.execute("SELECT count(*) FROM backtest.runs").fetchone()[0]
    _raises(goog, code, *args, params=params, mode=mode)
    assert goog.execute("SELECT count(*) FROM backtest.runs").fetchone()[0] == before


def test_an_inactive_symbol_is_refused(goog, unique_symbol):
    instrument(goog, unique_symbol)
    goog.execute("UPDATE market.instruments SET active = false WHERE symbol = %s", (unique_symbol,))
    assert (
        unique_symbol
        in _raises(
            goog, "BT002", "sma_crossover", [unique_symbol], "1d", "2005-01-01", "2006-01-01"
        ).diag.message_primary
    )


def _run_row(db, *args, params=None, mode="auto"):
    return db.execute(
        "SELECT status, error, account_id FROM backtest.run(%s, %s, %s, %s, %s, %s::jsonb, %s)",
        (*args, json.dumps(params or {}), mode),
    ).fetchone()


def test_a_run_without_bars_is_kept_as_failed_with_its_reason_and_nothing_else(goog):
    accounts = goog.execute("SELECT count(*) FROM trading.accounts").fetchone()[0]
    status, error, account_id = _run_row(goog, "sma_crossover", ["GOOG"], "1d", "1990-01-01", "1991-01-01")
    assert (status, account_id) == ("failed", None)
    assert error.startswith("BT007: no 1d bars of GOOG")
    assert goog.execute("SELECT count(*) FROM trading.accounts").fetchone()[0] == accounts


def _strategy(db, name, body):
    db.execute(
        f"CREATE FUNCTION pg_temp.{name}(run backtest.runs) RETURNS SETOF backtest.decision"
        f" LANGUAGE sql AS $$ {body} $$"
    )
    db.execute(
        "SELECT backtest.register_strategy(%s, %s::regprocedure, 'test')", (name, f"pg_temp.{name}(backtest.runs)")
    )


def test_a_failing_strategy_leaves_a_failed_run_and_no_half_written_account(goog):
    _strategy(
        goog,
        "t_fails",
        "SELECT 'GOOG', b.ts, 1 / (b.close - b.close), NULL::numeric, NULL::numeric FROM backtest.bars(run) b",
    )
    status, error, account_id = _run_row(goog, "t_fails", ["GOOG"], "1d", "2005-01-01", "2006-01-01")
    assert (status, account_id) == ("failed", None)
    assert error.startswith("22012: division by zero")
    orphans = (
        "SELECT count(*) FROM trading.accounts a WHERE a.name LIKE 'backtest run %%'"
        " AND NOT EXISTS (SELECT 1 FROM backtest.runs r WHERE r.account_id = a.id)"
    )
    assert goog.execute(orphans).fetchone()[0] == 0


def test_a_decision_off_the_bars_of_the_run_fails_the_run(goog):
    _strategy(
        goog, "t_offgrid", "SELECT 'GOOG', run.start_ts + interval '1 minute', 1::numeric, NULL::numeric, NULL::numeric"
    )
    status, error, _ = _run_row(goog, "t_offgrid", ["GOOG"], "1d", "2005-01-01", "2006-01-01")
    assert status == "failed" and error.startswith("BT008"), error


def test_risk_sizing_without_stop_levels_and_fast_mode_with_brackets_are_refused(goog):
    status, error, _ = _run_row(goog, *GOOG, params={"sizing": "risk"})
    assert status == "failed" and error.startswith("BT005"), error
    _strategy(
        goog,
        "t_bracket",
        "SELECT 'GOOG', min(b.ts), 1::numeric, min(b.close) * 0.9, NULL::numeric FROM backtest.bars(run) b",
    )
    status, error, _ = _run_row(goog, "t_bracket", ["GOOG"], "1d", "2005-01-01", "2006-01-01", mode="fast")
    assert status == "failed" and error.startswith("BT006"), error
    r = run(goog, "t_bracket", ["GOOG"], "1d", "2005-01-01", "2006-01-01")  # auto picks the exact path
    assert r["mode"] == "exact"
    kinds = goog.execute(
        "SELECT array_agg(source ORDER BY id) FROM trading.orders WHERE account_id = %s", (r["account_id"],)
    ).fetchone()[0]
    assert kinds == ["strategy", "stop_loss"]  # the bracket child rests through the live matching code


def test_register_strategy_refuses_a_function_of_the_wrong_shape(goog):
    goog.execute(
        "CREATE FUNCTION pg_temp.t_bad(x int) RETURNS SETOF backtest.decision LANGUAGE sql"
        " AS $$ SELECT NULL::backtest.decision $$"
    )
    with pytest.raises(psycopg.Error) as e, goog.transaction():
        goog.execute("SELECT backtest.register_strategy('t_bad', 'pg_temp.t_bad(int)'::regprocedure, 'x')")
    assert e.value.sqlstate == "BT010"


def test_decisions_are_acted_on_at_the_next_bars_open_never_at_the_deciding_bar(goog):
    r = run(goog, "sma_crossover", ["GOOG"], "1d", "2004-01-01", "2014-01-01", {"cash": 10000, "commission": 0.002})
    rows = goog.execute(
        """SELECT d.ts, d.exec_ts, f.ts, f.ref_price, b.open
           FROM backtest.decisions d JOIN trading.fills f ON f.order_id = d.order_id
           JOIN market.bars b ON b.symbol = d.symbol AND b.interval = '1d' AND b.ts = d.exec_ts
           WHERE d.run_id = %s""",
        (r["id"],),
    ).fetchall()
    assert len(rows) == r["fills"] > 0
    for decided, exec_ts, filled, ref, open_ in rows:
        assert exec_ts > decided and filled == exec_ts and ref == open_
        nxt = goog.execute(
            "SELECT min(ts) FROM market.bars WHERE symbol = 'GOOG' AND interval = '1d' AND ts > %s", (decided,)
        ).fetchone()[0]
        assert exec_ts == nxt
