"""Scoring in the database: the fast feature definition against the straightforward formulas, ml.score and
ml.predict against scikit-learn on the same features, the signal, confidence and bracket rules, refusals, and the
live path (a forming bar is scored once, when it has closed, through the synthetic feed's real forming updates)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import psycopg
import pytest
from ml_support import feature_rows, register_model, toy_model, walk
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from trading_support import instrument

from loaders.sample import load_sample
from loaders.stream import StreamConfig, build
from pgtrade.ingest import Bar, ingest_batch

T0 = datetime(2024, 3, 4, 0, 0, tzinfo=UTC)


# ------------------------------------------------------------------------------------------------ features
def reference_features(o, h, l, c, v) -> np.ndarray:  # noqa: E741 - the usual OHLCV letters
    """The features of every bar with 50 bars of history, straight from their definitions (ml.feature_names)."""
    n = len(c)
    r1 = np.full(n, np.nan)
    r1[1:] = np.log(c[1:] / c[:-1])
    rows = []
    for t in range(49, n):

        def sl(k, a=None, t=t):
            """The last k values up to t (of the closes unless a is given)."""
            return (a if a is not None else c)[t - k + 1 : t + 1]

        gains = [max(c[i] - c[i - 1], 0.0) for i in range(t - 13, t + 1)]
        losses = [max(c[i - 1] - c[i], 0.0) for i in range(t - 13, t + 1)]
        tr = [max(h[i] - l[i], abs(h[i] - c[i - 1]), abs(l[i] - c[i - 1])) for i in range(t - 13, t + 1)]
        g, lo = float(np.mean(gains)), float(np.mean(losses))
        vw = sl(20, v)
        vsd = float(np.std(vw, ddof=1))
        rows.append(
            [
                r1[t],
                math.log(c[t] / c[t - 5]),
                math.log(c[t] / c[t - 10]),
                math.log(c[t] / c[t - 20]),
                float(np.std(sl(10, r1), ddof=1)),
                float(np.std(sl(20, r1), ddof=1)),
                (100 * g / (g + lo) - 50) / 50 if g + lo > 0 else 0.0,
                float(np.mean(sl(5))) / float(np.mean(sl(20))) - 1,
                c[t] / float(np.mean(sl(20))) - 1,
                c[t] / float(np.mean(sl(50))) - 1,
                float(np.mean(tr)) / c[t],
                (v[t] - float(np.mean(vw))) / vsd if vsd > 0 else 0.0,
                (h[t] - l[t]) / c[t],
                math.log(o[t] / c[t - 1]),
                (c[t] - l[t]) / (h[t] - l[t]) - 0.5 if h[t] > l[t] else 0.0,
            ]
        )
    return np.array(rows)


@pytest.fixture
def sample_db(db):
    """The test transaction with the bundled SPX and GOOG daily history loaded (rolled back afterwards)."""
    load_sample(db, symbols=["SPX", "GOOG"])
    return db


def test_features_equal_the_straightforward_formulas_on_real_series(sample_db):
    db = sample_db
    for sym in ("SPX", "GOOG"):
        bars = db.execute(
            "SELECT open, high, low, close, volume FROM market.bars WHERE symbol = %s AND interval = '1d' ORDER BY ts",
            (sym,),
        ).fetchall()
        o, h, l, c, v = (np.array([float(b[i]) for b in bars]) for i in range(5))  # noqa: E741
        want = reference_features(o, h, l, c, v)
        rows = db.execute("SELECT x, complete, atr FROM ml.features(%s, '1d') ORDER BY ts", ([sym],)).fetchall()
        assert len(rows) == len(bars)
        assert [r[1] for r in rows] == [i >= 49 for i in range(len(bars))]
        got = np.array([r[0] for r in rows[49:]], dtype=float)
        assert got.shape == want.shape == (len(bars) - 49, 15)
        # within 1e-9 relative (1e-12 absolute for values at zero, e.g. a flat volume z-score)
        err = np.abs(got - want) - (1e-9 * np.abs(want) + 1e-12)
        worst = np.unravel_index(np.argmax(err), err.shape)
        assert err.max() <= 0, (sym, worst, got[worst], want[worst])
        # the ATR column is the feature's ATR in price units
        atr = np.array([r[2] for r in rows[49:]])
        np.testing.assert_allclose(atr / c[49:], want[:, 10], rtol=1e-9)


def test_features_of_a_range_equal_those_of_the_whole_series(sample_db):
    """A range starts warm-up bars early: its rows are the whole series' rows (what scoring a few new bars sees)."""
    whole = sample_db.execute(
        "SELECT ts, x FROM ml.features(ARRAY['SPX'], '1d') WHERE ts >= '2008-09-01' AND ts <= '2008-10-31'"
    ).fetchall()
    part = sample_db.execute("SELECT ts, x FROM ml.features(ARRAY['SPX'], '1d', '2008-09-01', '2008-10-31')").fetchall()
    assert [r[0] for r in part] == [r[0] for r in whole] and len(part) > 40
    np.testing.assert_allclose(np.array([r[1] for r in part]), np.array([r[1] for r in whole]), rtol=1e-9, atol=1e-12)


