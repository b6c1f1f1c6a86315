"""Orders: every risk rule allowed and denied, recorded rejections, idempotency, fill prices, resting orders on
gap bars, brackets (OCO), partial closes, volume cap, day-order expiry. Backtest accounts (manual clock)."""

from __future__ import annotations

from datetime import timedelta

import injection_canary
import psycopg
import pytest
from trading_support import (
    T0,
    D,
    account,
    advance,
    bars,
    check_invariants,
    fills,
    get_order,
    instrument,
    order,
    portfolio,
    position,
)

NOW = T0 + timedelta(minutes=5)  # after five 1-minute bars at 100


@pytest.fixture
def mkt(db):
    """Symbol AAA with five flat bars at 100 (T0..T0+4m) and an account whose clock is at T0+5m."""
    instrument(db, "TRDA")
    bars(db, "TRDA", [(100, 100, 100, 100)] * 5)

    def make(name="acct", **kw):
        a = account(db, name, **kw)
        advance(db, a, NOW)
        return a

    return make


def codes(o):
    return o["status"], o["reject_code"]


# --- risk rules: allowed and denied -------------------------------------------------------------------------


def test_cash_rule_includes_commission(db, mkt):
    a = mkt(cash="1001", commission_min="1")
    assert codes(order(db, a, "TRDA", "buy", 11)) == ("rejected", "TR001")
    assert codes(order(db, a, "TRDA", "buy", 10)) == ("filled", None)  # 1000 + 1 commission
    assert portfolio(db, a)["cash"] == 0


def test_cash_rule_includes_slippage_and_open_buy_orders(db, mkt):
    a = mkt(cash="1000", slippage_bps="10")
    assert codes(order(db, a, "TRDA", "buy", 10)) == ("rejected", "TR001")  # 10 x 100.1 > 1000
    assert codes(order(db, a, "TRDA", "buy", 5, "limit", limit_price=99)) == ("accepted", None)  # reserves 495
    assert codes(order(db, a, "TRDA", "buy", 5)) == ("filled", None)  # 500.5 <= 1000 - 495
    assert codes(order(db, a, "TRDA", "buy", 1)) == ("rejected", "TR001")  # 100.1 > 4.5 left


def test_cash_rule_counts_reserved_cash(db, mkt):
    a = mkt(cash="1000")
    assert codes(order(db, a, "TRDA", "buy", 6, "limit", limit_price=99)) == ("accepted", None)  # reserves 594
    assert codes(order(db, a, "TRDA", "buy", 5)) == ("rejected", "TR001")  # 500 > 406
    assert codes(order(db, a, "TRDA", "buy", 4)) == ("filled", None)  # 400 <= 406


def test_sell_needs_a_position_unless_shorting_is_allowed(db, mkt):
    a = mkt()
    assert codes(order(db, a, "TRDA", "sell", 1)) == ("rejected", "TR002")
    order(db, a, "TRDA", "buy", 5)
    assert codes(order(db, a, "TRDA", "sell", 6)) == ("rejected", "TR002")
    assert codes(order(db, a, "TRDA", "sell", 5)) == ("filled", None)
    b = mkt("shorty", allow_short=True)
    assert codes(order(db, b, "TRDA", "sell", 5)) == ("filled", None)
    assert position(db, b, "TRDA")["qty"] == -5


def test_open_sell_orders_count_against_the_position(db, mkt):
    a = mkt()
    order(db, a, "TRDA", "buy", 10)
    assert codes(order(db, a, "TRDA", "sell", 6, "limit", limit_price=120)) == ("accepted", None)
    assert codes(order(db, a, "TRDA", "sell", 5)) == ("rejected", "TR002")
    assert codes(order(db, a, "TRDA", "sell", 4)) == ("filled", None)


