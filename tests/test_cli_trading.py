"""The trading CLI against the real database: orders (market, limit, bracket, rejected), cancel, orders,
positions, portfolio (tables and --json), events follow (LISTEN). Each test commits under its own account and
symbol."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from click.testing import CliRunner
from trading_support import D, bars, instrument
from waiting import eventually

from pgtrade.cli import main


@pytest.fixture
def trading_env(monkeypatch, db_url, unique_symbol):
    """A committed symbol with a fresh 1-minute bar at 100 and a wall-clock account with 10,000."""
    monkeypatch.setenv("PGTRADE_DATABASE_URL", db_url)
    name = f"cli_{uuid.uuid4().hex[:8]}"
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=3)
    with psycopg.connect(db_url) as conn:
        instrument(conn, unique_symbol, session_open=None, session_close=None, trades_weekends=True, session_tz="UTC")
        bars(conn, unique_symbol, [(100, 100, 100, 100)] * 2, start=start)
        conn.execute(
            "SELECT trading.create_account(%s, 10000, 'live', NULL, %s::jsonb)",
            (name, json.dumps({"commission_rate": 0, "commission_min": 0, "slippage_bps": 0, "max_position_pct": 100})),
        )
        conn.commit()
    return unique_symbol, name, db_url


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_buy_sell_limit_cancel_and_reads(trading_env):
    sym, acct, _ = trading_env
    r = run("order", "buy", sym, 10, "--account", acct)
    assert r.exit_code == 0, r.output
    assert "filled: buy 10 " + sym in r.output and "at 100" in r.output
    r = run("order", "buy", sym, 5, "--limit", "90", "--tif", "gtc", "--client-id", "c-1", "--account", acct, "--json")
    assert r.exit_code == 0, r.output
    limit = json.loads(r.output)
    assert (limit["status"], limit["type"], Decimal(limit["limit_price"]), limit["client_order_id"]) == (
        "accepted",
        "limit",
        90,
        "c-1",
    )
    opened = json.loads(run("orders", "--account", acct, "--json").output)
    assert [o["id"] for o in opened] == [limit["id"]]
    table = run("orders", "--account", acct)
    assert table.exit_code == 0 and f"open orders of {acct}" in table.output
    r = run("order", "cancel", limit["id"])
    assert r.exit_code == 0 and f"order {limit['id']} cancelled" in r.output
    again = run("order", "cancel", limit["id"])
    assert again.exit_code == 1 and "TR015" in again.output and "Traceback" not in again.output
    assert json.loads(run("orders", "--account", acct, "--json").output) == []
    every = json.loads(run("orders", "--status", "all", "--account", acct, "--json").output)
    assert [o["status"] for o in every] == ["cancelled", "filled"]

    pos = json.loads(run("positions", "--account", acct, "--json").output)
    assert [(p["symbol"], Decimal(p["qty"]), Decimal(p["avg_price"])) for p in pos] == [(sym, 10, 100)]
    assert f"positions of {acct}" in run("positions", "--account", acct).output
    pf = json.loads(run("portfolio", "--account", acct, "--json").output)
    assert [Decimal(pf[k]) for k in ("cash", "positions_value", "total_value")] == [9000, 1000, 10000]
    assert pf["paused"] is False
    assert "total_value" in run("portfolio", "--account", acct).output

    r = run("order", "sell", sym, 10, "--account", acct)
    assert r.exit_code == 0 and "filled: sell 10" in r.output
    assert json.loads(run("positions", "--account", acct, "--json").output) == []
    assert len(json.loads(run("positions", "--all", "--account", acct, "--json").output)) == 1


def test_bracket_order_options_reach_the_database(trading_env):
    sym, acct, _ = trading_env
    r = run("order", "buy", sym, 1, "--stop-loss", 95, "--take-profit", 110, "--account", acct, "--json")
    o = json.loads(r.output)
    assert (o["status"], Decimal(o["stop_loss"]), Decimal(o["take_profit"])) == ("filled", 95, 110)
    children = json.loads(run("orders", "--account", acct, "--json").output)
    assert sorted((c["source"], c["type"]) for c in children) == [("stop_loss", "stop"), ("take_profit", "limit")]
    r = run("order", "sell", sym, 1, "--stop", 90, "--limit", 89, "--account", acct, "--json")
    assert json.loads(r.output)["type"] == "stop_limit"


def test_rejected_order_is_one_line_exit_1_and_recorded(trading_env):
    sym, acct, url = trading_env
    r = run("order", "buy", sym, 1000, "--account", acct)  # 100,000 > 10,000 cash
    assert r.exit_code == 1
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "rejected" in lines[0] and "TR001" in lines[0] and "Traceback" not in r.output
    order_id = int(lines[0].split("order ")[1].split()[0])
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT status, reject_code FROM trading.orders WHERE id = %s", (order_id,)).fetchone() == (
            "rejected",
            "TR001",
        )
    r = run("order", "buy", sym, 1000, "--account", acct, "--json")
    assert r.exit_code == 1 and json.loads(r.output)["reject_code"] == "TR001"


def test_user_errors_are_one_line(trading_env):
    sym, acct, _ = trading_env
    for args in (
        ("order", "buy", sym, 1, "--account", "no-such-account"),
        ("portfolio", "--account", "nobody-x"),
        ("order", "cancel", 0),
        ("order", "buy", sym, "ten"),
    ):
        r = run(*args)
        assert r.exit_code != 0 and "Traceback" not in r.output, args
        assert len([ln for ln in r.output.splitlines() if ln.strip()]) <= 4, r.output  # click usage errors: 3 lines


def test_events_follow_prints_events_as_they_happen(trading_env, monkeypatch):
    sym, acct, url = trading_env
    # the follower's session carries a name of its own, so the other client can see its LISTEN take effect
    app = f"pgtrade-follow-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PGTRADE_DATABASE_URL", psycopg.conninfo.make_conninfo(url, application_name=app))
    errors: list[BaseException] = []

    def trade():  # another client (CliRunner is not thread-safe: plain SQL here)
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                # LISTEN is in effect once the follower's session has run it and gone idle (autocommit)
                eventually(
                    lambda: conn.execute(
                        "SELECT 1 FROM pg_stat_activity WHERE application_name = %s"
                        " AND query = 'LISTEN pgtrade_events' AND state = 'idle'",
                        (app,),
                    ).fetchone(),
                    timeout=15,
                    what="the follower to LISTEN",
                )
                aid = conn.execute("SELECT id FROM trading.accounts WHERE name = %s", (acct,)).fetchone()[0]
                conn.execute("SELECT trading.place_order(%s, %s, 'buy', 1)", (aid, sym))
                conn.execute("SELECT trading.place_order(%s, %s, 'buy', 100000)", (aid, sym))  # rejected: an event
        except BaseException as exc:  # reported by the test below, not lost in the thread
            errors.append(exc)

    t = threading.Thread(target=trade)
    t.start()
    r = run("events", "follow", "--account", acct, "--max-events", 3, "--timeout", 20, "--json")
    t.join()
    assert not errors, errors
    assert r.exit_code == 0, r.output
    events = [json.loads(ln) for ln in r.output.splitlines() if ln.startswith("{")]
    assert [e["kind"] for e in events] == ["order_accepted", "fill", "order_rejected"]
    assert {e["account"] for e in events} == {acct}
    quiet = run("events", "follow", "--account", acct, "--timeout", 0.5)
    assert quiet.exit_code == 0 and "listening for events" in quiet.output


def test_tables_show_cents_and_ticks_while_json_stays_exact(trading_env):
    sym, acct, url = trading_env
    with psycopg.connect(url) as conn:
        aid = conn.execute("SELECT id FROM trading.accounts WHERE name = %s", (acct,)).fetchone()[0]
        conn.execute(
            'SELECT trading.configure_account(%s, \'{"slippage_bps": 3.3, "commission_rate": 0.0003}\')', (aid,)
        )
        conn.execute("UPDATE market.instruments SET tick_size = 0.05 WHERE symbol = %s", (sym,))
        conn.commit()
    r = run("order", "buy", sym, 7, "--account", acct)  # at 100 x 1.00033 = 100.033; commission 0.21
    assert r.exit_code == 0 and r.output.rstrip().endswith("at 100.05"), r.output  # the nearest 0.05

    pos = json.loads(run("positions", "--account", acct, "--json").output)
    exact = [(p["avg_price"], p["last_price"], p["market_value"], p["unrealized_pnl"]) for p in pos]
    assert all(isinstance(v, str) for v in exact[0])  # strings: no float ever holds them
    assert [tuple(Decimal(v) for v in e) for e in exact] == [(D("100.033"), 100, 700, D("-0.231"))]
    assert "tick_size" not in pos[0]
    table = run("positions", "--account", acct).output
    row = next(ln for ln in table.splitlines() if sym in ln)
    assert row.split()[1:] == ["7", "100.05", "100.00", "700.00", "-0.23", "0.00", "0.21"] or [
        c.strip() for c in row.split("│") if c.strip()
    ][1:] == ["7", "100.05", "100.00", "700.00", "-0.23", "0.00", "0.21"], table

    pf = json.loads(run("portfolio", "--account", acct, "--json").output)
    # cash 10,000 - 700.231 - 0.21; net P&L from the database (trading.portfolio), not computed by the CLI
    assert tuple(Decimal(pf[k]) for k in ("cash", "total_value", "net_pnl", "unrealized_pnl")) == (
        D("9299.559"),
        D("9999.559"),
        D("-0.441"),
        D("-0.231"),
    )
    shown = {
        cells[0]: cells[1]
        for cells in (
            [c.strip() for c in ln.split("│") if c.strip()]
            for ln in run("portfolio", "--account", acct).output.splitlines()
        )
        if len(cells) == 2
    }
    assert (shown["cash"], shown["total_value"], shown["net_pnl"], shown["unrealized_pnl"]) == (
        "9299.56",
        "9999.56",
        "-0.44",
        "-0.23",
    )
    assert (shown["commissions"], shown["paused"]) == ("0.21", "False")

    orders = json.loads(run("orders", "--status", "all", "--account", acct, "--json").output)
    assert Decimal(orders[0]["avg_fill_price"]) == D("100.033") and "tick_size" not in orders[0]


def test_money_and_ticks_round_half_away_from_zero():
    from pgtrade.cli_trading import at_tick, money

    assert [money(Decimal(v)) for v in ("2.345", "-2.345", "2.344", "92547.99772", "0")] == [
        "2.35",
        "-2.35",
        "2.34",
        "92548.00",
        "0.00",
    ]
    assert at_tick(Decimal("451.095435"), Decimal("0.01")) == "451.10"
    assert at_tick(Decimal("1.125"), Decimal("0.25")) == "1.25"  # 4.5 ticks -> 5
    assert at_tick(Decimal("1.0845650"), Decimal("0.00001")) == "1.08457"
    assert at_tick(Decimal("1.0845649"), Decimal("0.00001")) == "1.08456"
    assert at_tick(Decimal("3401.5"), Decimal("1")) == "3402"
    assert at_tick(None, Decimal("0.01")) == "" and at_tick(Decimal("7.123"), None) == "7.123"
