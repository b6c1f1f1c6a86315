"""Golden figures: the full metrics table and the trade list of a fixed strategy on a fixed real series.

sma_crossover (fast 10, slow 20), 10,000 cash, 0.2 % commission per side, on the bundled GOOG daily bars
2004-2013 (backtesting.py's own example). tests/fixtures/backtest_golden_goog_sma.json pins every figure as the
text PostgreSQL prints: any change to the engine, the P&L rule, the trades or a metric formula shows here, and is
either a bug or a deliberate change that regenerates the file:

    PGTRADE_REGENERATE_GOLDEN=1 pytest tests/test_backtest_golden.py

The pinned figures were checked against backtesting.py once (test_golden_figures_are_plausible_against_backtesting_py
keeps checking them): the same 46 closed trades (+ 1 open at the end) with the same dates and prices, final equity
within a dollar (pgtrade rounds each commission to cents), the same maximum drawdown and its duration.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from backtest_support import backtesting_py_sma, ensure_sample, run

FIXTURE = Path(__file__).parent / "fixtures" / "backtest_golden_goog_sma.json"
RUN = {
    "strategy": "sma_crossover",
    "symbols": ["GOOG"],
    "interval": "1d",
    "start": "2004-01-01T00:00:00Z",
    "end": "2014-01-01T00:00:00Z",
    "params": {"fast": 10, "slow": 20, "cash": 10000, "commission": 0.002},
}
TRADE_COLUMNS = [
    "n", "symbol", "direction", "qty", "entry_ts", "entry_price", "exit_ts", "exit_price", "pnl", "commissions",
    "net_pnl", "return_pct", "bars_held", "fills", "mark_price", "unrealized_pnl",
]  # fmt: skip


def figures(db) -> dict:
    """The run's metrics and trades, every value as PostgreSQL's text (NULL as None)."""
    ensure_sample(db, "GOOG")
    r = run(db, RUN["strategy"], RUN["symbols"], RUN["interval"], RUN["start"], RUN["end"], RUN["params"])
    metrics = dict(
        db.execute(
            """SELECT e.key, e.value::text FROM backtest.runs r, jsonb_each(r.metrics) e
               WHERE r.id = %s AND e.key <> 'buy_and_hold' ORDER BY e.key""",
            (r["id"],),
        ).fetchall()
    )
    bh = dict(
        db.execute(
            """SELECT e.key, e.value::text FROM backtest.runs r, jsonb_each(r.metrics->'buy_and_hold') e
               WHERE r.id = %s ORDER BY e.key""",
            (r["id"],),
        ).fetchall()
    )
    cols = ", ".join(f"t.{c}::text" for c in TRADE_COLUMNS)
    with db.cursor() as cur:
        cur.execute("SET LOCAL TimeZone = 'UTC'")
        rows = cur.execute(
            f"SELECT {cols} FROM backtest.trades t WHERE t.run_id = %s ORDER BY t.n", (r["id"],)
        ).fetchall()
    return {
        "run": RUN,
        "metrics": metrics,
        "buy_and_hold": bh,
        "trades": [dict(zip(TRADE_COLUMNS, row, strict=True)) for row in rows],
    }


def test_metrics_and_trades_equal_the_golden_figures(db):
    got = figures(db)
    if os.environ.get("PGTRADE_REGENERATE_GOLDEN") == "1":
        FIXTURE.write_text(json.dumps(got, indent=1) + "\n")
    want = json.loads(FIXTURE.read_text())
    assert got["run"] == want["run"]
    assert got["metrics"] == want["metrics"]
    assert got["buy_and_hold"] == want["buy_and_hold"]
    assert len(got["trades"]) == len(want["trades"]) == 47
    for g, w in zip(got["trades"], want["trades"], strict=True):
        assert g == w, w["n"]


def test_golden_figures_are_plausible_against_backtesting_py():
    """The pinned figures against backtesting.py's run of the same strategy on the same data (GOOG.csv)."""
    from backtesting.test import GOOG

    stats = backtesting_py_sma(GOOG, 10, 20, cash=10000, commission=0.002)[0]
    want = json.loads(FIXTURE.read_text())
    m = {k: json.loads(v) for k, v in want["metrics"].items()}
    theirs = stats._trades
    closed = [t for t in want["trades"] if t["exit_ts"] is not None]
    assert (len(closed), m["trades"], m["open_trades"]) == (len(theirs), 46, 1)
    for t, (_, b) in zip(closed, theirs.iterrows(), strict=True):
        assert pd.Timestamp(t["entry_ts"]).tz_localize(None) == b.EntryTime
        assert pd.Timestamp(t["exit_ts"]).tz_localize(None) == b.ExitTime
        assert (float(t["entry_price"]), float(t["exit_price"]), int(t["qty"])) == (b.EntryPrice, b.ExitPrice, b.Size)
        assert abs(float(t["net_pnl"]) - b.PnL) < 0.02  # commission to the cent per fill, two fills
        assert int(t["bars_held"]) == b.ExitBar - b.EntryBar
    assert abs(m["final_equity"] - stats["Equity Final [$]"]) < 1
    assert m["max_drawdown"] == pytest.approx(stats["Max. Drawdown [%]"] / 100, abs=1e-6)
    assert pd.Timedelta(m["max_drawdown_duration"]) == stats["Max. Drawdown Duration"]
    assert m["win_rate"] == pytest.approx(stats["Win Rate [%]"] / 100, abs=1e-12)
    assert m["best_trade_pct"] == pytest.approx(stats["Best Trade [%]"] / 100, abs=1e-6)
    assert m["worst_trade_pct"] == pytest.approx(stats["Worst Trade [%]"] / 100, abs=1e-6)
    assert m["expectancy_pct"] == pytest.approx(stats["Expectancy [%]"] / 100, abs=1e-6)
    # backtesting.py's Calmar is its "Return (Ann.)" over the drawdown; its annual return compounds the mean daily
    # log return over 252 days, which is the CAGR over 252-day years that pgtrade reports
    assert m["cagr"] == pytest.approx(stats["Return (Ann.) [%]"] / 100, rel=1e-4)
    assert m["calmar"] == pytest.approx(stats["Calmar Ratio"], rel=1e-4)
