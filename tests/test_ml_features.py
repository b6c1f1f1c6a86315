"""The one feature definition (db/procedures/ml_features.sql) against the bundled real series.

- Every feature equals a straightforward reference formula computed here with numpy from the raw bars (within
  1e-9, scaled by the value's size when it exceeds 1), wherever the bar has the feature's whole lookback; a bar is
  complete exactly when the series has ml.feature_warmup() bars up to it, and every complete bar has every feature.
  The reference knows nothing of the SQL (window frames, running sums): a faster rewrite of the body must pass too.
- A range query (from_ts, to_ts) returns exactly the rows of the whole-series query in that range.
- No look-ahead: changing, deleting or adding bars after t never changes a feature at or before t (Hypothesis over
  a real series); the same change at t does change t's features, and labels (the one function that looks forward)
  do change, so the check can fail. Nothing the closed-bar path runs reaches ml.labels.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loaders.csv_loader import load_csv
from loaders.sample import DATA_DIR, manifest, register_instrument

TOL = 1e-9

# lookback of each feature: the bars it needs up to and including t (returns need the bar before their window)
LOOKBACK = {
    "ret_1": 2,
    "ret_5": 6,
    "ret_10": 11,
    "ret_20": 21,
    "vol_10": 11,
    "vol_20": 21,
    "rsi_14": 15,
    "sma_5_20": 20,
    "close_sma_20": 20,
    "close_sma_50": 50,
    "atr_14": 15,
    "volume_z_20": 20,
    "range": 1,
    "gap": 2,
    "close_location": 1,
}
ATR_LOOKBACK = 15


def load_series(db, symbol: str, *, as_symbol: str | None = None) -> int:
    """Load one bundled series (under another symbol when asked) inside the test's transaction; returns its rows.
    Not loaders.sample.load_sample: as a test's first statement, its `with conn.transaction()` opens and COMMITS a
    transaction of its own, and its two-worker pipeline may send a batch over a second connection."""
    db.execute("SELECT 1")  # the test's transaction is open from here on: nothing below commits
    series = next(s for s in manifest() if s.symbol == symbol)
    sym = as_symbol or series.symbol
    register_instrument(db, symbol=sym, name=series.name, asset_class=series.asset_class, currency=series.currency)
    report = load_csv(db, DATA_DIR / series.file, symbol=sym, interval=series.interval, source="test", workers=1)
    assert report.total.rejected == 0
    n = db.execute("SELECT count(*) FROM market.bars WHERE symbol = %s AND interval = %s", (sym, series.interval))
    assert n.fetchone()[0] == series.rows
    return series.rows


def raw_bars(db, symbol: str, interval: str):
    rows = db.execute(
        "SELECT ts, open::float8, high::float8, low::float8, close::float8, volume::float8, close FROM market.bars"
        " WHERE symbol = %s AND interval = %s ORDER BY ts",
        (symbol, interval),
    ).fetchall()
    ts = [r[0] for r in rows]
    o, h, low, c, v = (np.array([r[k] for r in rows], dtype=np.float64) for k in range(1, 6))
    return ts, o, h, low, c, v, [r[6] for r in rows]


def reference(o, h, low, c, v) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each feature of feature_names() by its textbook formula, bar by bar over plain windows of the raw series
    (NaN where the bar lacks the lookback); and ATR(14) in price units."""
    n = len(c)
    nan = np.full(n, np.nan)
    f = {k: nan.copy() for k in LOOKBACK}
    atr = nan.copy()
    r1 = nan.copy()
    r1[1:] = np.log(c[1:] / c[:-1])
    tr = nan.copy()
    tr[1:] = np.maximum.reduce([h[1:] - low[1:], np.abs(h[1:] - c[:-1]), np.abs(low[1:] - c[:-1])])
    for i in range(n):
        for k in (1, 5, 10, 20):
            if i >= k:
                f[f"ret_{k}"][i] = math.log(c[i] / c[i - k])
        for k in (10, 20):
            if i >= k:
                f[f"vol_{k}"][i] = np.std(r1[i - k + 1 : i + 1], ddof=1)
        if i >= 14:
            d = c[i - 13 : i + 1] - c[i - 14 : i]
            gain, loss = np.maximum(d, 0).mean(), np.maximum(-d, 0).mean()
            f["rsi_14"][i] = (100 * gain / (gain + loss) - 50) / 50 if gain + loss > 0 else 0.0
            atr[i] = tr[i - 13 : i + 1].mean()
            f["atr_14"][i] = atr[i] / c[i]
        if i >= 19:
            sma20 = c[i - 19 : i + 1].mean()
            f["sma_5_20"][i] = c[i - 4 : i + 1].mean() / sma20 - 1
            f["close_sma_20"][i] = c[i] / sma20 - 1
            w = v[i - 19 : i + 1]
            sd = np.std(w, ddof=1)
            f["volume_z_20"][i] = (v[i] - w.mean()) / sd if sd > 0 else 0.0
        if i >= 49:
            f["close_sma_50"][i] = c[i] / c[i - 49 : i + 1].mean() - 1
        f["range"][i] = (h[i] - low[i]) / c[i]
        if i >= 1:
            f["gap"][i] = math.log(o[i] / c[i - 1])
        f["close_location"][i] = (c[i] - low[i]) / (h[i] - low[i]) - 0.5 if h[i] > low[i] else 0.0
    return f, atr