def test_position_limit_as_percent_of_portfolio(db, mkt):
    a = mkt(max_position_pct=10)
    assert codes(order(db, a, "TRDA", "buy", 101)) == ("rejected", "TR003")
    assert codes(order(db, a, "TRDA", "buy", 100)) == ("filled", None)  # 10,000 = 10% of 100,000
    assert codes(order(db, a, "TRDA", "buy", 1)) == ("rejected", "TR003")
    assert codes(order(db, a, "TRDA", "sell", 50)) == ("filled", None)  # reducing is always allowed


def test_gross_exposure_limit(db, mkt):
    instrument(db, "TRDB")
    bars(db, "TRDB", [(50, 50, 50, 50)] * 5)
    a = mkt(max_gross_leverage="0.5")
    assert codes(order(db, a, "TRDA", "buy", 300)) == ("filled", None)  # 30,000
    assert codes(order(db, a, "TRDB", "buy", 401)) == ("rejected", "TR004")  # 30,000 + 20,050 > 50,000
    assert codes(order(db, a, "TRDB", "buy", 400)) == ("filled", None)


def test_order_value_limit(db, mkt):
    a = mkt(max_order_value=5000)
    assert codes(order(db, a, "TRDA", "buy", 51)) == ("rejected", "TR005")
    assert codes(order(db, a, "TRDA", "buy", 50)) == ("filled", None)


def test_inactive_symbol_and_unknown_symbol(db, mkt):
    a = mkt()
    db.execute("UPDATE market.instruments SET active = false WHERE symbol = 'TRDA'")
    assert codes(order(db, a, "TRDA", "buy", 1)) == ("rejected", "TR006")
    db.execute("UPDATE market.instruments SET active = true WHERE symbol = 'TRDA'")
    assert codes(order(db, a, "TRDA", "buy", 1)) == ("filled", None)
    assert codes(order(db, a, "TRDNOPE", "buy", 1)) == ("rejected", "TR009")


def test_paused_account(db, mkt):
    a = mkt()
    db.execute("SELECT trading.set_paused(%s, true)", (a,))
    assert codes(order(db, a, "TRDA", "buy", 1)) == ("rejected", "TR007")
    db.execute("SELECT trading.set_paused(%s, false)", (a,))
    assert codes(order(db, a, "TRDA", "buy", 1)) == ("filled", None)


def test_market_orders_need_a_fresh_price(db, mkt):
    a = mkt(max_price_age="10 minutes")
    assert codes(order(db, a, "TRDA", "buy", 1)) == ("filled", None)  # price from T0+5m, clock T0+5m
    advance(db, a, NOW + timedelta(minutes=11))
    assert codes(order(db, a, "TRDA", "buy", 1)) == ("rejected", "TR008")
    assert codes(order(db, a, "TRDA", "buy", 1, "limit", limit_price=100)) == ("accepted", None)  # resting: no need
    instrument(db, "TRDNOBARS")
    assert codes(order(db, a, "TRDNOBARS", "buy", 1)) == ("rejected", "TR008")


