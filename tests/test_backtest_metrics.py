"""The metrics of a run (backtest.compute_metrics) and its round-trip trades (backtest.trades), held against
maintained libraries on real series.

Each run is a real backtest on the bundled daily data (GOOG; SPX long/short, which flips through zero; GOOG and SPX
together at half the equity each; GOOG scaling in and out of long and short positions). The return-series metrics
are compared with empyrical-reloaded's functions on the run's own equity curve (trading.portfolio_snapshots, one per
bar close) with the run's annualization, the drawdown duration with backtesting.py's
compute_drawdown_duration_peaks, and the trade statistics with a direct pandas computation over a trade list rebuilt
here from the fills alone (as backtesting.py lists trades).

Tolerance: 1e-9 relative. The database computes the return statistics in float8 (IEEE doubles, like numpy) and
rounds its output to 15 decimal places; the only differences are the order of floating-point summation (about
1e-13 relative on 5,000 returns).
"""

from __future__ import annotations

import json
from decimal import Decimal

import empyrical
import numpy as np
import pandas as pd
import pytest
from backtest_support import ensure_sample, run
from backtesting._stats import compute_drawdown_duration_peaks

REL = 1e-9

RUNS = {
    # backtesting.py's GOOG example: long only, all in
    "goog": (["GOOG"], "2004-01-01", "2014-01-01", {"cash": 10000, "commission": 0.002}),
    # long and short: every crossing flips the position through zero in one fill
    "spx-long-short": (
        ["SPX"],
        "1999-01-01",
        "2019-01-01",
        {"cash": 100000, "commission": 0.001, "allow_short": True, "fast": 20, "slow": 50},
    ),
    # two symbols, half the equity each: overlapping trades, equal-weight buy and hold of both
    "goog-spx": (
        ["GOOG", "SPX"],
        "2005-01-01",
        "2013-01-01",
        {"cash": 50000, "commission": 0.0005, "sizing": "fraction", "fraction": 0.5},
    ),
    # scaling in and out, short, and a flip from short to long: trades of several fills (SCALING below)
    "goog-scaling": (
        ["GOOG"],
        "2004-01-01",
        "2014-01-01",
        {"cash": 20000, "commission": 0.001, "sizing": "fraction", "allow_short": True, "max_position_pct": 100},
    ),
}

# A strategy for the scaling run, registered inside the test's transaction (rolled back): in every 60 bars, long
# 0.4 of equity, add to 0.9, reduce to 0.5, flat, short 0.5, flip to long 0.6, flat.
SCALING = """
CREATE FUNCTION public.scaling_test(run backtest.runs) RETURNS SETOF backtest.decision LANGUAGE sql STABLE AS $$
  SELECT b.symbol, b.ts,
         CASE b.n % 60 WHEN 10 THEN 0.4 WHEN 20 THEN 0.9 WHEN 30 THEN 0.5 WHEN 40 THEN 0 WHEN 45 THEN -0.5
                       WHEN 50 THEN 0.6 WHEN 55 THEN 0 END::numeric, NULL::numeric, NULL::numeric
  FROM (SELECT b.symbol, b.ts, row_number() OVER (PARTITION BY b.symbol ORDER BY b.ts) AS n
        FROM backtest.bars(run) b) b
  WHERE b.n % 60 IN (10, 20, 30, 40, 45, 50, 55)
$$;
SELECT backtest.register_strategy('scaling_test', 'public.scaling_test(backtest.runs)', 'test: scaling in and out');
"""


def close(actual, expected, rel: float = REL) -> bool:
    return actual == pytest.approx(expected, rel=rel, abs=1e-15)