def close_enough(got, want) -> bool:
    return got is not None and abs(got - want) <= TOL * max(1.0, abs(want))


def features(db, symbol, interval, from_ts="-infinity", to_ts="infinity"):
    return db.execute(
        "SELECT ts, close, atr, complete, x FROM ml.features(ARRAY[%s], %s, %s, %s)",
        (symbol, interval, from_ts, to_ts),
    ).fetchall()


SERIES = [("SPX", "1d"), ("IXIC", "1d"), ("GOOG", "1d"), ("GOOGL", "1d"), ("EURUSD", "1h"), ("EURUSD_ASK", "1h")]


@pytest.mark.parametrize(("symbol", "interval"), SERIES)
def test_every_feature_equals_its_reference_formula_on_real_bars(db, symbol, interval):
    load_series(db, symbol)
    names, warmup = db.execute("SELECT ml.feature_names(), ml.feature_warmup()").fetchone()
    assert set(names) == set(LOOKBACK), "a feature was added or renamed: give it a reference formula here"
    assert warmup >= max(LOOKBACK.values()), "a complete bar must have every feature's whole lookback"
    ts, o, h, low, c, v, close_n = raw_bars(db, symbol, interval)
    ref, atr = reference(o, h, low, c, v)
    got = features(db, symbol, interval)
    assert [g[0] for g in got] == ts, "one row per bar, in time order"
    checked = dict.fromkeys(names, 0)
    for i, (_, close, g_atr, complete, x) in enumerate(got):
        assert close == close_n[i]
        assert complete == (i >= warmup - 1), (i, complete)
        assert len(x) == len(names)
        for j, name in enumerate(names):
            if i >= LOOKBACK[name] - 1:
                assert close_enough(x[j], ref[name][i]), (symbol, ts[i], name, x[j], ref[name][i])
                checked[name] += 1
            if complete:
                assert x[j] is not None and math.isfinite(x[j]), (ts[i], name, x[j])
        if i >= ATR_LOOKBACK - 1:
            assert close_enough(g_atr, atr[i]), (ts[i], g_atr, atr[i])
    assert min(checked.values()) >= len(ts) - warmup