def test_no_feature_at_t_moves_when_later_bars_change_or_go(sample_db):
    db = sample_db
    t = datetime(2008, 9, 15, tzinfo=UTC)
    before = db.execute(
        "SELECT ts, x FROM ml.features(ARRAY['SPX'], '1d', %s - interval '60 days', %s)", (t, t)
    ).fetchall()
    db.execute("UPDATE market.bars SET close = close * 2, high = high * 2 WHERE symbol = 'SPX' AND ts > %s", (t,))
    db.execute("DELETE FROM market.bars WHERE symbol = 'SPX' AND ts > %s + interval '10 days'", (t,))
    after = db.execute(
        "SELECT ts, x FROM ml.features(ARRAY['SPX'], '1d', %s - interval '60 days', %s)", (t, t)
    ).fetchall()
    assert before == after and len(before) > 30


# ------------------------------------------------------------------------------------------------ ml.score
@pytest.fixture
def models(sample_db):
    """Two real direction models (logistic regression, gradient boosting) fitted on SPX+GOOG up to 2010."""
    X, y, _ = feature_rows(sample_db, ["SPX", "GOOG"], "1d", "2010-01-01")
    lr = LogisticRegression(max_iter=1000).fit(X, y)
    gb = GradientBoostingClassifier(n_estimators=30, max_depth=2, random_state=0).fit(X, y)
    ids = {
        "lr": register_model(
            sample_db,
            lr,
            name="t_score_lr",
            symbols=["SPX", "GOOG"],
            interval="1d",
            buy_threshold=0.53,
            sell_threshold=0.47,
        ),
        "gb": register_model(sample_db, gb, name="t_score_gb", symbols=["SPX"], interval="1d"),
    }
    return sample_db, ids, {"lr": lr, "gb": gb}


def test_score_writes_each_closed_bar_once_per_model_with_sklearns_probability(models):
    db, ids, est = models
    n = db.execute("SELECT ml.score('SPX', '1d', '2016-01-01', '2016-12-31')").fetchone()[0]
    bars = db.execute(
        "SELECT count(*) FROM market.bars WHERE symbol = 'SPX' AND interval = '1d'"
        " AND ts BETWEEN '2016-01-01' AND '2016-12-31'"
    ).fetchone()[0]
    assert bars == 252 and n == 2 * bars  # both models score SPX
    assert db.execute("SELECT ml.score('SPX', '1d', '2016-01-01', '2016-12-31')").fetchone()[0] == 0  # once
    assert db.execute("SELECT ml.score('goog', '1d', '2012-01-01', '2012-01-31')").fetchone()[0] == 20  # lr only

    rows = db.execute(
        """SELECT s.model_id, s.probability, s.confidence, s.signal, s.close, s.atr, s.stop_loss, s.take_profit, f.x,
                  m.buy_threshold, m.sell_threshold, f.close
           FROM ml.signals s JOIN ml.models m ON m.id = s.model_id
           JOIN ml.features(ARRAY['SPX'], '1d', '2016-01-01', '2016-12-31') f ON f.ts = s.ts
           WHERE s.symbol = 'SPX' ORDER BY s.model_id, s.ts"""
    ).fetchall()
    assert len(rows) == n
    seen = set()
    for model_id, p, conf, sig, close, atr, sl, tp, x, buy, sell, fclose in rows:
        kind = "lr" if model_id == ids["lr"] else "gb"
        want_p = est[kind].predict_proba(np.array([x], dtype=np.float32))[0, 1]
        assert abs(p - want_p) <= 1e-5
        assert close == fclose
        assert sig == ("BUY" if p >= buy else "SELL" if p <= sell else "HOLD")
        assert conf == round(Decimal(abs(2 * p - 1)), 6)
        if sig == "HOLD":
            assert sl is None and tp is None
        else:
            d = 1 if sig == "BUY" else -1
            # defaults: stop 2 x ATR, take 3 x ATR, at the cent (SPX's tick)
            assert sl == (close - d * 2 * Decimal(atr)).quantize(Decimal("0.01"))
            assert tp == (close + d * 3 * Decimal(atr)).quantize(Decimal("0.01"))
        seen.add(sig)
    assert seen == {"BUY", "SELL", "HOLD"}  # the rule's three branches all occur on a real year