@pytest.fixture(params=sorted(RUNS), ids=sorted(RUNS))
def done(request, db):
    """A finished run with everything the checks read: metrics (exact text), snapshots, trades, fills, bars."""
    symbols, start, end, params = RUNS[request.param]
    for s in symbols:
        ensure_sample(db, s)
    strategy = "sma_crossover"
    if request.param == "goog-scaling":
        db.execute(SCALING)
        strategy = "scaling_test"
    r = run(db, strategy, symbols, "1d", start, end, params)
    text = db.execute("SELECT metrics::text FROM backtest.runs WHERE id = %s", (r["id"],)).fetchone()[0]
    snaps = pd.DataFrame(
        db.execute(
            "SELECT ts, total_value FROM trading.portfolio_snapshots WHERE account_id = %s ORDER BY ts",
            (r["account_id"],),
        ).fetchall(),
        columns=["ts", "equity"],
    ).set_index("ts")
    cur = db.execute("SELECT * FROM backtest.trades WHERE run_id = %s ORDER BY n", (r["id"],))
    trades = pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])
    fills = db.execute(
        """SELECT f.symbol, f.side, f.qty, f.price, f.commission, f.realized_pnl, f.ts
           FROM trading.fills f WHERE f.account_id = %s ORDER BY f.ts, f.id""",
        (r["account_id"],),
    ).fetchall()
    bars = pd.DataFrame(
        db.execute(
            """SELECT symbol, ts, close FROM market.bars
               WHERE symbol = ANY (%s) AND interval = '1d' AND ts >= %s AND ts < %s ORDER BY ts""",
            (symbols, start, end),
        ).fetchall(),
        columns=["symbol", "ts", "close"],
    )
    return {
        "run": r,
        "m": json.loads(text),
        "exact": json.loads(text, parse_float=Decimal),
        "snaps": snaps,
        "trades": trades,
        "fills": fills,
        "bars": bars,
        "params": params,
    }


def returns_of(equity: pd.Series) -> pd.Series:
    return equity.astype(float).pct_change().iloc[1:]


def test_annualization_rule(db):
    """252 trading days (365 at weekends), times the bars of a session intraday (24 h without session hours)."""
    for s in ("GOOG", "SPX", "EURUSD"):
        ensure_sample(db, s)
    db.execute("SELECT market.upsert_instrument('BTCX', 'test coin', 'crypto', 'USD', NULL)")

    def ppy(symbols, interval):
        return db.execute(
            "SELECT backtest.periods_per_year(jsonb_populate_record(NULL::backtest.runs, %s::jsonb))",
            (json.dumps({"symbols": symbols, "interval": interval}),),
        ).fetchone()[0]

    assert ppy(["GOOG"], "1d") == 252
    assert ppy(["GOOG"], "1m") == 252 * 390  # 09:30-16:00 New York
    assert ppy(["SPX"], "1h") == 252 * 7  # 6.5 h: seven hourly bars touch the session
    assert ppy(["EURUSD"], "1h") == 252 * 24  # fx: around the clock on weekdays
    assert ppy(["BTCX"], "1d") == 365
    assert ppy(["BTCX"], "5m") == 365 * 288
    assert ppy(["GOOG", "BTCX"], "1d") == 365  # the snapshot grid of a mixed run is the union of both


def test_return_metrics_match_empyrical(done):
    m, x, eq = done["m"], done["exact"], done["snaps"]["equity"]
    assert m["periods_per_year"] == 252
    ann = 252
    r = returns_of(eq)
    assert m["bars"] == len(eq) and len(r) > 1000
    assert x["final_equity"] == eq.iloc[-1]
    assert x["total_return"] == eq.iloc[-1] / x["initial_cash"] - 1  # exact numeric
    assert close(m["total_return"], empyrical.cum_returns_final(r))
    assert close(m["cagr"], empyrical.cagr(r, annualization=ann))
    assert close(m["cagr"], empyrical.annual_return(r, annualization=ann))
    assert close(m["annual_volatility"], empyrical.annual_volatility(r, annualization=ann))
    assert close(m["sharpe"], empyrical.sharpe_ratio(r, annualization=ann))
    assert close(m["sortino"], empyrical.sortino_ratio(r, annualization=ann))
    assert close(m["max_drawdown"], empyrical.max_drawdown(r))
    assert close(m["calmar"], empyrical.calmar_ratio(r, annualization=ann))