def test_degenerate_bars_follow_the_definition(db):
    """Where real data has no such stretch: flat prices and volume (RSI, volume z-score, close location are 0 by
    definition, volatility 0), a bar with high = low, a zero volume; compared with the same reference formulas."""
    from trading_support import T0, bars, instrument

    instrument(db, "FLATX")
    rows = [(100, 100, 100, 100, 500)] * 60 + [(100, 103, 99, 102, 900), (102, 102, 102, 102, 0)]
    rows += [(101, 104, 100, 103, 500 + 10 * k) for k in range(30)]
    bars(db, "FLATX", rows, interval="1m", start=T0)
    names = db.execute("SELECT ml.feature_names()").fetchone()[0]
    ts, o, h, low, c, v, _ = raw_bars(db, "FLATX", "1m")
    ref, atr = reference(o, h, low, c, v)
    got = features(db, "FLATX", "1m")
    for i in range(49, len(got)):
        for j, name in enumerate(names):
            assert close_enough(got[i][4][j], ref[name][i]), (i, name, got[i][4][j], ref[name][i])
        assert close_enough(got[i][2], atr[i])
    flat = got[59][4]
    for name in ("rsi_14", "volume_z_20", "close_location", "vol_10", "vol_20", "ret_1", "atr_14", "range"):
        assert flat[names.index(name)] == 0, name
    assert got[61][4][names.index("close_location")] == 0  # high = low


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_range_query_returns_the_whole_series_rows_in_that_range(db, data):
    if not db.execute("SELECT EXISTS (SELECT FROM market.bars WHERE symbol = 'GOOG')").fetchone()[0]:
        load_series(db, "GOOG")  # once per test transaction
    with db.transaction(force_rollback=True):
        full = features(db, "GOOG", "1d")
        n = len(full)
        a = data.draw(st.integers(0, n - 1), label="from bar")
        b = data.draw(st.integers(a, n - 1), label="to bar")
        # bounds on a bar or between two bars
        lo = full[a][0] - data.draw(st.sampled_from([timedelta(0), timedelta(hours=1)]), label="from offset")
        hi = full[b][0] + data.draw(st.sampled_from([timedelta(0), timedelta(hours=1)]), label="to offset")
        part = features(db, "GOOG", "1d", lo, hi)
        assert [p[0] for p in part] == [f[0] for f in full[a : b + 1]]
        for p, f in zip(part, full[a : b + 1], strict=True):
            assert same_row(p, f), (p, f)


def test_one_bar_ranges_at_the_warmup_edge_equal_the_whole_series(db):
    """The call scoring makes for one bar (from_ts = to_ts = the bar), at the first bars, around the warmup edge
    (the bar with warmup - 1 bars before it is the first complete one) and at the last bar."""
    load_series(db, "GOOG")
    warmup = db.execute("SELECT ml.feature_warmup()").fetchone()[0]
    full = features(db, "GOOG", "1d")
    for i in (0, 1, warmup - 2, warmup - 1, warmup, warmup + 1, len(full) - 1):
        one = features(db, "GOOG", "1d", full[i][0], full[i][0])
        assert len(one) == 1 and same_row(one[0], full[i]), (i, one, full[i])
        assert one[0][3] == (i >= warmup - 1)


def same_row(p, f) -> bool:
    """Two rows of features(): the same close and completeness, atr and every feature equal (within TOL) or both
    missing."""

    def eq(x, y):
        return (x is None and y is None) or (x is not None and y is not None and close_enough(x, y))

    return p[1] == f[1] and p[3] == f[3] and eq(p[2], f[2]) and all(eq(x, y) for x, y in zip(p[4], f[4], strict=True))


def test_several_symbols_in_one_call_never_mix(db):
    """One call over several series returns each series' own rows, exactly as a call per series (no window and no
    running total crosses from one symbol into the next); a symbol named twice counts once; an unknown one adds
    nothing."""
    for sym in ("SPX", "IXIC", "GOOG"):
        load_series(db, sym)
    both = db.execute(
        "SELECT symbol, ts, close, atr, complete, x FROM ml.features(ARRAY['SPX', 'IXIC', 'SPX', 'NOSUCH'], '1d',"
        " '2004-08-01', '2006-01-01')"
    ).fetchall()
    for sym in ("IXIC", "SPX"):
        alone = features(db, sym, "1d", "2004-08-01", "2006-01-01")
        mine = [r[1:] for r in both if r[0] == sym]
        assert len(mine) == len(alone) > 300
        assert all(same_row(a, b) for a, b in zip(mine, alone, strict=True)), sym
    assert {r[0] for r in both} == {"SPX", "IXIC"}
    assert [(r[0], r[1]) for r in both] == sorted((r[0], r[1]) for r in both)  # ordered by symbol, ts


