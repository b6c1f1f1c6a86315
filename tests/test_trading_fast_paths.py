"""The performance paths give the same answers as the general ones: the live bar trigger's one-pass pre-check (skip
internal.match_orders when no resting order is in reach, mark from the latest bar) against internal.mark_positions and
the candidate rule; the clock taken from the locked account row; the events NOTIFY sent with its row."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from decimal import Decimal

import psycopg
from trading_support import account, bars, check_invariants, fills, get_order, instrument, order, position


def _live_symbol(db, symbol: str):
    now = db.execute("SELECT now()").fetchone()[0]  # fixed for the whole (rolled-back) transaction
    minute = now.replace(second=0, microsecond=0)
    instrument(db, symbol, session_tz="UTC", session_open=None, session_close=None, trades_weekends=True)
    bars(db, symbol, [(100, 100, 100, 100)] * 3, start=minute - timedelta(minutes=10))
    return minute


def _one_statement(db, rows) -> None:
    """Stage rows (symbol, interval, ts, o, h, l, c) and ingest them as one INSERT (one trigger call)."""
    db.execute("SELECT market.ingest_begin()")
    with db.cursor().copy(
        "COPY pg_temp.bars_staging (symbol, interval, ts, open, high, low, close, volume) FROM STDIN"
    ) as cp:
        for r in rows:
            cp.write_row((*r, 1000))
    res = db.execute("SELECT sum(inserted), sum(rejected) FROM market.ingest_staged('test')").fetchone()
    assert res == (len(rows), 0)


def test_out_of_reach_symbol_is_marked_and_fills_nothing(db):
    minute = _live_symbol(db, "TRDFPA")
    _live_symbol(db, "TRDFPB")
    a = account(db, "fast-a", kind="live", clock=None)
    assert order(db, a, "TRDFPA", "buy", 10)["status"] == "filled"
    far = order(db, a, "TRDFPA", "buy", 1, "limit", limit_price=50)
    near = order(db, a, "TRDFPB", "buy", 1, "limit", limit_price=99)
    # one statement, two symbols: A's bar stays far above its limit, B's bar dips through its limit
    nxt = minute + timedelta(minutes=1)
    _one_statement(db, [("TRDFPA", "1m", nxt, 101, 102, 100, 101.5), ("TRDFPB", "1m", nxt, 100, 100, 98, 98.5)])
    assert get_order(db, far["id"])["status"] == "accepted"
    assert get_order(db, near["id"])["status"] == "filled" and fills(db, near["id"])[0]["price"] == 99
    p = position(db, a, "TRDFPA")
    assert (p["last_price"], p["last_price_at"]) == (Decimal("101.5"), nxt + timedelta(minutes=1))
    wm = dict(db.execute("SELECT symbol, ts FROM trading.live_watermarks WHERE symbol IN ('TRDFPA', 'TRDFPB')"))
    assert wm == {"TRDFPA": nxt, "TRDFPB": nxt}
    check_invariants(db, a)


def test_trigger_mark_equals_mark_positions_on_mixed_intervals(db):
    """Bars of two intervals closing at the same time: the shorter interval's close is the mark, in the live
    trigger as in internal.mark_positions (which advance_clock uses)."""
    minute = _live_symbol(db, "TRDFPC")
    hour = minute.replace(minute=0) - timedelta(hours=1)
    a = account(db, "fast-c", kind="live", clock=None)
    b = account(db, "fast-c-bt", clock=minute)
    assert order(db, a, "TRDFPC", "buy", 3)["status"] == "filled"
    assert order(db, b, "TRDFPC", "buy", 3)["status"] == "filled"
    db.execute("UPDATE trading.positions SET last_price_at = NULL WHERE account_id IN (%s, %s)", (a, b))
    rows = [
        ("TRDFPC", "1h", hour, 100, 101, 99, 100.25),
        ("TRDFPC", "1m", hour + timedelta(minutes=59), 100, 101, 99, 100.75),
    ]
    db.execute("DELETE FROM market.bars WHERE symbol = 'TRDFPC' AND ts = %s", (hour + timedelta(minutes=59),))
    _one_statement(db, rows)
    assert position(db, a, "TRDFPC")["last_price"] == Decimal("100.75")
    assert position(db, b, "TRDFPC")["last_price_at"] is None  # backtest accounts: not by live bars
    marked = db.execute(
        "SELECT internal.mark_positions(ARRAY[ROW(%s, %s, %s, %s, %s, %s, %s, 1000)::market.ohlcv,"
        " ROW(%s, %s, %s, %s, %s, %s, %s, 1000)::market.ohlcv], %s)",
        (*rows[0], *rows[1], b),
    ).fetchone()[0]
    assert marked == 1 and position(db, b, "TRDFPC")["last_price"] == Decimal("100.75")


def test_may_act_is_the_candidate_rule(db):
    """Limit 100, stop 90, bars spanning [101, 105] (entirely above the limit)."""
    cases = db.execute("""
        SELECT t, s, trg, internal.may_act(t, s, trg, 100, 90, 101, 105)
        FROM unnest(ARRAY['market', 'limit', 'stop', 'stop_limit']) t, unnest(ARRAY['buy', 'sell']) s,
             unnest(ARRAY[false, true]) trg""").fetchall()
    got = {(t, s, trg): r for t, s, trg, r in cases}
    assert got == {
        ("market", "buy", False): False,
        ("market", "buy", True): False,
        ("market", "sell", False): False,
        ("market", "sell", True): False,
        ("limit", "buy", False): False,
        ("limit", "buy", True): False,  # low 101 > 100
        ("limit", "sell", False): True,
        ("limit", "sell", True): True,  # high 105 >= 100
        ("stop", "buy", False): True,
        ("stop", "buy", True): True,  # high 105 >= 90; triggered: next bar
        ("stop", "sell", False): False,
        ("stop", "sell", True): True,  # low 101 > 90; triggered: next bar
        ("stop_limit", "buy", False): True,
        ("stop_limit", "buy", True): False,  # untriggered: the stop; then the limit
        ("stop_limit", "sell", False): False,
        ("stop_limit", "sell", True): True,
    }


def test_clock_from_the_row_equals_account_now(db):
    a = account(db, "fast-clock", kind="live", clock=None)
    b = account(db, "fast-clock-bt")
    rows = db.execute(
        "SELECT trading.account_now(a.id) = trading.account_clock(a.clock_mode, a.clock_ts), "
        "trading.account_now(a.id) FROM trading.accounts a WHERE a.id IN (%s, %s) ORDER BY a.id",
        (a, b),
    ).fetchall()
    assert [r[0] for r in rows] == [True, True]
    assert rows[0][1] == db.execute("SELECT now()").fetchone()[0]
    assert db.execute("SELECT trading.account_now(-1)").fetchone()[0] is None


def test_fill_events_are_notified_in_order(db_url, unique_symbol):
    with psycopg.connect(db_url, autocommit=True) as listener, psycopg.connect(db_url) as conn:
        now = conn.execute("SELECT now()").fetchone()[0]
        instrument(conn, unique_symbol, session_tz="UTC", session_open=None, session_close=None, trades_weekends=True)
        bars(
            conn,
            unique_symbol,
            [(100, 100, 100, 100)],
            start=now.replace(second=0, microsecond=0) - timedelta(minutes=2),
        )
        a = account(conn, f"fast-notify-{unique_symbol}", kind="live", clock=None)
        conn.commit()
        listener.execute("LISTEN pgtrade_events")
        o = order(conn, a, unique_symbol, "buy", 1)
        conn.commit()
        assert o["status"] == "filled"
        # the payload is JSON: compare values, not its spacing; other sessions' events (e.g. pg_cron expiring
        # some live account's day order) may arrive on the same channel, so keep this order's only
        got: list[dict] = []
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            for note in listener.notifies(timeout=max(0.01, deadline - time.monotonic()), stop_after=1):
                payload = json.loads(note.payload)
                if payload.get("order_id") == o["id"]:
                    got.append(payload)
        ids = [r[0] for r in conn.execute("SELECT id FROM trading.events WHERE order_id = %s ORDER BY id", (o["id"],))]
        assert got == [
            {"id": ids[0], "account_id": a, "kind": "order_accepted", "order_id": o["id"]},
            {"id": ids[1], "account_id": a, "kind": "fill", "order_id": o["id"]},
        ]
