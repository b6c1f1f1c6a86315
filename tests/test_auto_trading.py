"""Auto-trading: signals of newly closed bars become marketable limit orders of the live accounts that trade them,
filled by the next bar and never by the bar the decision saw, sized from the account's max position and the
signal's confidence, long-only unless shorting is allowed, with the signal's brackets; pausing, disabling, the model
list and the confidence threshold stop it; a risk rejection is recorded once and never retried.

The bars arrive as a simulated feed sends them: each ingest transaction sets the feed's clock (pgtrade.feed_now),
so a bar is closed when the clock passes its end, and wall-clock accounts take the feed's time as now."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import psycopg
import pytest
from ml_support import register_model, toy_model, walk
from psycopg.rows import dict_row
from trading_support import account, fills, instrument, order, position

from pgtrade.ingest import Bar, ingest_batch

T0 = datetime(2024, 3, 4, 0, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
ALWAYS = {"BUY": (0.0, 0.0), "SELL": (1.0, 1.0)}  # (buy, sell) thresholds that make every bar that signal


def _walk(sym: str, n: int) -> list[Bar]:
    # prices with four decimals: closes off the 0.01 tick grid, which limit prices must not be
    return walk(sym, n, T0, places=4)


def feed(db, bars: list[Bar], clock: datetime) -> None:
    ingest_batch(db, bars, source="test", feed_now=clock)


def setup(db, sym: str, signal: str = "BUY", *, settings: dict | None = None, **account_settings) -> tuple[int, int]:
    """A 24/7 instrument, an always-`signal` model on it, and a live account auto-trading it."""
    instrument(db, sym, asset_class="crypto", session_open=None, session_close=None, trades_weekends=True)
    buy, sell = ALWAYS[signal]
    mid = register_model(
        db,
        toy_model(),
        name=f"t_auto_{signal.lower()}",
        symbols=[sym],
        interval="1m",
        buy_threshold=buy,
        sell_threshold=sell,
    )
    aid = account(db, f"auto {sym}", kind="live", clock=None, max_position_pct=10, **account_settings)
    s = {
        "enabled": True,
        "models": [f"t_auto_{signal.lower()}"],
        "min_confidence": 0,
        "size_fraction": 1,
        "use_brackets": True,
    } | (settings or {})
    db.execute(
        "INSERT INTO trading.auto_trading (account_id, enabled, models, min_confidence, size_fraction, use_brackets)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (aid, s["enabled"], s["models"], s["min_confidence"], s["size_fraction"], s["use_brackets"]),
    )
    return mid, aid


def signal_at(db, mid: int, ts: datetime) -> dict:
    with db.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM ml.signals WHERE model_id = %s AND ts = %s", (mid, ts)).fetchone()


def orders(db, aid: int, source: str = "signal") -> list[dict]:
    with db.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM trading.orders WHERE account_id = %s AND source = %s ORDER BY id", (aid, source)
        ).fetchall()


def expected_limit(sig: dict, side: str, tick=Decimal("0.01")) -> Decimal:
    """close +/- max(0.25 x ATR at the tick, one tick), on the tick grid away from the close."""
    tol = max((Decimal("0.25") * sig["atr"] / tick).quantize(Decimal(1)) * tick, tick)
    if side == "buy":
        return ((sig["close"] + tol) / tick).to_integral_value(ROUND_CEILING) * tick
    return ((sig["close"] - tol) / tick).to_integral_value(ROUND_FLOOR) * tick


def expected_target(db, aid: int, sig: dict, limit: Decimal, size_fraction=Decimal(1)) -> Decimal:
    pv = db.execute("SELECT total_value FROM trading.portfolio(%s)", (aid,)).fetchone()[0]
    return (pv * Decimal("0.10") * size_fraction * sig["confidence"] / limit).to_integral_value(ROUND_FLOOR)


def test_a_buy_signal_becomes_a_limit_order_that_the_next_bar_fills(db, unique_symbol):
    mid, aid = setup(db, unique_symbol)
    bars = _walk(unique_symbol, 61)
    feed(db, bars[:60], T0 + 60 * MIN)  # 60 closed bars: the newest, bar 59, decides
    sig = signal_at(db, mid, bars[59].ts)
    assert sig["signal"] == "BUY"
    (o,) = orders(db, aid)
    limit = expected_limit(sig, "buy")
    assert (o["signal_id"], o["side"], o["type"], o["status"], o["tif"]) == (
        sig["id"],
        "buy",
        "limit",
        "accepted",
        "gtc",
    )
    assert o["limit_price"] == limit and o["qty"] == expected_target(db, aid, sig, limit) > 0
    assert (o["stop_loss"], o["take_profit"]) == (sig["stop_loss"], sig["take_profit"])
    # decided at bar 59's close, accepted at the feed's time (bar 60 opens); bar 59 reached the limit price but
    # acts on nothing: no fill from the bar the decision saw
    assert o["accepted_at"] == T0 + 60 * MIN and Decimal(bars[59].low) <= limit
    assert fills(db, o["id"]) == []
    # bar 60's first update (forming, opening below the limit) fills it
    feed(db, [bars[60]], T0 + 60 * MIN + timedelta(seconds=10))
    (f,) = fills(db, o["id"])
    assert f["bar_ts"] == bars[60].ts and f["price"] == min(Decimal(bars[60].open), limit) and f["qty"] == o["qty"]
    assert position(db, aid, unique_symbol)["qty"] == o["qty"]
    # the brackets rest as the signal set them
    kids = {k["source"]: k for k in orders(db, aid, "stop_loss") + orders(db, aid, "take_profit")}
    assert (
        kids["stop_loss"]["stop_price"] == sig["stop_loss"] and kids["take_profit"]["limit_price"] == sig["take_profit"]
    )
    # bar 60 is still forming: no signal for it yet, no new order
    assert signal_at(db, mid, bars[60].ts) is None and len(orders(db, aid)) == 1


def test_the_next_signal_tops_up_to_the_target_counting_what_is_held(db, unique_symbol):
    mid, aid = setup(db, unique_symbol, settings={"size_fraction": Decimal("0.5")})
    bars = _walk(unique_symbol, 62)
    feed(db, bars[:60], T0 + 60 * MIN)
    (first,) = orders(db, aid)
    sig59 = signal_at(db, mid, bars[59].ts)
    assert first["qty"] == expected_target(db, aid, sig59, first["limit_price"], Decimal("0.5"))
    feed(db, [bars[60]], T0 + 61 * MIN)  # bar 60 arrives closed: it fills the order, then its signal decides
    held = position(db, aid, unique_symbol)["qty"]
    assert held == first["qty"]
    sig60 = signal_at(db, mid, bars[60].ts)
    limit = expected_limit(sig60, "buy")
    want = expected_target(db, aid, sig60, limit, Decimal("0.5")) - held
    got = [o for o in orders(db, aid) if o["signal_id"] == sig60["id"]]
    if want > 0:
        assert [(o["qty"], o["limit_price"]) for o in got] == [(want, limit)]
    else:
        assert got == []  # already at (or above) the target
    assert len(orders(db, aid)) == 1 + (want > 0)


def test_an_entry_order_lives_one_bar(db, unique_symbol):
    mid, aid = setup(db, unique_symbol)
    bars = _walk(unique_symbol, 61)
    feed(db, bars[:60], T0 + 60 * MIN)
    (o,) = orders(db, aid)
    # bar 60 gaps far above the limit: nothing fills; once it has closed, the order is stale and cancelled
    gap = Decimal(bars[59].close) * Decimal("1.05")
    up = Bar(unique_symbol, "1m", bars[60].ts, str(gap), str(gap), str(gap), str(gap), "1000")
    feed(db, [up], T0 + 60 * MIN + timedelta(seconds=30))
    assert orders(db, aid)[0]["status"] == "accepted"
    feed(db, [replace(up, volume="2000")], T0 + 61 * MIN)  # its last update
    first, *rest = orders(db, aid)
    assert first["id"] == o["id"] and first["status"] == "cancelled" and "expired" in first["status_reason"]
    assert fills(db, o["id"]) == []
    # bar 60's own signal placed the next order
    assert [r["signal_id"] for r in rest] == [signal_at(db, mid, bars[60].ts)["id"]]


@pytest.mark.parametrize(
    "change, trades",
    [
        ("nothing", True),  # the control: the same set-up trades
        ("paused", False),
        ("disabled", False),
        ("other model", False),
        ("confidence", False),
        ("backtest", False),
    ],
)
def test_what_stops_auto_trading(db, unique_symbol, change, trades):
    mid, aid = setup(db, unique_symbol, settings={"enabled": False})
    bars = _walk(unique_symbol, 60)
    feed(db, bars[:59], T0 + 59 * MIN)  # history up to bar 58, not traded
    assert orders(db, aid) == []
    db.execute("UPDATE trading.auto_trading SET enabled = true WHERE account_id = %s", (aid,))
    conf = signal_at(db, mid, bars[58].ts)["confidence"]
    if change == "paused":
        db.execute("SELECT trading.set_paused(%s, true)", (aid,))
    elif change == "disabled":
        db.execute("UPDATE trading.auto_trading SET enabled = false WHERE account_id = %s", (aid,))
    elif change == "other model":
        db.execute("UPDATE trading.auto_trading SET models = '{someone_else}' WHERE account_id = %s", (aid,))
    elif change == "confidence":
        # above bar 59's confidence (known only after the fact: computed on a copy of the bars, then rolled back)
        with db.transaction() as tx:
            feed(db, [bars[59]], T0 + 60 * MIN)
            c59 = signal_at(db, mid, bars[59].ts)["confidence"]
            raise psycopg.Rollback(tx)
        assert c59 > 0 and c59 != conf and signal_at(db, mid, bars[59].ts) is None
        db.execute(
            "UPDATE trading.auto_trading SET min_confidence = %s WHERE account_id = %s", (c59 + Decimal("1e-6"), aid)
        )
    elif change == "backtest":
        db.execute(
            "UPDATE trading.auto_trading SET account_id = %s WHERE account_id = %s",
            (account(db, f"bt {unique_symbol}", clock=T0), aid),
        )
    feed(db, [bars[59]], T0 + 60 * MIN)
    sig = signal_at(db, mid, bars[59].ts)
    assert sig is not None
    placed = db.execute("SELECT count(*) FROM trading.orders WHERE signal_id = %s", (sig["id"],)).fetchone()[0]
    assert placed == (1 if trades else 0)


def test_sell_signals_close_longs_and_short_only_where_allowed(db, unique_symbol):
    mid, aid = setup(db, unique_symbol, "SELL")
    bars = _walk(unique_symbol, 61)
    feed(db, bars[:50], T0 + 50 * MIN)  # bar 49 says SELL; flat and no shorting: nothing
    assert orders(db, aid) == []
    buy = order(db, aid, unique_symbol, "buy", 20)  # a manual market buy at the feed's time
    assert buy["status"] == "filled"
    feed(db, bars[50:60], T0 + 60 * MIN)  # bar 59 says SELL: the long position is closed, without brackets
    (o,) = orders(db, aid)
    sig = signal_at(db, mid, bars[59].ts)
    assert (o["side"], o["qty"], o["limit_price"], o["stop_loss"], o["take_profit"]) == (
        "sell",
        20,
        expected_limit(sig, "sell"),
        None,
        None,
    )


def test_a_short_where_allowed_takes_the_signals_brackets(db, unique_symbol):
    mid, aid = setup(db, unique_symbol, "SELL", allow_short=True)
    bars = _walk(unique_symbol, 60)
    feed(db, bars, T0 + 60 * MIN)
    (o,) = orders(db, aid)
    sig = signal_at(db, mid, bars[59].ts)
    limit = expected_limit(sig, "sell")
    assert (o["side"], o["status"], o["limit_price"]) == ("sell", "accepted", limit)
    assert o["qty"] == expected_target(db, aid, sig, limit) > 0
    assert sig["stop_loss"] > sig["close"] > sig["take_profit"]
    assert (o["stop_loss"], o["take_profit"]) == (sig["stop_loss"], sig["take_profit"])


def test_a_risk_rejection_is_recorded_once_and_never_retried(db, unique_symbol):
    mid, aid = setup(db, unique_symbol, max_order_value=50)
    bars = _walk(unique_symbol, 60)
    feed(db, bars, T0 + 60 * MIN)
    (o,) = orders(db, aid)
    sig = signal_at(db, mid, bars[59].ts)
    assert (o["status"], o["reject_code"], o["signal_id"]) == ("rejected", "TR005", sig["id"])
    events = db.execute(
        "SELECT count(*) FROM trading.events WHERE account_id = %s AND kind = 'order_rejected'", (aid,)
    ).fetchone()[0]
    # the same closed bar handed on again: the signal has its order already
    again = db.execute(
        "SELECT internal.auto_trade(ARRAY[%s], ARRAY['1m'], ARRAY[%s::timestamptz], ARRAY[%s::timestamptz])",
        (unique_symbol, bars[58].ts, bars[59].ts),
    ).fetchone()[0]
    assert again == 0 and orders(db, aid) == [o]
    assert (
        db.execute(
            "SELECT count(*) FROM trading.events WHERE account_id = %s AND kind = 'order_rejected'", (aid,)
        ).fetchone()[0]
        == events
        == 1
    )
    # and place_order itself answers a second order for the signal with the first one
    with db.cursor(row_factory=dict_row) as cur:
        same = cur.execute(
            "SELECT * FROM trading.place_order(%s, %s, 'buy', 1, 'limit', 1, source => 'signal', signal_id => %s)",
            (aid, unique_symbol, sig["id"]),
        ).fetchone()
    assert same == o


def test_place_order_checks_the_signal_it_names(db, unique_symbol):
    mid, aid = setup(db, unique_symbol, settings={"enabled": False})
    feed(db, _walk(unique_symbol, 60), T0 + 60 * MIN)
    sid = db.execute("SELECT max(id) FROM ml.signals WHERE model_id = %s", (mid,)).fetchone()[0]
    instrument(db, unique_symbol + "X")
    for sym, source, code in [
        (unique_symbol + "X", "signal", "TR010"),
        (unique_symbol, "manual", "TR010"),
        (unique_symbol, "signal", None),
    ]:
        with db.cursor(row_factory=dict_row) as cur:
            o = cur.execute(
                "SELECT * FROM trading.place_order(%s, %s, 'buy', 1, 'limit', 90, source => %s, signal_id => %s)",
                (aid, sym, source, sid),
            ).fetchone()
        assert o["reject_code"] == code, o["reject_reason"]
        assert o["signal_id"] == (sid if code is None else None)  # a refused order takes no signal's place
