"""Live accounts: bars ingested through the real ingest path fire resting orders, mark positions and leave
history alone; the events outbox and NOTIFY."""

from __future__ import annotations

import json
import time
from datetime import timedelta

from trading_support import account, bars, check_invariants, fills, get_order, instrument, order, position


def test_ingested_bars_fire_live_orders_and_mark_positions(db):
    now = db.execute("SELECT now()").fetchone()[0]  # fixed for the whole (rolled-back) transaction
    minute = now.replace(second=0, microsecond=0)
    instrument(db, "TRDLIVE", session_tz="UTC", session_open=None, session_close=None, trades_weekends=True)
    bars(db, "TRDLIVE", [(100, 100, 100, 100)] * 3, start=minute - timedelta(minutes=3))
    a = account(db, "live-test", kind="live", clock=None)
    assert db.execute("SELECT clock_mode FROM trading.accounts WHERE id = %s", (a,)).fetchone()[0] == "wall"
    buy = order(db, a, "TRDLIVE", "buy", 10, stop_loss=95, take_profit=120)
    assert buy["status"] == "filled" and fills(db, buy["id"])[0]["price"] == 100
    limit = order(db, a, "TRDLIVE", "buy", 5, "limit", limit_price=98)

    # a late bar from before the orders, crossing everything: history does not fire orders
    bars(db, "TRDLIVE", [(99, 130, 90, 100)], start=minute - timedelta(minutes=10))
    assert get_order(db, limit["id"])["status"] == "accepted"

    # the next bar opens after the orders were accepted and dips to 97: the limit fills at 98
    bars(db, "TRDLIVE", [(99, 101, 97, 99.5)], start=minute + timedelta(minutes=1))
    assert fills(db, limit["id"])[0]["price"] == 98
    p = position(db, a, "TRDLIVE")
    assert (p["qty"], p["last_price"]) == (15, 99.5)

    # a correction of that same latest bar (an UPDATE through the upsert) gaps down through the stop-loss
    bars(db, "TRDLIVE", [(93, 99, 92, 94)], start=minute + timedelta(minutes=1))
    kids = dict(db.execute("SELECT source, status FROM trading.orders WHERE parent_id = %s", (buy["id"],)).fetchall())
    assert kids == {"stop_loss": "filled", "take_profit": "cancelled"}
    sl = db.execute(
        "SELECT id FROM trading.orders WHERE parent_id = %s AND source = 'stop_loss'", (buy["id"],)
    ).fetchone()[0]
    assert fills(db, sl)[0]["price"] == 93  # the open of the gap bar (no slippage here)
    assert position(db, a, "TRDLIVE")["qty"] == 5
    kinds = [k for (k,) in db.execute("SELECT kind FROM trading.events WHERE account_id = %s ORDER BY id", (a,))]
    assert kinds.count("fill") == 3 and "stop_triggered" in kinds and "order_cancelled" in kinds
    check_invariants(db, a)


def test_backtest_accounts_ignore_live_bars(db):
    now = db.execute("SELECT now()").fetchone()[0]
    minute = now.replace(second=0, microsecond=0)
    instrument(db, "TRDBT", session_tz="UTC", session_open=None, session_close=None, trades_weekends=True)
    bars(db, "TRDBT", [(100, 100, 100, 100)], start=minute - timedelta(minutes=2))
    a = account(db, "bt", clock=minute - timedelta(minutes=1))
    o = order(db, a, "TRDBT", "buy", 1, "limit", limit_price=99)
    bars(db, "TRDBT", [(99, 99, 90, 95)], start=minute + timedelta(minutes=1))
    assert get_order(db, o["id"])["status"] == "accepted"  # only advance_clock moves a backtest account


def test_events_are_notified(db_url, unique_symbol):
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as listener, psycopg.connect(db_url) as conn:
        listener.execute("LISTEN pgtrade_events")
        instrument(conn, unique_symbol)
        a = account(conn, f"notify-{unique_symbol}")
        o = order(conn, a, unique_symbol, "buy", 1)  # rejected: no price yet (TR008)
        conn.commit()
        # parse the JSON payload (never match its spacing); skip other sessions' events on the channel
        got = None
        deadline = time.monotonic() + 10
        while got is None and time.monotonic() < deadline:
            for n in listener.notifies(timeout=max(0.01, deadline - time.monotonic()), stop_after=1):
                payload = json.loads(n.payload)
                if payload.get("order_id") == o["id"]:
                    got = payload
        assert got is not None, "no notification for the order within 10 s"
        assert (got["kind"], got["account_id"]) == ("order_rejected", a)
