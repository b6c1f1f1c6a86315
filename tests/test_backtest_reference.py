"""Agreement with the reference engine (issue 13 §4): backtesting.py 0.6 on the same data and settings.

The bundled GOOG daily series, long-only SMA(10, 20) crossover, 10,000 cash, 0.2 % commission per side, no slippage,
whole shares, market orders at the next bar's open. backtesting.py runs the strategy of its own documentation
(backtesting.lib.crossover, buy() with the default size, position.close() on the cross down) on the bars read back
from the database; pgtrade runs backtest.run('sma_crossover', ...). The conventions matched are listed in
docs/backtesting.md, "Agreement with backtesting.py".
"""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest
from backtest_support import backtesting_py_sma, ensure_sample, run

CASH = 10_000
COMMISSION = Decimal("0.002")
START, END = "2004-01-01", "2014-01-01"


def reference(df: pd.DataFrame, fast: int, slow: int):
    return backtesting_py_sma(df, fast, slow, cash=CASH, commission=float(COMMISSION))[0]


@pytest.fixture
def goog(db):
    ensure_sample(db, "GOOG")
    return db


def test_trades_and_final_equity_agree_with_backtesting_py(goog):
    rows = goog.execute(
        "SELECT ts, open, high, low, close, volume FROM market.bars"
        " WHERE symbol = 'GOOG' AND interval = '1d' AND ts >= %s AND ts < %s ORDER BY ts",
        (START, END),
    ).fetchall()
    df = pd.DataFrame(
        [(ts, float(o), float(h), float(lo), float(c), float(v)) for ts, o, h, lo, c, v in rows],
        columns=["ts", "Open", "High", "Low", "Close", "Volume"],
    ).set_index("ts")
    df.index = pd.DatetimeIndex(df.index).tz_convert("UTC")
    stats = reference(df, 10, 20)

    r = run(goog, "sma_crossover", ["GOOG"], "1d", START, END, {"cash": CASH, "commission": str(COMMISSION)})
    assert r["mode"] == "fast"
    fills = goog.execute(
        "SELECT side, qty, price, ts, commission FROM trading.fills WHERE account_id = %s ORDER BY id",
        (r["account_id"],),
    ).fetchall()

    # pgtrade's fills as backtesting.py's trades: a buy opens one, the next sell closes it; an open one at the end
    ours, open_trade = [], None
    for side, qty, price, ts, _ in fills:
        if side == "buy":
            assert open_trade is None
            open_trade = (pd.Timestamp(ts).tz_convert("UTC"), price, qty)
        else:
            assert open_trade is not None and qty == open_trade[2]
            ours.append((*open_trade, pd.Timestamp(ts).tz_convert("UTC"), price))
            open_trade = None
    theirs = [
        (t.EntryTime, Decimal(repr(t.EntryPrice)), Decimal(int(t.Size)), t.ExitTime, Decimal(repr(t.ExitPrice)))
        for t in stats["_trades"].itertuples()
    ]
    assert len(ours) == len(theirs) > 40
    for a, b in zip(ours, theirs, strict=True):
        # prices: the stored numeric against backtesting.py's float of it (read back from the same column)
        assert (a[0], a[2], a[3]) == (b[0], b[2], b[3]), (a, b)
        assert abs(a[1] - b[1]) < Decimal("1e-9") and abs(a[4] - b[4]) < Decimal("1e-9"), (a, b)
    # the trade left open at the end (finalize_trades=False): same entry, same size
    position = stats["_strategy"].position
    if open_trade is None:
        assert position.size == 0
    else:
        assert position.size == open_trade[2]
        assert stats["_strategy"].trades[0].entry_time == open_trade[0]

    # Final equity. With the same trades, the only difference is commission rounding: pgtrade charges each fill's
    # commission rounded to cents (|error| <= 0.005 per fill), backtesting.py the exact product in float (its float
    # error on 10^4..10^5 amounts is below 1e-6). So the gap is bounded by 0.005 x fills, and it is exactly the sum
    # of the roundings: ours - theirs = -(sum of rounded commissions - sum of exact commissions).
    final = goog.execute(
        "SELECT total_value FROM trading.portfolio_snapshots WHERE account_id = %s ORDER BY ts DESC LIMIT 1",
        (r["account_id"],),
    ).fetchone()[0]
    theirs_final = Decimal(repr(float(stats["Equity Final [$]"])))
    rounding = sum(c - q * p * COMMISSION for _, q, p, _, c in fills)
    tolerance = Decimal("0.005") * len(fills)
    assert abs(final - theirs_final) <= tolerance
    assert abs((final - theirs_final) + rounding) < Decimal("1e-6"), (final, theirs_final, rounding)
    assert theirs_final == Decimal(repr(float(stats["_equity_curve"]["Equity"].iloc[-1])))
