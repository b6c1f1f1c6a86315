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
    ensure_sample(db, "GOOGL")
    ensure_sample(db, "SPX")
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
    check_parity(goog, ["GOOG"], params)


@pytest.mark.parametrize(
    "params",
    [
        {"cash": 30000, "commission": 0.001, "sizing": "fraction", "fraction": 0.3},
        {"cash": 30000, "commission": 0.0005, "slippage_bps": 3, "allow_short": True, "max_position_pct": 40,
         "max_gross_leverage": 1.5, "sizing": "fraction", "fraction": 0.3, "fast": 5, "slow": 30},
    ],
    ids=["fraction", "short-leverage"],
)  # fmt: skip
def test_several_symbols(goog, params):
    """Three symbols in one account: the marks of the other positions enter the sizing and every snapshot, and the
    bars do not line up (the GOOG series ends in March 2013, GOOGL starts in 2009, SPX has every day): a snapshot
    values a symbol with no bar at its time at the symbol's latest close."""
    check_parity(goog, ["GOOG", "GOOGL", "SPX"], params)


def check_parity(goog, symbols, params):
    args = ("sma_crossover", symbols, "1d", "2004-01-01", "2014-01-01", params)
    fast = run(goog, *args, mode="fast")
    exact = run(goog, *args, mode="exact")
    assert (fast["mode"], exact["mode"]) == ("fast", "exact")
    a, b = account_rows(goog, fast["account_id"]), account_rows(goog, exact["account_id"])
    assert len(a["fills"]) > 20
    for table in a:
        assert a[table] == b[table], table
    assert fast["metrics"] == exact["metrics"]
