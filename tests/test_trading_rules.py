"""The shared rules hold on both paths: the slippage rule (trading.slipped_price) prices a stop order when it is
placed and when it fills, the affordability rule (trading.affordability) rejects an order when it is placed and
cancels a resting one when it fills, and the valuation rule (the view trading.position_values) gives place_order's
risk checks (TR003, TR004), trading.portfolio and api.portfolio the same portfolio value."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import ROUND_FLOOR

import psycopg
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

NOW = T0 + timedelta(minutes=5)


def _market(db, *symbols_prices):
    for sym, price in symbols_prices:
        instrument(db, sym)
        bars(db, sym, [(price, price, price, price)] * 5)


def _configure(db, a: int, **settings) -> None:
    db.execute("SELECT trading.configure_account(%s, %s::jsonb)", (a, json.dumps(settings, default=str)))


def test_stop_orders_are_estimated_and_filled_with_the_same_slippage_rule(db):
    _market(db, ("TRDRS", 100))
    a = account(db, "slip", slippage_bps="7.5", allow_short=True)
    advance(db, a, NOW)
    buy = order(db, a, "TRDRS", "buy", 3, "stop", stop_price="104.37")
    sell = order(db, a, "TRDRS", "sell", 2, "stop", stop_price="96.11")
    rule = db.execute(
        "SELECT trading.slipped_price(104.37, 'buy', 7.5), trading.slipped_price(96.11, 'sell', 7.5)"
    ).fetchone()
    assert (buy["est_price"], sell["est_price"]) == rule
    assert rule[0] > D("104.37") > rule[1] > 0 and rule[1] < D("96.11")
    # bars touch each stop without gapping: each fills at its stop plus the same slippage it was estimated with
    bars(db, "TRDRS", [(101, 105, 100, 104), (99, 100, 96, 97)], start=NOW)
    advance(db, a, NOW + timedelta(minutes=2))
    assert [f["price"] for f in fills(db, buy["id"])] == [buy["est_price"]]
    assert [f["price"] for f in fills(db, sell["id"])] == [sell["est_price"]]
    check_invariants(db, a)


def test_the_cash_rule_rejects_when_placed_and_cancels_when_filling(db):
    _market(db, ("TRDRC", 100))
    a = account(db, "cash-rule", cash="1000")
    advance(db, a, NOW)
    resting = order(db, a, "TRDRC", "buy", 10, "limit", limit_price=100)  # 1,000: exactly the cash
    assert resting["status"] == "accepted"
    _configure(db, a, commission_min=5)  # now the same order costs 1,005
    assert db.execute("SELECT trading.affordability('buy', 10, 100, true, 1000, NULL, 0, 5, 1, false)").fetchone() == (
        "TR001",
    )
    bars(db, "TRDRC", [(100, 100, 99, 99.5)], start=NOW)  # fills at the limit, 100
    advance(db, a, NOW + timedelta(minutes=1))
    got = get_order(db, resting["id"])
    assert (got["status"], got["status_reason"]) == ("cancelled", "insufficient cash at fill time (TR001)")
    assert fills(db, resting["id"]) == []
    again = order(db, a, "TRDRC", "buy", 10, "limit", limit_price=100)
    assert (again["status"], again["reject_code"]) == ("rejected", "TR001")
    assert (order(db, a, "TRDRC", "buy", 9, "limit", limit_price=100)["status"]) == "accepted"  # 905 <= 1,000


def test_the_position_rule_rejects_when_placed_and_fills_only_what_is_held(db):
    _market(db, ("TRDRP", 100))
    a = account(db, "pos-rule", allow_short=True)
    advance(db, a, NOW)
    assert order(db, a, "TRDRP", "buy", 10)["status"] == "filled"
    resting = order(db, a, "TRDRP", "sell", 15, "limit", limit_price=105)  # shorting allowed: accepted
    assert resting["status"] == "accepted"
    _configure(db, a, allow_short=False)
    again = order(db, a, "TRDRP", "sell", 1, "limit", limit_price=105)  # 10 held, 15 already in open sells
    assert (again["status"], again["reject_code"]) == ("rejected", "TR002")
    bars(db, "TRDRP", [(104, 106, 104, 105)], start=NOW)
    advance(db, a, NOW + timedelta(minutes=1))
    got = get_order(db, resting["id"])
    assert [f["qty"] for f in fills(db, resting["id"])] == [10]
    assert (got["status"], got["status_reason"]) == (
        "cancelled",
        "position exhausted: filled only what was held (TR002)",
    )
    assert position(db, a, "TRDRP")["qty"] == 0
    check_invariants(db, a)


def _api_portfolio(db, name: str) -> dict:
    """api.portfolio as a trader of the account sees it (PostgREST's role and claims)."""
    with db.transaction(), db.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute("SET LOCAL ROLE trader")
        cur.execute(
            "SELECT set_config('request.jwt.claims', %s, true)", (json.dumps({"role": "trader", "account": name}),)
        )
        row = cur.execute("SELECT * FROM api.portfolio").fetchone()
        cur.execute("RESET ROLE")
    return row


def test_risk_checks_and_both_portfolios_value_the_account_alike(db):
    """Two positions: TRDRA marked at a new price, TRDRB without a mark (valued at cost by the rule). The portfolio
    value and gross exposure that TR003 and TR004 use are those trading.portfolio and api.portfolio report: the
    largest order each rule allows is accepted and one more share is rejected, naming that value."""
    _market(db, ("TRDRA", 100), ("TRDRB", 50))
    a = account(db, "valuation", cash="100000", max_position_pct=100, max_gross_leverage=1)
    advance(db, a, NOW)
    assert order(db, a, "TRDRA", "buy", 100)["status"] == "filled"
    assert order(db, a, "TRDRB", "buy", 100)["status"] == "filled"
    bars(db, "TRDRA", [(110, 110, 110, 110)], start=NOW)
    advance(db, a, NOW + timedelta(minutes=1))
    db.execute("UPDATE trading.positions SET last_price = NULL WHERE account_id = %s AND symbol = 'TRDRB'", (a,))

    p = portfolio(db, a)
    # cash 85,000; TRDRA 100 x 110 = 11,000; TRDRB at its cost 5,000
    assert (p["cash"], p["positions_value"], p["total_value"]) == (85000, 11000 + 5000, 101000)
    assert (p["unrealized_pnl"], p["net_pnl"], p["gross_exposure"]) == (1000, 1000, 16000)
    assert p["cash"] + p["positions_value"] == (
        p["initial_cash"] + p["realized_pnl"] + p["unrealized_pnl"] - p["commissions"]
    )
    name = db.execute("SELECT name FROM trading.accounts WHERE id = %s", (a,)).fetchone()[0]
    api = _api_portfolio(db, name)
    for k in ("cash", "positions_value", "total_value", "unrealized_pnl", "net_pnl"):
        assert api[k] == p[k], k

    pv, held, est = p["total_value"], 100, D("90")  # limit buys at 90 rest (the market is at 110)

    # TR003: |resulting position| x estimate <= 10% of the portfolio value
    _configure(db, a, max_position_pct=10)
    most = int((pv * D("0.10") / est).to_integral_value(ROUND_FLOOR)) - held
    assert order(db, a, "TRDRA", "buy", most, "limit", limit_price=est)["status"] == "accepted"
    over = order(db, a, "TRDRA", "buy", most + 1, "limit", limit_price=est)
    assert over["reject_code"] == "TR003" and over["reject_reason"].endswith(f"portfolio value {pv:.2f}")

    # TR004: other positions' gross exposure + |resulting position| x estimate <= 0.2 x portfolio value
    _configure(db, a, max_position_pct=1000, max_gross_leverage="0.2")
    other = p["gross_exposure"] - abs(
        db.execute(
            "SELECT value FROM trading.position_values WHERE account_id = %s AND symbol = 'TRDRA'",
            (a,),
        ).fetchone()[0]
    )
    assert other == 5000  # TRDRB at cost
    most = int(((pv * D("0.2") - other) / est).to_integral_value(ROUND_FLOOR)) - held
    assert order(db, a, "TRDRA", "buy", most, "limit", limit_price=est)["status"] == "accepted"
    over = order(db, a, "TRDRA", "buy", most + 1, "limit", limit_price=est)
    assert over["reject_code"] == "TR004"
    assert over["reject_reason"] == (
        f"gross exposure {other + (held + most + 1) * est:.2f} would exceed 0.2 x portfolio value {pv:.2f}"
    )