def test_no_price_before_the_bar_has_closed(db):
    instrument(db, "TRDA")
    bars(db, "TRDA", [(100, 100, 100, 100), (200, 200, 200, 200)])
    a = account(db, "early", clock=T0 + timedelta(seconds=90))  # second bar not closed yet
    o = order(db, a, "TRDA", "buy", 1)
    assert o["status"] == "filled" and fills(db, o["id"])[0]["price"] == 100
    assert db.execute("SELECT * FROM market.price_at('TRDA', %s)", (T0 + timedelta(seconds=59),)).fetchone() == (
        None,
        None,
    )


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"side": "hold"}, "TR010"),
        ({"qty": 0}, "TR010"),
        ({"qty": -3}, "TR010"),
        ({"qty": "NaN"}, "TR010"),
        ({"qty": None}, "TR010"),
        ({"type": "iceberg"}, "TR010"),
        ({"type": "limit"}, "TR010"),  # no limit price
        ({"type": "stop", "stop_price": -1}, "TR010"),
        ({"tif": "forever"}, "TR010"),
        ({"source": "stop_loss"}, "TR010"),  # reserved for bracket children
        ({"stop_loss": 110, "take_profit": 120}, "TR010"),  # buy: stop-loss must be below the entry
        ({"qty": "1.5"}, "TR011"),
        ({"symbol": "'; DROP TABLE trading.orders; --"}, "TR009"),
        *[({"symbol": c}, "TR009") for c in injection_canary.CANARIES],
        *[({"client_order_id": c, "side": "sideways"}, "TR010") for c in injection_canary.CANARIES],
    ],
)
def test_malformed_orders_are_recorded_as_rejected(db, mkt, kwargs, code):
    a = mkt()
    args = {"symbol": "TRDA", "side": "buy", "qty": 1} | kwargs
    o = order(db, a, args.pop("symbol"), args.pop("side"), args.pop("qty"), **args)
    assert codes(o) == ("rejected", code)
    assert o["reject_reason"]
    hist = db.execute("SELECT status, reason FROM trading.order_history WHERE order_id = %s", (o["id"],)).fetchall()
    assert hist == [("rejected", o["reject_reason"])]
    ev = db.execute("SELECT kind, payload->>'code' FROM trading.events WHERE order_id = %s", (o["id"],)).fetchall()
    assert ev == [("order_rejected", code)]
    assert db.execute("SELECT count(*) FROM trading.fills WHERE account_id = %s", (a,)).fetchone()[0] == 0
    assert not injection_canary.fired(db), "an argument was executed as SQL"


def test_unknown_account_raises(db):
    with pytest.raises(psycopg.Error) as err:
        db.execute("SELECT trading.place_order(-1, 'TRDA', 'buy', 1)")
    assert err.value.sqlstate == "TR013"


# --- idempotency --------------------------------------------------------------------------------------------


def test_client_order_id_returns_the_same_order(db, mkt):
    a = mkt()
    first = order(db, a, "TRDA", "buy", 3, client_order_id="abc-1")
    again = order(db, a, "TRDA", "buy", 3, client_order_id="abc-1")
    assert again["id"] == first["id"] and again["status"] == "filled"
    assert position(db, a, "TRDA")["qty"] == 3
    with pytest.raises(psycopg.Error) as err:
        with db.transaction():
            order(db, a, "TRDA", "buy", 4, client_order_id="abc-1")
    assert err.value.sqlstate == "TR012" and "qty" in err.value.diag.message_detail
    assert db.execute("SELECT count(*) FROM trading.orders WHERE account_id = %s", (a,)).fetchone()[0] == 1
    # a rejected order keeps its id too
    r1 = order(db, a, "TRDA", "buy", 10**9, client_order_id="big")
    r2 = order(db, a, "TRDA", "buy", 10**9, client_order_id="big")
    assert r1["status"] == "rejected" and r2["id"] == r1["id"]
    # ids are per account
    b = mkt("other")
    assert order(db, b, "TRDA", "buy", 3, client_order_id="abc-1")["id"] != first["id"]


def test_cancel_rules(db, mkt):
    a = mkt()
    o = order(db, a, "TRDA", "buy", 1, "limit", limit_price=90)
    c = db.execute(
        "SELECT status, status_reason FROM trading.cancel_order(%s, 'changed my mind')", (o["id"],)
    ).fetchone()
    assert c == ("cancelled", "changed my mind")
    for oid, code in ((o["id"], "TR015"), (-5, "TR014")):
        with pytest.raises(psycopg.Error) as err:
            with db.transaction():
                db.execute("SELECT trading.cancel_order(%s)", (oid,))
        assert err.value.sqlstate == code
    assert [
        r[0] for r in db.execute("SELECT status FROM trading.order_history WHERE order_id = %s ORDER BY id", (o["id"],))
    ] == ["accepted", "cancelled"]


# --- fill prices -------------------------------------------------------------------------------------------


