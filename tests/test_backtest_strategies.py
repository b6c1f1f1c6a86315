"""The strategies mean_reversion and ml_signal (db/procedures/backtest_strategy_*.sql; docs/backtesting.md).

- The indicators (Wilder RSI and ATR, Bollinger bands) equal a direct numpy / pandas computation over the same bars.
- mean_reversion decides at the bars its rule names, on a constructed series (bars written out) and against the rule
  computed in numpy on a random one; its runs complete in fast, exact and auto mode as documented, fast and exact
  write identical rows, and its brackets rest and fill through the trading core's matching code.
- ml_signal trades a registered model's signals: the stored ones (ml.signals, written by the live scoring code) or
  scored for the range, with the same decisions either way; thresholds default to the model's; it refuses a run that
  starts before the model's training data ends (BT031) unless allow_in_sample; a model trained by ml.train is used
  by id (the walk-forward contract).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import numpy as np
import pandas as pd
import psycopg
import pytest
from backtest_support import account_rows, ensure_sample, run
from ml_support import feature_rows, register_model, toy_model
from psycopg.rows import dict_row
from trading_support import bars, instrument

DAY0 = datetime(2023, 1, 2, tzinfo=UTC)


def day(i: int) -> datetime:
    return DAY0 + timedelta(days=i)


def wave(n: int, seed: int, period: int = 37) -> list[tuple]:
    """n daily bars oscillating around 100 with a seeded random walk on top."""
    rng = np.random.default_rng(seed)
    c = 100 + 8 * np.sin(np.arange(n) * 2 * np.pi / period) + np.cumsum(rng.normal(0, 1.2, n))
    out = []
    for i in range(n):
        o = c[i - 1] if i else c[0]
        hi, lo = max(o, c[i]) + abs(rng.normal(0, 0.6)), min(o, c[i]) - abs(rng.normal(0, 0.6))
        out.append((round(o, 2), round(hi, 2), round(lo, 2), round(c[i], 2), int(rng.integers(1000, 9000))))
    return out


def series(conn, symbol: str, rows) -> None:
    instrument(conn, symbol)
    bars(conn, symbol, rows, interval="1d", start=DAY0)


def run_row(conn, run_id: int) -> str:
    """SQL for the run's row, to pass to a strategy or indicator function."""
    return f"(SELECT r FROM backtest.runs r WHERE r.id = {int(run_id)})"


def decisions(conn, fn: str, run_id: int) -> list[tuple]:
    return conn.execute(
        f"SELECT d.symbol, d.ts, d.target, d.stop_loss, d.take_profit FROM {fn}({run_row(conn, run_id)}) d"
        " ORDER BY d.symbol, d.ts"
    ).fetchall()


def run_failed(conn, *args) -> str:
    """backtest.run that is expected to fail: its error."""
    strategy, symbols, interval, start, end, params, mode = args
    row = conn.execute(
        "SELECT status, error FROM backtest.run(%s, %s, %s, %s, %s, %s::jsonb, %s)",
        (strategy, symbols, interval, start, end, json.dumps(params), mode),
    ).fetchone()
    assert row[0] == "failed", row
    return row[1]


# --- the indicators against numpy ------------------------------------------------------------------------------


def wilder(x: np.ndarray, n: int) -> np.ndarray:
    """Wilder's average of the non-NaN values of x (they are a suffix): their mean at the n-th, then the recursion."""
    out = np.full(len(x), np.nan)
    idx = np.flatnonzero(~np.isnan(x))
    if len(idx) < n:
        return out
    avg = x[idx[:n]].sum() / n
    out[idx[n - 1]] = avg
    for i in idx[n:]:
        avg = (avg * (n - 1) + x[i]) / n
        out[i] = avg
    return out