def test_drawdown_duration_matches_backtesting_py(done):
    m, eq = done["m"], done["snaps"]["equity"].astype(float)
    dd = 1 - eq / eq.cummax()
    durations, _ = compute_drawdown_duration_peaks(dd)
    assert pd.Timedelta(m["max_drawdown_duration"]) == durations.max()
    # in bars: from the peak to the bar back at it (or the last bar)
    at_peak = np.flatnonzero((dd == 0).to_numpy())
    ends = np.unique(np.r_[at_peak, len(dd) - 1])
    bars = max((e - p for p, e in zip(ends[:-1], ends[1:], strict=True) if e > p + 1), default=0)
    assert m["max_drawdown_duration_bars"] == bars > 0


def test_buy_and_hold_matches_empyrical(done):
    """Equal weight from each symbol's first close in the run, each share valued at its symbol's latest close."""
    m, eq, bars, cash = done["m"]["buy_and_hold"], done["snaps"]["equity"], done["bars"], done["params"]["cash"]
    closes = bars.pivot(index="ts", columns="symbol", values="close").astype(float)
    closes.index = closes.index + pd.Timedelta(days=1)  # a daily bar closes one day after it opens
    rel = closes.ffill() / closes.bfill().iloc[0]
    bh = cash * rel.fillna(1.0).mean(axis=1).reindex(eq.index)
    assert not bh.isna().any()
    r = returns_of(bh)
    assert close(m["final_equity"], bh.iloc[-1])
    assert close(m["total_return"], bh.iloc[-1] / cash - 1)
    assert close(m["cagr"], empyrical.cagr(r, annualization=252))
    assert close(m["annual_volatility"], empyrical.annual_volatility(r, annualization=252))
    assert close(m["sharpe"], empyrical.sharpe_ratio(r, annualization=252))
    assert close(m["sortino"], empyrical.sortino_ratio(r, annualization=252))
    assert close(m["max_drawdown"], empyrical.max_drawdown(r))
    assert close(m["calmar"], empyrical.calmar_ratio(r, annualization=252))


def rebuild_trades(fills) -> list[dict]:
    """Round trips from the fills alone (a position from flat, or a flip through zero, back to flat)."""
    out, state = [], {}
    for sym, side, qty, price, comm, realized, ts in fills:
        q = qty if side == "buy" else -qty
        pos, t = state.get(sym, (Decimal(0), None))
        closing = min(abs(pos), qty) if pos and (pos > 0) != (q > 0) else Decimal(0)
        if closing:
            share = comm * closing / qty
            t["exit_qty"] += closing
            t["exit_value"] += closing * price
            t["pnl"] += realized
            t["commissions"] += share
            t["exit_ts"] = ts
            comm -= share
        opening = qty - closing
        if opening:
            if pos == 0 or closing:
                t = {"symbol": sym, "direction": "long" if q > 0 else "short", "qty": Decimal(0), "entry_ts": ts,
                     "entry_value": Decimal(0), "exit_qty": Decimal(0), "exit_value": Decimal(0), "exit_ts": None,
                     "pnl": Decimal(0), "commissions": Decimal(0)}  # fmt: skip
                out.append(t)
            t["qty"] += opening
            t["entry_value"] += opening * price
            t["commissions"] += comm
        state[sym] = (pos + q, t)
    for t in out:
        t["entry_price"] = t["entry_value"] / t["qty"]
        t["closed"] = t["exit_qty"] == t["qty"]
        t["exit_price"] = t["exit_value"] / t["exit_qty"] if t["closed"] else None
        t["net_pnl"] = t["pnl"] - t["commissions"]
    return sorted(out, key=lambda t: (t["entry_ts"], t["symbol"]))