def test_market_fill_price_slippage_and_commission(db, mkt):
    a = mkt(slippage_bps=10, commission_rate="0.001", commission_min=2)
    b = order(db, a, "TRDA", "buy", 10)
    f = fills(db, b["id"])[0]
    assert (f["price"], f["ref_price"], f["commission"], f["slippage"]) == (D("100.1"), 100, 2, D("1.0"))
    s = order(db, a, "TRDA", "sell", 10)
    f = fills(db, s["id"])[0]
    assert (f["price"], f["commission"]) == (D("99.9"), 2)
    p = portfolio(db, a)
    assert p["realized_pnl"] == D("-2.0") and p["commissions"] == 4 and p["cash"] == D("99994.0")
    check_invariants(db, a)


def test_limit_orders_fill_at_limit_or_at_the_open_on_a_gap(db, mkt):
    a = mkt(allow_short=True)
    touch = order(db, a, "TRDA", "buy", 1, "limit", limit_price=99)
    gap = order(db, a, "TRDA", "buy", 1, "limit", limit_price="97.5")
    sell_gap = order(db, a, "TRDA", "sell", 1, "limit", limit_price=101)
    never = order(db, a, "TRDA", "buy", 1, "limit", limit_price=50)
    bars(db, "TRDA", [(99.5, 100, 98.5, 99), (96, 97, 95, 96), (103, 104, 102, 103)], start=NOW)
    advance(db, a, NOW + timedelta(minutes=3))
    assert fills(db, touch["id"])[0]["price"] == 99  # touched: at the limit
    assert fills(db, gap["id"])[0]["price"] == 96  # gapped down through 97.5: at the open
    assert fills(db, sell_gap["id"])[0]["price"] == 103  # gapped up through 101: at the open
    assert get_order(db, never["id"])["status"] == "accepted"
    check_invariants(db, a)


def test_stop_orders_trigger_at_the_stop_or_the_open_and_slip(db, mkt):
    a = mkt(slippage_bps=100)
    order(db, a, "TRDA", "buy", 10)  # at 101 with 1% slippage
    stop_sell = order(db, a, "TRDA", "sell", 4, "stop", stop_price=95)
    stop_buy = order(db, a, "TRDA", "buy", 1, "stop", stop_price=105)
    bars(db, "TRDA", [(101, 106, 100, 104), (90, 91, 88, 89)], start=NOW)
    advance(db, a, NOW + timedelta(minutes=2))
    assert fills(db, stop_buy["id"])[0]["price"] == D("106.05")  # 105 x 1.01
    f = fills(db, stop_sell["id"])[0]
    assert (f["ref_price"], f["price"]) == (90, D("89.1"))  # gap: open 90 x 0.99
    ev = db.execute(
        "SELECT count(*) FROM trading.events WHERE kind = 'stop_triggered' AND account_id = %s", (a,)
    ).fetchone()[0]
    assert ev == 2
    check_invariants(db, a)


def test_stop_limit_triggers_then_rests_as_limit(db, mkt):
    a = mkt()
    o = order(db, a, "TRDA", "buy", 1, "stop_limit", stop_price=105, limit_price=106)
    bars(db, "TRDA", [(107, 108, 107, 108), (107, 107, 105.5, 106)], start=NOW)
    advance(db, a, NOW + timedelta(minutes=1))
    got = get_order(db, o["id"])
    assert got["triggered"] and got["status"] == "accepted"  # gapped over the limit: not filled
    advance(db, a, NOW + timedelta(minutes=2))
    assert fills(db, o["id"])[0]["price"] == 106


def test_no_look_ahead_orders_fill_from_the_next_bar(db):
    instrument(db, "TRDA")
    bars(db, "TRDA", [(100, 100, 100, 100), (100, 100, 90, 95), (95, 96, 94, 95)])
    a = account(db, "nola", clock=T0 + timedelta(minutes=1))  # first bar closed; the 90 low is still to come
    o = order(db, a, "TRDA", "buy", 1, "limit", limit_price=91)
    advance(db, a, T0 + timedelta(minutes=3))
    assert fills(db, o["id"])[0]["bar_ts"] == T0 + timedelta(minutes=1)
    b = account(db, "late", clock=T0 + timedelta(minutes=2))  # placed after the dip: bar 2 cannot fill it
    o2 = order(db, b, "TRDA", "buy", 1, "limit", limit_price=91)
    advance(db, b, T0 + timedelta(minutes=3))
    assert get_order(db, o2["id"])["status"] == "accepted"