def test_score_takes_closed_complete_bars_only(models):
    db, _, _ = models
    # GOOG's first 49 bars are not complete: of its first 50, only the 50th is scored
    first, fiftieth = db.execute(
        "SELECT min(ts), max(ts) FROM (SELECT ts FROM market.bars WHERE symbol = 'GOOG' ORDER BY ts LIMIT 50) b"
    ).fetchone()
    assert db.execute("SELECT ml.score('GOOG', '1d', %s, %s)", (first, fiftieth)).fetchone()[0] == 1
    # the newest bar of a series whose clock has not passed its end is forming: not scored
    db.execute("SELECT set_config('pgtrade.feed_now', '2013-03-01 12:00+00', true)")  # GOOG's last bar: 2013-03-01
    assert db.execute("SELECT ml.score('GOOG', '1d', '2013-02-25', '2013-03-01')").fetchone()[0] == 4
    db.execute("SELECT set_config('pgtrade.feed_now', '2013-03-02 00:00+00', true)")
    assert db.execute("SELECT ml.score('GOOG', '1d', '2013-02-25', '2013-03-01')").fetchone()[0] == 1


def test_predict_gives_what_score_records(models):
    db, _, _ = models
    predicted = db.execute("SELECT * FROM ml.predict('SPX', '1d') ORDER BY model_id").fetchall()
    assert len(predicted) == 2 and {r[3] for r in predicted} == {datetime(2018, 12, 31, tzinfo=UTC)}
    db.execute("SELECT ml.score('SPX', '1d', '2018-12-31', '2018-12-31')")
    recorded = db.execute(
        "SELECT model_id, symbol, interval, ts, probability, confidence, signal, close, atr, stop_loss, take_profit "
        "FROM ml.signals WHERE symbol = 'SPX' ORDER BY model_id"
    ).fetchall()
    assert recorded == predicted


def test_model_params_set_the_bracket_multiples_and_ticks_round_them(sample_db):
    X, y, _ = feature_rows(sample_db, ["SPX"], "1d", "2010-01-01")
    mid = register_model(
        sample_db,
        LogisticRegression(max_iter=1000).fit(X, y),
        name="t_score_params",
        symbols=["SPX"],
        interval="1d",
        buy_threshold=0.0,
        sell_threshold=0.0,
    )  # always BUY
    sample_db.execute("UPDATE market.instruments SET tick_size = 0.25 WHERE symbol = 'SPX'")
    sample_db.execute("ALTER TABLE ml.models DISABLE TRIGGER _100_immutable")  # params are not immutable anyway
    sample_db.execute(
        """UPDATE ml.models SET params = '{"stop_loss_atr": 1.5, "take_profit_atr": 4}' WHERE id = %s""", (mid,)
    )
    sample_db.execute("ALTER TABLE ml.models ENABLE TRIGGER _100_immutable")
    sample_db.execute("SELECT ml.score('SPX', '1d', '2017-01-01', '2017-01-31')")
    for close, atr, sl, tp in sample_db.execute(
        "SELECT close, atr, stop_loss, take_profit FROM ml.signals WHERE model_id = %s", (mid,)
    ):
        q = Decimal("0.25")
        assert sl == ((close - Decimal("1.5") * Decimal(atr)) / q).quantize(Decimal(1)) * q
        assert tp == ((close + 4 * Decimal(atr)) / q).quantize(Decimal(1)) * q


def test_score_refuses_what_it_cannot_do(models):
    db, _, _ = models
    for sql, code in [
        ("SELECT ml.score('SPX', '1d', '2017-01-01', '2016-01-01')", "ML021"),  # an empty range
        ("SELECT ml.score('SPX', '7d', '2016-01-01', '2017-01-01')", "ML021"),  # no such interval
        ("SELECT ml.score('EURUSD', '1h', '2017-06-01', '2017-07-01')", "ML022"),  # no active model
    ]:
        with pytest.raises(psycopg.Error) as exc, db.transaction():
            db.execute(sql)
        assert exc.value.sqlstate == code and exc.value.diag.message_hint, sql
    # nothing was written by the refusals
    # (of these symbols: other tests commit models and signals of their own symbols to the shared test database)
    assert db.execute("SELECT count(*) FROM ml.signals WHERE symbol IN ('SPX', 'EURUSD')").fetchone()[0] == 0