@pytest.mark.parametrize("horizon", [1, 5])
def test_labels_are_the_forward_return_over_the_horizon(db, horizon):
    load_series(db, "GOOG")
    ts, *_, c, _, _ = raw_bars(db, "GOOG", "1d")
    got = db.execute(
        "SELECT ts, fwd_return, up FROM ml.labels(ARRAY['GOOG'], '1d', %s, %s, %s)", (ts[100], ts[400], horizon)
    ).fetchall()
    want = [(ts[i], math.log(c[i + horizon] / c[i])) for i in range(100, 401 - horizon)]
    assert [g[0] for g in got] == [w[0] for w in want]  # none for the last bars: their future is outside the range
    for (_, fwd, up), (_, ref) in zip(got, want, strict=True):
        assert close_enough(fwd, ref) and up == (ref > 0)


# --- no look-ahead ---------------------------------------------------------------------------------------------

LA = "LOOKAHD"  # a copy of 300 real SPX bars (2008-2009: the most volatile stretch of the bundled history)


def copy_spx(db, n: int = 300):
    """The copy's bar times, made once per test transaction (Hypothesis' examples then run in savepoints)."""
    have = db.execute("SELECT ts FROM market.bars WHERE symbol = %s ORDER BY ts", (LA,)).fetchall()
    if have:
        return [r[0] for r in have]
    load_series(db, "SPX")
    db.execute(
        "SELECT market.upsert_instrument(%s::text, 'look-ahead test copy of SPX'::text, 'index'::text, 'USD'::text)",
        (LA,),
    )
    db.execute(
        "INSERT INTO market.bars (symbol, interval, ts, open, high, low, close, volume, source)"
        " SELECT %s, interval, ts, open, high, low, close, volume, 'test' FROM market.bars"
        " WHERE symbol = 'SPX' AND interval = '1d' AND ts >= '2008-06-02' ORDER BY ts LIMIT %s",
        (LA, n),
    )
    return [r[0] for r in db.execute("SELECT ts FROM market.bars WHERE symbol = %s ORDER BY ts", (LA,)).fetchall()]


def mutate(db, ts_list, changes, added):
    """Apply changes to bars: ('scale', ts, factor, volume) rescales its prices and sets its volume, ('delete', ts)
    deletes it; then adds bars after the last one."""
    for ch in changes:
        if ch[0] == "delete":
            db.execute("DELETE FROM market.bars WHERE symbol = %s AND interval = '1d' AND ts = %s", (LA, ch[1]))
        else:
            _, ts, factor, vol = ch
            db.execute(
                "UPDATE market.bars SET open = open * %s, high = high * %s, low = low * %s, close = close * %s,"
                " volume = %s WHERE symbol = %s AND interval = '1d' AND ts = %s",
                (factor, factor, factor, factor, vol, LA, ts),
            )
    last = ts_list[-1]
    for k, (price, vol) in enumerate(added, start=1):
        db.execute(
            "INSERT INTO market.bars (symbol, interval, ts, open, high, low, close, volume, source)"
            " VALUES (%s, '1d', %s, %s, %s, %s, %s, %s, 'test')",
            (LA, last + timedelta(days=k), price, price * 1.01, price * 0.99, price, vol),
        )