# --- brackets, partial closes, volume cap, expiry ----------------------------------------------------------


def test_bracket_children_and_oco(db, mkt):
    a = mkt()
    e = order(db, a, "TRDA", "buy", 10, stop_loss=95, take_profit=110)
    kids = db.execute(
        "SELECT source, type, side, qty, stop_price, limit_price, status FROM trading.orders "
        "WHERE parent_id = %s ORDER BY source",
        (e["id"],),
    ).fetchall()
    assert kids == [
        ("stop_loss", "stop", "sell", 10, 95, None, "accepted"),
        ("take_profit", "limit", "sell", 10, None, 110, "accepted"),
    ]
    bars(db, "TRDA", [(105, 111, 104, 110)], start=NOW)
    advance(db, a, NOW + timedelta(minutes=1))
    st = dict(db.execute("SELECT source, status FROM trading.orders WHERE parent_id = %s", (e["id"],)).fetchall())
    assert st == {"take_profit": "filled", "stop_loss": "cancelled"}
    assert position(db, a, "TRDA")["qty"] == 0 and position(db, a, "TRDA")["realized_pnl"] == 100
    check_invariants(db, a)
    # every event names its symbol, children's acceptance and the OCO cancel included
    kinds = db.execute(
        "SELECT kind, payload->>'symbol' FROM trading.events WHERE account_id = %s ORDER BY id", (a,)
    ).fetchall()
    assert {k for k, _ in kinds} >= {"order_accepted", "fill", "order_cancelled"}
    assert all(sym == "TRDA" for _, sym in kinds), kinds


def test_stop_loss_child_fills_on_a_gap_and_cancels_take_profit(db, mkt):
    a = mkt()
    e = order(db, a, "TRDA", "buy", 10, stop_loss=95, take_profit=110)
    bars(db, "TRDA", [(92, 93, 91, 92)], start=NOW)
    advance(db, a, NOW + timedelta(minutes=1))
    st = dict(db.execute("SELECT source, status FROM trading.orders WHERE parent_id = %s", (e["id"],)).fetchall())
    assert st == {"take_profit": "cancelled", "stop_loss": "filled"}
    assert position(db, a, "TRDA")["realized_pnl"] == -80


def test_selling_by_hand_cancels_the_bracket(db, mkt):
    a = mkt()
    e = order(db, a, "TRDA", "buy", 10, stop_loss=95, take_profit=110)
    order(db, a, "TRDA", "sell", 10)
    st = {r[0] for r in db.execute("SELECT status FROM trading.orders WHERE parent_id = %s", (e["id"],))}
    assert st == {"cancelled"}


def test_a_bracketed_order_that_flips_a_position_protects_only_the_new_position(db, mkt):
    a = mkt(allow_short=True)
    order(db, a, "TRDA", "sell", 10)  # short 10 @ 100
    e = order(db, a, "TRDA", "buy", 20, stop_loss=95, take_profit=110)  # covers 10, goes long 10
    assert position(db, a, "TRDA")["qty"] == 10
    kids = db.execute(
        "SELECT source, side, qty FROM trading.orders WHERE parent_id = %s ORDER BY source", (e["id"],)
    ).fetchall()
    assert kids == [("stop_loss", "sell", 10), ("take_profit", "sell", 10)]  # not 20: that would reopen the short
    bars(db, "TRDA", [(96, 96, 94, 95)], start=NOW)
    advance(db, a, NOW + timedelta(minutes=1))
    assert position(db, a, "TRDA")["qty"] == 0  # the stop closed the long, and only the long
    check_invariants(db, a)