def test_a_model_trained_on_other_features_is_refused_on_demand_and_skipped_live(sample_db):
    db = sample_db
    X, y, _ = feature_rows(db, ["SPX"], "1d", "2010-01-01")
    ok = register_model(
        db, LogisticRegression(max_iter=1000).fit(X, y), name="t_score_ok", symbols=["SPX"], interval="1d"
    )
    old = register_model(
        db, LogisticRegression(max_iter=1000).fit(X, y), name="t_score_old", symbols=["SPX"], interval="1d"
    )
    # as if registered under an older feature definition (a new row: models are immutable)
    db.execute(
        """INSERT INTO ml.models (name, version, task, kind, symbols, interval, feature_version, features, output_name,
                                  output_column, onnx, onnx_sha256, status)
           SELECT 't_score_v0', 1, task, kind, symbols, interval, feature_version - 1, features, output_name,
                  output_column, onnx, onnx_sha256, 'active' FROM ml.models WHERE id = %s""",
        (old,),
    )
    db.execute("UPDATE ml.models SET status = 'retired' WHERE id = %s", (old,))
    with pytest.raises(psycopg.Error) as exc:
        db.execute("SELECT ml.score('SPX', '1d', '2016-01-01', '2016-01-31')")
    assert exc.value.sqlstate == "ML020" and "t_score_v0" in str(exc.value) and exc.value.diag.message_hint
    db.rollback()
    # live: the ingest keeps its bars, the compatible model scores, the other one is skipped
    load_sample(db, symbols=["SPX"])
    register_model(db, LogisticRegression(max_iter=1000).fit(X, y), name="t_score_ok", symbols=["SPX"], interval="1d")
    db.execute(
        """INSERT INTO ml.models (name, version, task, kind, symbols, interval, feature_version, features, output_name,
                                  output_column, onnx, onnx_sha256, status)
           SELECT 't_score_v0', 1, task, kind, symbols, interval, feature_version, features[1:14], output_name,
                  output_column, onnx, onnx_sha256, 'active' FROM ml.models WHERE name = 't_score_ok'"""
    )
    db.execute("SELECT set_config('pgtrade.feed_now', '2019-01-03 00:00+00', true)")
    report = ingest_batch(
        db,
        [Bar("SPX", "1d", datetime(2019, 1, 2, tzinfo=UTC), "2476.96", "2519.49", "2467.47", "2510.03", "3733160000")],
        source="test",
    )
    assert report.total.inserted == 1
    got = db.execute(
        "SELECT m.name, s.ts FROM ml.signals s JOIN ml.models m ON m.id = s.model_id WHERE s.symbol = 'SPX'"
    ).fetchall()
    # the load handed the history on before any model was active; the new, closed bar is scored by the one model
    assert got == [("t_score_ok", datetime(2019, 1, 2, tzinfo=UTC))]
    assert ok  # the first registration (rolled back above) was a compatible model too


# ------------------------------------------------------------------------------------------------ the live path
def _walk(sym: str, n: int) -> list[Bar]:
    return walk(sym, n, T0)


def test_live_step_scores_a_forming_bar_once_when_closed(db, unique_symbol):
    sym = unique_symbol
    instrument(db, sym, asset_class="crypto", session_open=None, session_close=None, trades_weekends=True)
    mid = register_model(db, toy_model(), name="t_live_step", symbols=[sym], interval="1m")
    bars = _walk(sym, 56)
    # 55 bars arrive closed (the feed's clock at the end of the last): bars 50..55 have complete features
    ingest_batch(db, bars[:55], source="test", feed_now=T0 + timedelta(minutes=55))
    assert db.execute("SELECT count(*) FROM ml.signals WHERE model_id = %s", (mid,)).fetchone()[0] == 55 - 49
    # the 56th bar forms: six upserts inside its minute, each with other high/low/close
    last = bars[55]
    for j in range(6):
        c = Decimal(last.close) + j - 3
        forming = Bar(
            sym,
            "1m",
            last.ts,
            last.open,
            str(max(c, Decimal(last.high)) + 1),
            str(min(c, Decimal(last.low)) - 1),
            str(c),
            str(100 * (j + 1)),
        )
        ingest_batch(db, [forming], source="test", feed_now=last.ts + timedelta(seconds=10 * (j + 1)))
        got = db.execute("SELECT close FROM ml.signals WHERE model_id = %s AND ts = %s", (mid, last.ts)).fetchall()
        # closed (and scored, with its final close) only by the update at the minute's end
        assert got == ([(c,)] if j == 5 else []), j
    assert db.execute("SELECT count(*) FROM ml.signals WHERE model_id = %s", (mid,)).fetchone()[0] == 56 - 49
    # the probability is the model's on the final bars' features
    p, want = db.execute(
        "SELECT s.probability, p.probability FROM ml.signals s, ml.predict(%s, '1m', %s) p "
        "WHERE s.model_id = %s AND s.ts = %s",
        (sym, last.ts, mid, last.ts),
    ).fetchone()
    assert p == want