def test_trades_are_the_round_trips_of_the_fills(done):
    db_trades, fills, bars = done["trades"], done["fills"], done["bars"]
    mine = rebuild_trades(fills)
    assert len(db_trades) == len(mine) > 10
    assert list(db_trades["n"]) == list(range(1, len(mine) + 1))
    for row, t in zip(db_trades.itertuples(), mine, strict=True):
        assert (row.symbol, row.direction, row.qty, row.entry_ts) == (
            t["symbol"],
            t["direction"],
            t["qty"],
            t["entry_ts"],
        )
        assert close(float(row.entry_price), float(t["entry_price"]))
        assert row.pnl == t["pnl"]  # the fills' realized P&L (trading.pnl_step), summed, exact
        assert abs(row.commissions - t["commissions"]) <= Decimal("1e-9")
        assert row.net_pnl == row.pnl - row.commissions
        if t["closed"]:
            assert row.exit_ts == t["exit_ts"]
            assert close(float(row.exit_price), float(t["exit_price"]))
            # the P&L rule agrees with the prices: (exit - entry) x qty, signed by direction
            sign = 1 if t["direction"] == "long" else -1
            assert close(float(row.pnl), sign * float(t["qty"]) * (float(t["exit_price"]) - float(t["entry_price"])))
            assert close(float(row.return_pct), float(row.net_pnl) / (float(row.qty) * float(row.entry_price)))
            assert pd.isna(row.mark_price) and pd.isna(row.unrealized_pnl)
        else:
            assert pd.isna(row.exit_ts) and pd.isna(row.exit_price) and pd.isna(row.return_pct)
            last = bars[bars.symbol == t["symbol"]].iloc[-1]
            assert row.mark_price == last.close
            assert row.unrealized_pnl == row.qty * last.close * (1 if t["direction"] == "long" else -1) - (
                row.qty * row.entry_price * (1 if t["direction"] == "long" else -1)
            )
        # bars held: the symbol's bars opening after the entry up to the exit bar (or the last bar)
        ts = bars[bars.symbol == t["symbol"]].ts
        end = t["exit_ts"] if t["closed"] else ts.iloc[-1]
        assert row.bars_held == int(((ts > t["entry_ts"]) & (ts <= end)).sum())
    if done["params"].get("allow_short"):
        assert set(db_trades.direction) == {"long", "short"}  # flips were split into two trades
    if done["run"]["strategy"] == "scaling_test":
        assert (db_trades.fills > 2).sum() > 10  # entries added to and exits in parts
        assert (db_trades.entry_ts.isin(db_trades.exit_ts)).sum() > 10  # a flip closes one trade and opens the next


def test_trade_statistics_match_pandas(done):
    m, x, trades, fills, eq = done["m"], done["exact"], done["trades"], done["fills"], done["snaps"]["equity"]
    closed = trades[trades.exit_ts.notna()]
    net = closed.net_pnl.astype(float)
    ret = closed.return_pct.astype(float)
    assert m["trades"] == len(closed) and m["open_trades"] == len(trades) - len(closed)
    assert close(m["win_rate"], (net > 0).mean())
    assert close(m["avg_win"], net[net > 0].mean())
    assert close(m["avg_loss"], net[net < 0].mean())
    assert close(m["profit_factor"], net[net > 0].sum() / -net[net < 0].sum())
    assert close(m["expectancy"], net.mean())
    assert close(m["expectancy_pct"], ret.mean())
    assert close(m["best_trade_pct"], trades.return_pct.astype(float).max())
    assert close(m["worst_trade_pct"], trades.return_pct.astype(float).min())
    assert close(m["avg_bars_held"], closed.bars_held.mean())
    comm = sum(f[4] for f in fills)
    traded = sum(f[2] * f[3] for f in fills)
    assert x["commissions"] == comm
    assert x["traded_value"] == traded
    assert close(m["turnover"], float(traded) / eq.astype(float).mean())
    assert m["fills"] == len(fills)
    # exposure: the share of bar closes at which some trade was open (entry < close <= exit; open ones to the end)
    held = [((trades.entry_ts < t) & (trades.exit_ts.isna() | (t <= trades.exit_ts))).any() for t in eq.index]
    assert close(m["exposure"], np.mean(held))
    assert 0 < m["exposure"] < 1