def reference_indicators(h, low, c, rsi_n=14, bb_n=20, bb_k=2.0, atr_n=14) -> dict[str, np.ndarray]:
    pc = np.concatenate([[np.nan], c[:-1]])
    d = c - pc
    g, lo = (
        wilder(np.where(np.isnan(d), np.nan, np.maximum(d, 0)), rsi_n),
        wilder(np.where(np.isnan(d), np.nan, np.maximum(-d, 0)), rsi_n),
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        rsi = np.where(g + lo > 0, 100 * g / (g + lo), np.where(g + lo == 0, 50.0, np.nan))
    tr = np.where(np.isnan(pc), np.nan, np.maximum.reduce([h - low, np.abs(h - pc), np.abs(low - pc)]))
    s = pd.Series(c)
    mid = s.rolling(bb_n).mean().to_numpy()
    sd = s.rolling(bb_n).std(ddof=0).to_numpy()
    return {
        "rsi": rsi,
        "bb_mid": mid,
        "bb_lower": mid - bb_k * sd,
        "bb_upper": mid + bb_k * sd,
        "atr": wilder(tr, atr_n),
    }


def assert_close(name, got, want, rel=1e-9):
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        if b is None or (isinstance(b, float) and math.isnan(b)):
            assert a is None, (name, i, a)
        else:
            assert a is not None and abs(float(a) - b) <= rel * max(1.0, abs(b)), (name, i, a, b)


def test_the_indicators_equal_a_direct_numpy_computation_on_a_real_series(db):
    ensure_sample(db, "GOOG")
    r = run(db, "mean_reversion", ["GOOG"], "1d", "2006-01-01", "2010-01-01", {"stop_loss_atr": 2})
    for rsi_n, bb_n, bb_k, atr_n in ((14, 20, 2, 14), (5, 10, 1.5, 7)):
        warmup = db.execute("SELECT backtest.indicator_warmup(%s, %s, %s)", (rsi_n, bb_n, atr_n)).fetchone()[0]
        assert warmup == max(bb_n + 1, 20 * rsi_n, 20 * atr_n)
        raw = db.execute(
            f"SELECT ts, high, low, close FROM backtest.bars({run_row(db, r['id'])}, %s) ORDER BY ts", (warmup,)
        ).fetchall()
        assert raw[0][0] < datetime(2006, 1, 1, tzinfo=UTC) and len([x for x in raw if x[0].year < 2006]) == warmup
        with db.cursor(row_factory=dict_row) as cur:
            got = cur.execute(
                f"SELECT * FROM backtest.indicators({run_row(db, r['id'])}, %s::int, %s::int, %s::numeric, %s::int)"
                " ORDER BY ts",
                (rsi_n, bb_n, bb_k, atr_n),
            ).fetchall()
        assert [g["ts"] for g in got] == [x[0] for x in raw]
        h, low, c = (np.array([float(x[k]) for x in raw]) for k in (1, 2, 3))
        want = reference_indicators(h, low, c, rsi_n, bb_n, float(bb_k), atr_n)
        for name, values in want.items():
            assert_close(name, [g[name] for g in got], list(values))
        # where each starts: RSI at the (n+1)-th bar, the bands at the n-th, ATR at the (n+1)-th
        assert [g["rsi"] is None for g in got].index(False) == rsi_n
        assert [g["bb_mid"] is None for g in got].index(False) == bb_n - 1
        assert [g["atr"] is None for g in got].index(False) == atr_n


# --- mean_reversion: decisions ---------------------------------------------------------------------------------


def reference_mean_reversion(rows, start_index, p) -> list[tuple[int, int]]:
    """(bar index, target) of the rule of docs/backtesting.md computed in numpy, for bars from start_index."""
    h, low, c = (np.array([float(r[k]) for r in rows]) for k in (1, 2, 3))
    ind = reference_indicators(h, low, c, p["rsi_period"], p["bb_period"], p["bb_k"], 14)
    rsi, mid, lower, upper = ind["rsi"], ind["bb_mid"], ind["bb_lower"], ind["bb_upper"]
    out = []
    for t in range(start_index, len(rows)):
        rl, rs = rsi[t] < p["oversold"], rsi[t] > p["overbought"]
        bl, bs = c[t] < lower[t], c[t] > upper[t]
        long_, short_ = {"rsi": (rl, rs), "bollinger": (bl, bs), "both": (rl and bl, rs and bs)}[p["indicator"]]
        crosses = p["indicator"] != "rsi" and (
            (c[t - 1] < mid[t - 1] and c[t] >= mid[t]) or (c[t - 1] > mid[t - 1] and c[t] <= mid[t])
        )
        if long_:
            out.append((t, 1))
        elif short_:
            out.append((t, -1 if p.get("allow_short") else 0))
        elif crosses:
            out.append((t, 0))
    return out


MR = {"rsi_period": 14, "oversold": 30, "overbought": 70, "bb_period": 20, "bb_k": 2.0}


@pytest.mark.parametrize(
    "params",
    [
        {"indicator": "bollinger"},
        {"indicator": "bollinger", "bb_period": 10, "bb_k": 1.5, "allow_short": True},
        {"indicator": "rsi", "rsi_period": 7, "oversold": 35, "overbought": 65},
        {"indicator": "rsi", "allow_short": True, "oversold": 40, "overbought": 60},
        {"indicator": "both", "bb_k": 1.0, "oversold": 45, "overbought": 55, "allow_short": True},
    ],
    ids=["bollinger", "bollinger-short", "rsi", "rsi-short", "both"],
)
def test_mean_reversion_decides_as_its_rule_computed_in_numpy(db, params):
    rows = wave(400, seed=7)
    series(db, "MRW", rows)
    r = run(db, "mean_reversion", ["MRW"], "1d", day(300), day(400), params)  # 300 bars before: warmup in range
    got = [(s, t, tg) for s, t, tg, *_ in decisions(db, "backtest.mean_reversion", r["id"])]
    p = MR | params
    want = [("MRW", day(i), tg) for i, tg in reference_mean_reversion(rows, 300, p)]
    assert len(want) >= 5
    assert got == want


# A constructed series: closes alternate 100 / 101 (the middle band 100.5, sd 0.5, bands 99.5 .. 101.5), then:
CONSTRUCTED = [100, 101] * 15 + [
    97,  # 30: below the lower band (98.531; middle 100.35): long
    99,  # 31: below the middle band (100.25), above the lower band (98.366): nothing
    101,  # 32: crosses the middle band (100.3) upward: flat
    100,  # 33: crosses it (100.25) downward: flat again (no change)
    101,  # 34: up: flat
    100,  # 35
    101,  # 36
    105,  # 37: above the upper band (103.293): flat, or short with allow_short
    104,  # 38: still above the upper band (103.869): flat / short again (no change)
    100,  # 39: crosses the middle (100.65) downward: flat (the short covered)
]  # the band values in the comments are backtest.indicators' for bb_period 20, bb_k 2


def test_mean_reversion_on_a_constructed_series(db):
    series(db, "MRC", [(c, c + 0.5, c - 0.5, c) for c in CONSTRUCTED])
    params = {"indicator": "bollinger", "bb_period": 20, "bb_k": 2}
    r = run(db, "mean_reversion", ["MRC"], "1d", day(25), day(40), params)
    assert [(t, tg) for _, t, tg, *_ in decisions(db, "backtest.mean_reversion", r["id"])] == [
        (day(25), 0),  # 101 after 100: the alternation crosses the middle band every bar
        (day(26), 0),
        (day(27), 0),
        (day(28), 0),
        (day(29), 0),
        (day(30), 1),
        (day(32), 0),
        (day(33), 0),
        (day(34), 0),
        (day(35), 0),
        (day(36), 0),
        (day(37), 0),
        (day(38), 0),
        (day(39), 0),
    ]
    fills = db.execute(
        "SELECT side, qty, price, ts FROM trading.fills WHERE account_id = %s ORDER BY id", (r["account_id"],)
    ).fetchall()
    # long at bar 31's open (these bars open at their close: 99), flat at bar 33's open (100)
    # all_in, commission 0.1 %: floor(100000 / (99 x 1.001)) = floor(1009.09) = 1009
    assert fills == [("buy", 1009, 99, day(31)), ("sell", 1009, 100, day(33))]

    r = run(db, "mean_reversion", ["MRC"], "1d", day(25), day(40), params | {"allow_short": True})
    got = [(t, tg) for _, t, tg, *_ in decisions(db, "backtest.mean_reversion", r["id"]) if t >= day(30)]
    assert got == [(day(30), 1), (day(32), 0), (day(33), 0), (day(34), 0), (day(35), 0), (day(36), 0),
                   (day(37), -1), (day(38), -1), (day(39), 0)]  # fmt: skip


def test_mean_reversion_rsi_on_a_constructed_series(db):
    # 16 rises of 1, then falls of 1: RSI(14) is 100 from its first value (bar 14) until the falls start
    closes = [100 + i for i in range(17)] + [116 - i for i in range(1, 15)]
    series(db, "MRR", [(c, c + 0.5, c - 0.5, c) for c in closes])
    r = run(db, "mean_reversion", ["MRR"], "1d", day(0), day(len(closes)),
            {"indicator": "rsi", "allow_short": True})  # fmt: skip
    got = [(t, tg) for _, t, tg, *_ in decisions(db, "backtest.mean_reversion", r["id"])]
    # Wilder: after k falls, G = (13/14)^k and L = 1 - (13/14)^k; RSI = 100 G < 30 when (13/14)^k < 0.3, k >= 17:
    # never within these 14 falls. RSI > 70 while (13/14)^k > 0.7: k <= 4 (0.743), so bars 14..20 short
    assert [round((13 / 14) ** k, 3) for k in (4, 5)] == [0.743, 0.690]
    assert got == [(day(i), -1) for i in range(14, 21)]


def test_bad_mean_reversion_parameters(db):
    ensure_sample(db, "GOOG")
    args = ("mean_reversion", ["GOOG"], "1d", "2010-01-01", "2011-01-01")
    for bad in (
        {"indicator": "macd"},
        {"bb_period": 1},
        {"indicator": "rsi", "oversold": 80, "overbought": 70},
        {"stop_loss_atr": -1},
        {"rsi_period": "x", "indicator": "rsi"},
    ):
        assert run_failed(db, *args, bad, "auto").startswith("BT004"), bad


def test_unknown_mean_reversion_parameter_is_refused_before_any_run(db):
    ensure_sample(db, "GOOG")
    with pytest.raises(psycopg.Error) as e:
        db.execute(
            "SELECT backtest.run('mean_reversion', ARRAY['GOOG'], '1d', '2010-01-01', '2011-01-01', '{\"bb_n\": 5}')"
        )
    assert e.value.diag.sqlstate == "BT004" and "bb_period" in e.value.diag.message_hint


# --- mean_reversion: modes, parity, brackets -------------------------------------------------------------------

GOOG = ("GOOG", "1d", "2005-01-01", "2013-01-01")


def test_mean_reversion_modes(db):
    ensure_sample(db, "GOOG")
    sym, iv, a, b = GOOG
    plain = {"indicator": "bollinger"}
    assert run(db, "mean_reversion", [sym], iv, a, b, plain)["mode"] == "fast"  # auto: no brackets
    assert run(db, "mean_reversion", [sym], iv, a, b, plain, mode="fast")["mode"] == "fast"
    assert run(db, "mean_reversion", [sym], iv, a, b, plain, mode="exact")["mode"] == "exact"
    brackets = plain | {"stop_loss_atr": 2, "take_profit_atr": 3}
    r = run(db, "mean_reversion", [sym], iv, a, b, brackets)
    assert r["mode"] == "exact"  # auto: brackets
    assert run_failed(db, "mean_reversion", [sym], iv, a, b, brackets, "fast").startswith("BT006")
    # the children rest and fill through the trading core's matching code: fills by a bar (bar_ts), OCO cancels
    children = dict(
        db.execute(
            "SELECT o.source || ':' || o.status, count(*) FROM trading.orders o WHERE o.account_id = %s"
            " AND o.parent_id IS NOT NULL GROUP BY 1",
            (r["account_id"],),
        ).fetchall()
    )
    assert children.get("stop_loss:filled", 0) > 0 and children.get("take_profit:filled", 0) > 0, children
    assert children.get("stop_loss:cancelled", 0) > 0, children
    assert db.execute(
        "SELECT bool_and(f.bar_ts IS NOT NULL) FROM trading.fills f JOIN trading.orders o ON o.id = f.order_id"
        " WHERE f.account_id = %s AND o.parent_id IS NOT NULL",
        (r["account_id"],),
    ).fetchone()[0]
    # every entry carries its levels: stop below and target above a long entry, on the tick grid
    for target, sl, tp, close in db.execute(
        "SELECT d.target, d.stop_loss, d.take_profit, b.close FROM backtest.decisions d"
        " JOIN market.bars b ON b.symbol = d.symbol AND b.interval = '1d' AND b.ts = d.ts"
        " WHERE d.run_id = %s AND d.target <> 0",
        (r["id"],),
    ).fetchall():
        assert target == 1 and sl < close < tp and sl % D("0.01") == 0 and tp % D("0.01") == 0
    # risk sizing with the stop-loss: each entry (from flat) buys the shares that lose 1 % of the equity it saw at
    # its stop, floor(equity x 0.01 / (price - stop)), unless all_in buys fewer (commission 0.1 %)
    r = run(db, "mean_reversion", [sym], iv, a, b, brackets | {"sizing": "risk", "risk_pct": 1})
    entries = db.execute(
        "SELECT f.qty, f.price, d.stop_loss, s.total_value FROM backtest.decisions d"
        " JOIN trading.fills f ON f.order_id = d.order_id"
        " JOIN trading.portfolio_snapshots s ON s.account_id = f.account_id AND s.ts = d.exec_ts"
        " WHERE d.run_id = %s AND d.target = 1",
        (r["id"],),
    ).fetchall()
    assert r["mode"] == "exact" and len(entries) > 10
    for qty, price, stop, equity in entries:
        assert qty == min(math.floor(equity * D("0.01") / (price - stop)), math.floor(equity / (price * D("1.001"))))
    assert any(qty * (price - stop) > equity * D("0.009") for qty, price, stop, equity in entries)


@pytest.mark.parametrize(
    "params",
    [
        {"indicator": "bollinger", "cash": 50000, "commission": 0.0005, "commission_min": 1, "slippage_bps": 5},
        {"indicator": "rsi", "allow_short": True, "sizing": "fraction", "fraction": 0.5, "oversold": 35},
    ],
    ids=["bollinger-costs", "rsi-short-fraction"],
)
def test_mean_reversion_fast_and_exact_write_identical_rows(db, params):
    ensure_sample(db, "GOOG")
    sym, iv, a, b = GOOG
    fast = run(db, "mean_reversion", [sym], iv, a, b, params, mode="fast")
    exact = run(db, "mean_reversion", [sym], iv, a, b, params, mode="exact")
    x, y = account_rows(db, fast["account_id"]), account_rows(db, exact["account_id"])
    assert len(x["fills"]) > 10
    for table in x:
        assert x[table] == y[table], table
    assert fast["metrics"] == exact["metrics"]


# --- ml_signal -------------------------------------------------------------------------------------------------


@pytest.fixture
def mlw(db):
    """A 300-bar daily series and a logistic regression fitted on its features and labels up to bar 99 (thresholds
    0.55 / 0.45), registered with that training window; left a candidate, so nothing scores the series until a test
    asks for it."""
    from sklearn.linear_model import LogisticRegression

    series(db, "MLW", wave(300, seed=3, period=23))
    x, y, ts = feature_rows(db, ["MLW"], "1d", until=day(99))
    model = LogisticRegression(C=1.0).fit(x, y)
    mid = register_model(db, model, name="mlw-toy", symbols=["MLW"], interval="1d", status="candidate")
    # as ml.train records it: the first and last training rows; the last one's label is bar 99's close
    assert (ts[0], ts[-1]) == (day(49), day(98))
    db.execute("UPDATE ml.models SET train_from = %s, train_until = %s WHERE id = %s", (ts[0], ts[-1], mid))
    return db, mid


def ml_targets(conn, run_id):
    return [(t, tg, sl, tp) for _, t, tg, sl, tp in decisions(conn, "backtest.ml_signal", run_id)]


def test_ml_signal_trades_the_scored_signals_and_the_stored_ones_alike(mlw):
    db, mid = mlw
    args = ("ml_signal", ["MLW"], "1d", day(100), day(300))
    scored = run(db, *args, {"model_id": mid, "brackets": True})
    now = ml_targets(db, scored["id"])
    assert db.execute("SELECT count(*) FROM ml.signals WHERE model_id = %s", (mid,)).fetchone()[0] == 0  # none written
    # the live scoring code writes the signals (ml.score needs the model active)
    db.execute("SELECT ml.activate('mlw-toy', 1)")
    assert db.execute("SELECT ml.score('MLW', '1d', %s, %s)", (day(100), day(299))).fetchone()[0] == 200
    stored = run(db, *args, {"model_id": mid, "brackets": True})
    assert ml_targets(db, stored["id"]) == now
    # ... and they are what it trades: BUY -> 1, SELL -> 0, HOLD -> nothing; entries carry the signal's brackets
    sig = db.execute(
        "SELECT ts, signal, stop_loss, take_profit FROM ml.signals WHERE model_id = %s ORDER BY ts", (mid,)
    ).fetchall()
    want = [(t, 1 if s == "BUY" else 0, sl if s == "BUY" else None, tp if s == "BUY" else None)
            for t, s, sl, tp in sig if s != "HOLD"]  # fmt: skip
    assert now == want
    assert {s for _, s, *_ in sig} == {"BUY", "SELL", "HOLD"}
    # the stored rows are read: a stored probability changed by hand changes the decision at that bar
    t_hold = next(t for t, s, *_ in sig if s == "HOLD")
    db.execute(
        "UPDATE ml.signals SET probability = 0.99, signal = 'BUY' WHERE model_id = %s AND ts = %s", (mid, t_hold)
    )
    changed = run(db, *args, {"model_id": mid})
    assert (t_hold, 1, None, None) in ml_targets(db, changed["id"])
    assert scored["mode"] == "exact" and changed["mode"] == "fast"  # brackets -> exact; none -> fast


def test_ml_signal_thresholds_default_to_the_models(mlw):
    db, mid = mlw
    db.execute("SELECT ml.activate('mlw-toy', 1)")
    db.execute("SELECT ml.score('MLW', '1d', %s, %s)", (day(100), day(299)))
    probs = db.execute("SELECT ts, probability FROM ml.signals WHERE model_id = %s ORDER BY ts", (mid,)).fetchall()
    args = ("ml_signal", ["MLW"], "1d", day(100), day(300))
    for params, buy, sell in (({}, 0.55, 0.45), ({"buy_threshold": 0.6, "sell_threshold": 0.3}, 0.6, 0.3)):
        r = run(db, *args, {"model_id": mid} | params)
        want = [(t, 1 if p >= buy else 0, None, None) for t, p in probs if p >= buy or p <= sell]
        assert ml_targets(db, r["id"]) == want and len(want) > 10
    r = run(db, *args, {"model_id": mid, "allow_short": True})
    assert {tg for _, tg, *_ in ml_targets(db, r["id"])} == {1, -1}
    assert (
        r["fills"] > 0
        and db.execute(
            "SELECT min(qty) FROM trading.position_history WHERE account_id = %s", (r["account_id"],)
        ).fetchone()[0]
        < 0
    )


def test_ml_signal_refuses_a_run_that_starts_inside_the_training_window(mlw):
    db, mid = mlw
    args = ("ml_signal", ["MLW"], "1d")
    # train_until is bar 98 (labelled with bar 99's close): a run from bar 98 would trade on what the model
    # learned; from bar 99 it may (at bar 99's close, its close is known)
    err = run_failed(db, *args, day(98), day(300), {"model_id": mid}, "auto")
    assert err.startswith("BT031") and "allow_in_sample true" in err
    assert run(db, *args, day(99), day(300), {"model_id": mid})["status"] == "done"
    r = run(db, *args, day(60), day(300), {"model_id": mid, "allow_in_sample": True})
    assert r["params"]["allow_in_sample"] is True  # the run records that it asked for an in-sample result
    # a horizon of 3 bars: the label of bar 98 saw bar 101's close, so the run starts at bar 101 at the earliest
    db.execute("ALTER TABLE ml.models DISABLE TRIGGER _100_immutable")
    db.execute("UPDATE ml.models SET horizon = 3 WHERE id = %s", (mid,))
    db.execute("ALTER TABLE ml.models ENABLE TRIGGER _100_immutable")
    assert run_failed(db, *args, day(100), day(300), {"model_id": mid}, "auto").startswith("BT031")
    assert run(db, *args, day(101), day(300), {"model_id": mid})["status"] == "done"
    # no recorded training window (an imported model): refused unless allow_in_sample
    db.execute("UPDATE ml.models SET train_until = NULL WHERE id = %s", (mid,))
    assert "no recorded training window" in run_failed(db, *args, day(150), day(300), {"model_id": mid}, "auto")
    assert run(db, *args, day(150), day(300), {"model_id": mid, "allow_in_sample": True})["status"] == "done"


def test_ml_signal_model_references(mlw):
    db, mid = mlw
    args = ("ml_signal", ["MLW"], "1d", day(100), day(300))
    by_id = ml_targets(db, run(db, *args, {"model_id": mid})["id"])
    assert ml_targets(db, run(db, *args, {"model_id": "mlw-toy:1"})["id"]) == by_id
    assert ml_targets(db, run(db, *args, {"model_id": str(mid)})["id"]) == by_id
    err = run_failed(db, *args, {"model_id": "mlw-toy"}, "auto")  # a candidate: no active version
    assert err.startswith("BT030") and "NAME:VERSION" in err
    db.execute("SELECT ml.activate('mlw-toy', 1)")
    assert ml_targets(db, run(db, *args, {"model_id": "mlw-toy"})["id"]) == by_id
    for bad in ({}, {"model_id": 999999}, {"model_id": "nope:1"}, {"model_id": None}):
        assert run_failed(db, *args, bad, "auto").startswith("BT030"), bad
    assert run_failed(db, *args, {"model_id": mid, "buy_threshold": 0.4, "sell_threshold": 0.6}, "auto").startswith(
        "BT004"
    )
    # a model of another interval is refused
    other = register_model(db, toy_model(), name="mlw-hourly", symbols=["MLW"], interval="1h", status="candidate")
    assert "scores 1h bars" in run_failed(db, *args, {"model_id": other}, "auto")


def test_ml_signal_with_a_model_trained_by_ml_train(db):
    """The walk-forward contract: ml.train on a train window, then this strategy by id on the window after it."""
    ensure_sample(db, "GOOG")
    tr = db.execute(
        "SELECT model_id, decision FROM ml.train('goog-bt-logreg', 'logreg', ARRAY['GOOG'], '1d', '-infinity',"
        " '2009-12-31')"
    ).fetchone()
    assert tr[0] is not None, tr
    until = db.execute("SELECT train_until FROM ml.models WHERE id = %s", (tr[0],)).fetchone()[0]
    assert until <= datetime(2009, 12, 31, tzinfo=UTC)
    r = run(db, "ml_signal", ["GOOG"], "1d", "2010-01-01", "2013-01-01", {"model_id": tr[0]})
    assert r["mode"] == "fast" and r["decisions"] > 5 and r["fills"] > 5
    assert run_failed(db, "ml_signal", ["GOOG"], "1d", "2008-01-01", "2013-01-01", {"model_id": tr[0]},
                      "auto").startswith("BT031")  # fmt: skip