def test_covering_a_short_by_hand_is_not_blocked_by_the_cash_its_own_stop_loss_reserves(db, mkt):
    a = mkt(allow_short=True, cash="1000")
    e = order(db, a, "TRDA", "sell", 10, stop_loss=110)  # short 10 @ 100: cash 2000; its buy-stop reserves 1100
    assert e["status"] == "filled"
    cover = order(db, a, "TRDA", "buy", 10)  # 1000 of 2000 (before: of 2000 - 1100 reserved = 900, so TR001)
    assert (cover["status"], cover["reject_code"]) == ("filled", None)
    kids = {r[0] for r in db.execute("SELECT status FROM trading.orders WHERE parent_id = %s", (e["id"],))}
    assert kids == {"cancelled"}  # the cover's fill cancels the stop whose cash it was allowed to use
    check_invariants(db, a)
    # a buy of another symbol still counts the stop's reservation: 2000 cash - 1100 reserved = 900 < 1000
    instrument(db, "TRDB")
    bars(db, "TRDB", [(100, 100, 100, 100)] * 5)
    b = mkt("other", allow_short=True, cash="1000")
    order(db, b, "TRDA", "sell", 10, stop_loss=110)
    other = order(db, b, "TRDB", "buy", 10, "limit", limit_price=100)
    assert (other["status"], other["reject_code"]) == ("rejected", "TR001")


def test_resting_entry_creates_children_only_after_it_fills(db, mkt):
    a = mkt()
    e = order(db, a, "TRDA", "buy", 5, "limit", limit_price=99, stop_loss=90, take_profit=120)
    assert db.execute("SELECT count(*) FROM trading.orders WHERE parent_id = %s", (e["id"],)).fetchone()[0] == 0
    bars(db, "TRDA", [(100, 100, 98, 99), (99, 99, 80, 85)], start=NOW)
    advance(db, a, NOW + timedelta(minutes=2))
    st = dict(db.execute("SELECT source, status FROM trading.orders WHERE parent_id = %s", (e["id"],)).fetchall())
    assert st == {
        "stop_loss": "filled",
        "take_profit": "cancelled",
    }  # the stop fires on the next bar, not the entry bar
    assert fills(db, e["id"])[0]["bar_ts"] == NOW


def test_partial_closes_and_flip_through_zero_average_cost(db, mkt):
    a = mkt(allow_short=True)
    order(db, a, "TRDA", "buy", 10)  # 10 @ 100
    bars(db, "TRDA", [(110, 110, 110, 110)], start=NOW)
    advance(db, a, NOW + timedelta(minutes=1))
    order(db, a, "TRDA", "buy", 10)  # 20 @ avg 105
    assert position(db, a, "TRDA")["avg_price"] == 105
    bars(db, "TRDA", [(120, 120, 120, 120)], start=NOW + timedelta(minutes=1))
    advance(db, a, NOW + timedelta(minutes=2))
    order(db, a, "TRDA", "sell", 5)  # realize 5 x 15
    p = position(db, a, "TRDA")
    assert (p["qty"], p["avg_price"], p["realized_pnl"]) == (15, 105, 75)
    bars(db, "TRDA", [(100, 100, 100, 100)], start=NOW + timedelta(minutes=2))
    advance(db, a, NOW + timedelta(minutes=3))
    order(db, a, "TRDA", "sell", 20)  # close 15 (-75), open short 5 @ 100
    p = position(db, a, "TRDA")
    assert (p["qty"], p["avg_price"], p["realized_pnl"], p["unrealized_pnl"]) == (-5, 100, 0, 0)
    check_invariants(db, a)


def test_volume_cap_gives_partial_fills_that_keep_resting(db, mkt):
    a = mkt(volume_cap_pct=10)
    o = order(db, a, "TRDA", "buy", 10, "limit", limit_price=100)
    bars(db, "TRDA", [(100, 100, 99, 100, 60), (100, 100, 99, 100, 30), (100, 100, 99, 100, 1000)], start=NOW)
    advance(db, a, NOW + timedelta(minutes=1))
    assert (get_order(db, o["id"])["status"], get_order(db, o["id"])["filled_qty"]) == ("partially_filled", 6)
    advance(db, a, NOW + timedelta(minutes=3))
    assert [f["qty"] for f in fills(db, o["id"])] == [6, 3, 1]
    assert get_order(db, o["id"])["status"] == "filled"
    check_invariants(db, a)


