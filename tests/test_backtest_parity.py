"""The fast engine path writes exactly the rows the live procedures write (trading.place_order, trading.advance_clock).

The same strategy, data and parameters run once with mode exact (one trading.place_order per order, the clock moved
by trading.advance_clock) and once with mode fast (the rule functions in one loop, batched writes); every table of
the trading core then holds the same rows for the two runs' accounts, up to ids.
"""

from __future__ import annotations

import pytest
from backtest_support import account_rows, ensure_sample, run


@pytest.fixture
def goog(db):
    ensure_sample(db, "GOOG")
    return db


@pytest.mark.parametrize(
    "params",
    [
        {"cash": 10000, "commission": 0.002},  # backtesting.py's settings (test_backtest_reference.py)
        {"cash": 50000, "commission": 0.0005, "commission_min": 1, "slippage_bps": 7, "fast": 5, "slow": 30},
        {
            "cash": 25000,
            "commission": 0.001,
            "allow_short": True,
            "max_position_pct": 80,
            "sizing": "fraction",
            "fraction": 0.5,
        },
    ],
    ids=["reference", "slippage-and-minimum", "short-fraction"],
)
def test_fast_and_exact_paths_write_identical_rows(goog, params):
    args = ("sma_crossover", ["GOOG"], "1d", "2004-01-01", "2014-01-01", params)
    fast = run(goog, *args, mode="fast")
    exact = run(goog, *args, mode="exact")
    assert (fast["mode"], exact["mode"]) == ("fast", "exact")
    a, b = account_rows(goog, fast["account_id"]), account_rows(goog, exact["account_id"])
    assert len(a["fills"]) > 20
    for table in a:
        assert a[table] == b[table], table
    assert fast["metrics"] == exact["metrics"]