change = st.one_of(
    st.tuples(
        st.just("scale"),
        st.floats(0.2, 5, allow_nan=False),
        st.integers(0, 10**10),
    ),
    st.tuples(st.just("delete")),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_bar_after_t_changes_a_feature_at_or_before_t(db, data):
    ts_list = copy_spx(db)
    with db.transaction(force_rollback=True):
        n = len(ts_list)
        t = data.draw(st.integers(0, n - 2), label="t (bar index)")
        later = data.draw(
            st.lists(st.tuples(st.integers(t + 1, n - 1), change), max_size=8, unique_by=lambda c: c[0]),
            label="changes after t",
        )
        added = data.draw(
            st.lists(st.tuples(st.floats(100, 3000), st.integers(0, 10**10)), max_size=3), label="bars added"
        )
        if not later and not added:
            later = [(n - 1, ("delete",))]
        before = features(db, LA, "1d")[: t + 1]
        ranged = features(db, LA, "1d", ts_list[max(0, t - 5)], ts_list[t])
        mutate(db, ts_list, [(c[0], ts_list[i], *c[1:]) for i, c in later], added)
        after = features(db, LA, "1d")
        assert after[: t + 1] == before, f"a feature at or before {ts_list[t]} moved"
        assert features(db, LA, "1d", ts_list[max(0, t - 5)], ts_list[t]) == ranged


def test_every_bar_of_a_real_series_has_its_features_from_the_bars_up_to_it_alone(db):
    """Exhaustive over the 300-bar real copy: each bar's features computed with every later bar left out (from_ts =
    to_ts = the bar, as scoring asks for one bar) equal its features in the whole series."""
    ts_list = copy_spx(db)
    full = features(db, LA, "1d")
    for t, ts in enumerate(ts_list):
        alone = features(db, LA, "1d", ts, ts)
        assert len(alone) == 1 and same_row(alone[0], full[t]), ts


def test_the_look_ahead_check_can_fail_and_labels_do_look_ahead(db):
    """The same comparison as above sees a change at t itself; and ml.labels at t moves when bar t+1 changes (it
    is meant to: labels are what happened after t, kept out of scoring)."""
    ts_list = copy_spx(db)
    t = 200
    before = features(db, LA, "1d")
    labels_before = db.execute("SELECT ts, fwd_return FROM ml.labels(ARRAY[%s], '1d')", (LA,)).fetchall()
    with db.transaction(force_rollback=True):
        mutate(db, ts_list, [("scale", ts_list[t], 1.05, 10**9)], [])
        after = features(db, LA, "1d")
        assert after[:t] == before[:t] and after[t] != before[t]
    mutate(db, ts_list, [("scale", ts_list[t + 1], 1.05, 10**9)], [])
    labels_after = db.execute("SELECT ts, fwd_return FROM ml.labels(ARRAY[%s], '1d')", (LA,)).fetchall()
    assert labels_after[t] != labels_before[t] and labels_after[:t] == labels_before[:t]
    assert labels_after[t][0] == ts_list[t]
    assert features(db, LA, "1d")[: t + 1] == before[: t + 1]


def test_nothing_on_the_closed_bar_path_reaches_labels(db):
    """Follow every function the closed-bar path calls (by name, through their bodies, transitively, whatever
    steps are added to internal.on_closed_bars) plus on-demand scoring: none is ml.labels."""
    bodies: dict[str, str] = {}
    for schema, name, src in db.execute(
        "SELECT n.nspname, p.proname, p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname IN ('ml', 'internal', 'trading', 'market', 'ops')"
    ).fetchall():
        bodies[f"{schema}.{name}"] = bodies.get(f"{schema}.{name}", "") + "\n" + src
    call = re.compile(r"\b(ml|internal|trading|market|ops)\.(\w+)\s*\(")
    start = ["ml.tg_bars__closed", "ml.process_closed_bars"] + (["ml.score"] if "ml.score" in bodies else [])
    seen, todo = set(), list(start)
    while todo:
        fn = todo.pop()
        if fn in seen or fn not in bodies:
            continue
        seen.add(fn)
        todo.extend(f"{s}.{n}" for s, n in call.findall(bodies[fn]))
    assert {"internal.process_closed", "internal.on_closed_bars", "ml.closed_upto"} <= seen  # the walk works
    assert "ml.labels" not in seen, sorted(seen)
    assert "ml.labels" in bodies  # and would have been found