def test_fractional_quantity_steps(db):
    instrument(
        db,
        "BTC-USD",
        qty_step="0.0001",
        asset_class="crypto",
        session_tz="UTC",
        session_open=None,
        session_close=None,
        trades_weekends=True,
    )
    bars(db, "BTC-USD", [(50000, 50000, 50000, 50000)])
    a = account(db, "crypto", clock=T0 + timedelta(minutes=1))
    assert order(db, a, "BTC-USD", "buy", "0.0125")["status"] == "filled"
    assert codes(order(db, a, "BTC-USD", "buy", "0.00005")) == ("rejected", "TR011")


def test_day_orders_expire_at_session_end_gtc_stay(db, mkt):
    a = mkt()
    day = order(db, a, "TRDA", "buy", 1, "limit", limit_price=50, tif="day")
    gtc = order(db, a, "TRDA", "buy", 1, "limit", limit_price=50, tif="gtc")
    close = T0.replace(hour=21)  # 16:00 New York (EST) on 2024-03-04
    assert day["expires_at"] == close and gtc["expires_at"] is None
    advance(db, a, close - timedelta(seconds=1))
    assert get_order(db, day["id"])["status"] == "accepted"
    advance(db, a, close)
    assert get_order(db, day["id"])["status"] == "expired"
    assert get_order(db, gtc["id"])["status"] == "accepted"
    assert (
        db.execute(
            "SELECT count(*) FROM trading.events WHERE order_id = %s AND kind = 'order_expired'", (day["id"],)
        ).fetchone()[0]
        == 1
    )


def test_session_end_calendar(db):
    instrument(db, "TRDA")
    instrument(db, "EURUSD=X", asset_class="fx", session_tz="UTC", session_open=None, session_close=None)
    friday_evening = T0.replace(day=8, hour=23)
    assert db.execute("SELECT market.session_end('TRDA', %s)", (friday_evening,)).fetchone()[0] == T0.replace(
        day=11, hour=20
    )
    assert db.execute("SELECT market.session_end('EURUSD=X', %s)", (T0,)).fetchone()[0] == T0.replace(hour=22)


def test_snapshots_track_peak_and_drawdown(db, mkt):
    a = mkt()
    order(db, a, "TRDA", "buy", 100)
    s1 = db.execute("SELECT total_value, drawdown FROM trading.snapshot_portfolio(%s)", (a,)).fetchone()
    assert s1 == (100000, 0)
    bars(db, "TRDA", [(90, 90, 90, 90)], start=NOW)
    advance(db, a, NOW + timedelta(minutes=1))
    s2 = db.execute("SELECT total_value, peak_value, drawdown FROM trading.snapshot_portfolio(%s)", (a,)).fetchone()
    assert s2 == (99000, 100000, D("0.01"))


def test_default_live_account_exists(db):
    """Holds on any database, however much the default account has traded: created by migration 0005 as a live
    wall-clock account with 100,000 deposited, and its cash is exactly what its cash ledger adds up to."""
    row = db.execute(
        """SELECT a.kind, a.clock_mode, a.initial_cash, a.cash, l.total, l.last_balance, l.first
           FROM trading.accounts a,
           LATERAL (SELECT sum(c.amount) AS total,
                           (array_agg(c.balance ORDER BY c.id DESC))[1] AS last_balance,
                           (array_agg(ROW(c.cause, c.amount, c.note)::text ORDER BY c.id))[1] AS first
                    FROM trading.cash_ledger c WHERE c.account_id = a.id) l
           WHERE a.name = 'default'"""
    ).fetchone()
    assert row is not None, "no account named 'default'"
    kind, clock_mode, initial_cash, cash, total, last_balance, first = row
    assert (kind, clock_mode, initial_cash) == ("live", "wall", 100000)
    assert first == '(deposit,100000,"initial cash")'
    assert cash == total == last_balance