def test_synthetic_stream_scores_each_forming_bar_once_with_its_final_values(db_url, unique_symbol):
    """A fast synthetic feed upserts every 1m bar six times; each bar is scored once, after its last update (the
    signal's close is the bar's final close and its probability what the final bars give), because the feed sets
    its simulated clock. Without that clock the same feed scores bars on their first update (checked too: the test
    can tell the difference)."""
    symbols = (f"{unique_symbol}A", f"{unique_symbol}B")
    name = f"t_live_{unique_symbol.lower()}"
    with psycopg.connect(db_url) as conn:
        register_model(conn, toy_model(), name=name, symbols=list(symbols), interval="1m")
        conn.commit()
    try:
        cfg = StreamConfig(source="synthetic", symbols=symbols, speed=1200, max_bars=2 * 6 * 60, seed=11)
        stream = build(cfg, url=db_url)
        assert stream.sim_clock == stream.start
        stats = stream.run()
        assert stats.stopped_by == "max-bars" and stats.updated + stats.unchanged + stats.coalesced > 0
        with psycopg.connect(db_url) as conn:
            rows = conn.execute(
                """SELECT s.symbol, s.ts, s.close = b.close, s.probability, p.probability
                   FROM ml.signals s JOIN ml.models m ON m.id = s.model_id AND m.name = %s
                   JOIN market.bars b ON b.symbol = s.symbol AND b.interval = '1m' AND b.ts = s.ts
                   LEFT JOIN LATERAL ml.predict(s.symbol, '1m', s.ts) p ON true
                   ORDER BY s.symbol, s.ts""",
                (name,),
            ).fetchall()
            bars = conn.execute(
                "SELECT symbol, count(*) FROM market.bars WHERE symbol = ANY(%s) GROUP BY symbol ORDER BY symbol",
                (list(symbols),),
            ).fetchall()
        assert bars == [(symbols[0], 60), (symbols[1], 60)]
        # every bar from the 50th (complete features) to the last (closed by the clock at its last update)
        assert len(rows) == 2 * (60 - 49)
        assert all(r[2] for r in rows), "a signal was scored before its bar's final update"
        assert all(abs(r[3] - r[4]) < 1e-6 for r in rows)  # float32 model inputs: the same features up to rounding

        # the same feed without its clock: forming bars stamped in the past look closed on their first update
        other = (f"{unique_symbol}C",)
        with psycopg.connect(db_url) as conn:
            register_model(conn, toy_model(), name=name + "_c", symbols=list(other), interval="1m")
            conn.commit()
        try:
            blind = build(
                StreamConfig(source="synthetic", symbols=other, speed=1200, max_bars=6 * 60, seed=11), url=db_url
            )
            blind.sim_clock = None
            blind.run()
            with psycopg.connect(db_url) as conn:
                early = conn.execute(
                    """SELECT count(*) FILTER (WHERE s.close <> b.close), count(*) FROM ml.signals s
                       JOIN market.bars b ON b.symbol = s.symbol AND b.interval = '1m' AND b.ts = s.ts
                       WHERE s.symbol = %s""",
                    (other[0],),
                ).fetchone()
            assert early[1] == 60 - 49 and early[0] > 0
        finally:
            with psycopg.connect(db_url) as conn:
                conn.execute(
                    "UPDATE ml.models SET status = 'retired', retired_at = now() WHERE name = %s", (name + "_c",)
                )
    finally:
        with psycopg.connect(db_url) as conn:
            conn.execute("UPDATE ml.models SET status = 'retired', retired_at = now() WHERE name = %s", (name,))
