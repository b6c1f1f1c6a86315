"""Training inside the database (ml.train -> internal.train_model, the ml package loaded from
internal.python_modules) and the retraining decisions: a version that cannot beat the active one and the naive
baselines stays a candidate, one that does becomes active, a failing run is recorded as failed; the daily job runs
through pg_cron as pgtrade_jobs."""

from __future__ import annotations

import uuid

import numpy as np
import psycopg
import pytest
from ml_series import daily_series, pattern, random_walk
from psycopg.rows import dict_row

from ml import data, train

SQL = data.TRAINING_SQL.replace("$1", "%s").replace("$2", "%s").replace("$3", "%s").replace("$4", "%s")


def runs(db: psycopg.Connection, name: str) -> list[dict]:
    return (
        db.cursor(row_factory=dict_row)
        .execute("SELECT * FROM ml.training_runs WHERE name = %s ORDER BY id", (name,))
        .fetchall()
    )


def model(db: psycopg.Connection, name: str, version: int) -> dict:
    return (
        db.cursor(row_factory=dict_row)
        .execute("SELECT * FROM ml.models WHERE name = %s AND version = %s", (name, version))
        .fetchone()
    )


def test_the_server_trains_with_the_same_ml_code_as_a_client(db):
    """ml.train fits in the server; the same ml code fit in this client on the same SQL rows gives the same model
    (its ONNX, scored in the server, equals the client's scikit-learn within 1e-5), so nothing differs between
    the two paths."""
    from loaders.sample import load_sample

    load_sample(db, symbols=["SPX"])
    run = (
        db.cursor(row_factory=dict_row)
        .execute("SELECT * FROM ml.train('t-server-gbm', 'gbm', ARRAY['SPX'], '1d', '2001-01-01', '2005-12-31')")
        .fetchone()
    )
    assert run["decision"] == "candidate", run["reason"]
    m = model(db, "t-server-gbm", 1)
    assert (m["status"], m["origin"], m["task"], m["output_name"], m["output_column"]) == (
        "candidate", "trained", "direction", "probabilities", 1)  # fmt: skip
    assert db.execute(
        "SELECT train_until < (metrics->>'test_from')::timestamptz FROM ml.models WHERE id = %s", (m["id"],)
    ).fetchone()[0]
    for key in ("accuracy", "balanced_accuracy", "auc", "net_return"):
        assert m["metrics"][key] is not None
    assert set(m["baselines"]) == {"always_up", "yesterday", "buy_and_hold"}
    assert run["metrics"]["maxrss_kb_after"] > 0 and run["metrics"]["fit_seconds"] > 0
    # the client path on the same rows
    n = db.execute("SELECT cardinality(ml.feature_names())").fetchone()[0]
    ds = data.from_rows(db.execute(SQL, (["SPX"], "1d", "2001-01-01", "2005-12-31")).fetchall(), n)
    est, res = train.fit_evaluate("gbm", ds, {})
    assert (res["n_train"], res["n_test"]) == (run["metrics"]["n_train"], run["metrics"]["n_test"])
    _, te = data.holdout(ds, train.DEFAULT_TEST_FRACTION, purge=1)
    got = np.asarray(
        db.execute(
            "SELECT internal.onnx_run(%s, %s, %s)", (m["id"], te.X.astype(np.float64).ravel().tolist(), n)
        ).fetchone()[0]
    )
    assert np.max(np.abs(got - train.predict(est, "gbm", te.X))) <= 1e-5
    assert res["metrics"]["net_return"] == pytest.approx(m["metrics"]["net_return"], abs=1e-12)


def test_bad_training_input_gets_a_clear_error(db):
    for args, code in [
        (("t-bad", "svm", ["SPX"], "1d"), "ML101"),
        (("t-bad", "logreg", ["NOSUCHSYM"], "1d"), "ML103"),
        (("t-bad", "logreg", ["SPX"], "7m"), "ML103"),
    ]:
        with pytest.raises(psycopg.Error) as exc, db.transaction():
            db.execute("SELECT * FROM ml.train(%s, %s, %s, %s)", args)
        assert exc.value.sqlstate == code, args
        assert exc.value.diag.message_hint


def test_a_failing_run_is_recorded_as_failed(db):
    sym = f"T{uuid.uuid4().hex[:8].upper()}"
    daily_series(db, sym, pattern(200, [0.005]))  # every bar up: a single direction, nothing to learn
    run = db.execute("SELECT decision, reason FROM ml.train('t-fail', 'logreg', %s, '1d')", ([sym],)).fetchone()
    assert run[0] == "failed" and run[1].startswith("ML102") and "single direction" in run[1]
    assert db.execute("SELECT count(*) FROM ml.models WHERE name = 't-fail'").fetchone()[0] == 0


def test_the_job_records_a_failing_retraining_and_goes_on(db):
    """An active model whose params the estimator refuses: the job's run of it fails, is recorded with the error,
    and the other active models are still retrained."""
    sym = f"T{uuid.uuid4().hex[:8].upper()}"
    daily_series(db, sym, random_walk(400, seed=7))
    db.execute("SELECT ml.train('t-ok', 'logreg', %s, '1d', params => '{\"window_bars\": 300}', activate => 'always')",
               ([sym],))  # fmt: skip
    onnx = model(db, "t-ok", 1)["onnx"]
    db.execute(
        "SELECT ml.import_model('t-badparams', %s, '1d', %s, 'logreg', params => '{\"C\": -1}')", ([sym], bytes(onnx))
    )
    db.execute("SELECT ml.activate('t-badparams', 1)")
    # a model trained elsewhere, of a kind the ml package does not know: it cannot be retrained
    db.execute("SELECT ml.import_model('t-foreign', %s, '1d', %s)", ([sym], bytes(onnx)))
    db.execute("SELECT ml.activate('t-foreign', 1)")
    before = db.execute("SELECT coalesce(max(id), 0) FROM ml.training_runs").fetchone()[0]
    assert db.execute("SELECT ml.retrain_all()").fetchone()[0] >= 3
    got = dict(
        db.execute(
            "SELECT name, decision || ': ' || reason FROM ml.training_runs WHERE id > %s AND trigger = 'schedule'"
            " AND name IN ('t-ok', 't-badparams', 't-foreign')",
            (before,),
        ).fetchall()
    )
    assert got["t-badparams"].startswith("failed: ML102"), got
    assert got["t-ok"].startswith("candidate: "), got
    assert got["t-foreign"] == "failed: ML101: unknown model kind imported", got
    assert db.execute("SELECT status FROM ml.models WHERE name = 't-foreign'").fetchone() == ("active",)


def test_a_retrained_version_that_cannot_beat_stays_candidate(db):
    sym = f"T{uuid.uuid4().hex[:8].upper()}"
    daily_series(db, sym, random_walk(700, seed=11))
    first = db.execute(
        "SELECT model_id FROM ml.train('t-noise', 'rf', %s, '1d', train_until => '2002-03-01',"
        " params => '{\"window_bars\": 400, \"n_estimators\": 50}', activate => 'always')",
        ([sym],),
    ).fetchone()[0]
    assert db.execute("SELECT ml.retrain_all()").fetchone()[0] >= 1
    last = runs(db, "t-noise")[-1]
    assert (last["trigger"], last["decision"], last["compared_to"]) == ("schedule", "candidate", first)
    assert "did not beat" in last["reason"]
    m = last["metrics"]
    assert not db.execute(
        "SELECT ml.beats(%s::jsonb -> 'metrics', %s::jsonb -> 'other_metrics', %s::jsonb -> 'baselines')",
        (psycopg.types.json.Jsonb(m),) * 3,
    ).fetchone()[0]
    assert m["other_metrics"]["n"] == m["metrics"]["n"]  # the active version scored on the same test rows
    status = dict(db.execute("SELECT version, status FROM ml.models WHERE name = 't-noise'").fetchall())
    assert status == {1: "active", 2: "candidate"}


def test_a_retrained_version_that_beats_becomes_active(db):
    """Momentum first (runs of 8 up, 8 down: yesterday's direction is right 7 times in 8), then an alternating
    series (+2 %, -1 %). Version 1, fit on the momentum regime, follows yesterday's direction, which the alternation
    makes always wrong; the job's version, fit on the rolling window of the alternation, predicts it, beats the
    active version, buy and hold and yesterday's direction out of sample, and becomes active."""
    sym = f"T{uuid.uuid4().hex[:8].upper()}"
    momentum = pattern(400, [0.01] * 8 + [-0.01] * 8)
    alternating = pattern(400, [0.02, -0.01], start=float(momentum[-1]))
    daily_series(db, sym, np.concatenate([momentum, alternating]))
    cut = db.execute(
        "SELECT ts FROM market.bars WHERE symbol = %s AND interval = '1d' ORDER BY ts OFFSET 399 LIMIT 1", (sym,)
    ).fetchone()[0]
    v1 = db.execute(
        "SELECT model_id, decision FROM ml.train('t-regime', 'logreg', %s, '1d', train_until => %s,"
        " params => '{\"window_bars\": 300}', activate => 'always')",
        ([sym], cut),
    ).fetchone()
    assert v1[1] == "activated"
    db.execute("SELECT ml.retrain_all()")
    last = runs(db, "t-regime")[-1]
    assert (last["trigger"], last["decision"], last["compared_to"]) == ("schedule", "activated", v1[0]), last["reason"]
    m = last["metrics"]
    assert m["metrics"]["balanced_accuracy"] > m["other_metrics"]["balanced_accuracy"]
    assert m["metrics"]["net_return"] > m["baselines"]["buy_and_hold"]["net_return"]
    status = dict(db.execute("SELECT version, status FROM ml.models WHERE name = 't-regime'").fetchall())
    assert status == {1: "retired", 2: "active"}
    # the rolling window: the model's window_bars (300) newest bars, up to the newest closed one
    first, newest = db.execute(
        "SELECT min(ts), max(ts) FROM (SELECT ts FROM market.bars WHERE symbol = %s AND interval = '1d'"
        " ORDER BY ts DESC LIMIT 300) x",
        (sym,),
    ).fetchone()
    assert (last["train_from"], last["train_until"]) == (first, newest)


def test_the_server_trains_the_pattern_anomaly_model(db):
    """isolation_forest: registered with output scores, column 0 (= decision_function: lower is more anomalous),
    task anomaly; its out-of-sample figures are the outlier share and score quantiles; never activated by the rule."""
    sym = f"T{uuid.uuid4().hex[:8].upper()}"
    daily_series(db, sym, random_walk(300, seed=2))
    run = db.execute(
        "SELECT decision, reason, model_id FROM ml.train('t-iforest', 'isolation_forest', %s, '1d',"
        " params => '{\"n_estimators\": 20}', activate => 'if_better')",
        ([sym],),
    ).fetchone()
    assert run[0] == "candidate" and "activated by hand" in run[1], run
    m = db.cursor(row_factory=dict_row).execute("SELECT * FROM ml.models WHERE id = %s", (run[2],)).fetchone()
    assert (m["task"], m["output_name"], m["output_column"]) == ("anomaly", "scores", 0)
    assert 0 <= m["metrics"]["outlier_share"] <= 1 and m["baselines"] == {}


def test_pg_cron_runs_the_retraining_as_pgtrade_jobs(db_url):
    """The daily job is scheduled as pgtrade_jobs; a copy of it every minute (the same command, scheduled the same
    way) really runs through pg_cron (bounded wait) and retrains a committed active model as that role."""
    from test_jobs import cron_diagnosis, wait_for_run

    name = f"t-cron-{uuid.uuid4().hex[:8]}"
    job = f"pgtrade-test-retrain-{uuid.uuid4().hex[:8]}"
    sym = f"T{uuid.uuid4().hex[:8].upper()}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        daily = conn.execute("SELECT username, schedule FROM cron.job WHERE jobname = 'pgtrade-ml-retrain'").fetchone()
        assert daily == ("pgtrade_jobs", "30 2 * * *")
        with conn.transaction():
            daily_series(conn, sym, random_walk(300, seed=5))
            conn.execute(
                "SELECT ml.train(%s, 'logreg', %s, '1d', params => '{\"window_bars\": 200}', activate => 'always')",
                (name, [sym]),
            )
        since = conn.execute("SELECT coalesce(max(runid), 0) FROM cron.job_run_details").fetchone()[0]
        with conn.transaction():
            conn.execute("SET LOCAL ROLE pgtrade_jobs")
            conn.execute("SELECT cron.schedule(%s, '* * * * *', 'SELECT ml.retrain_all()')", (job,))
        try:
            run = wait_for_run(conn, job, since, 130)
            assert run[1] == "succeeded", cron_diagnosis(conn, since)
        finally:
            with conn.transaction():
                conn.execute("SET LOCAL ROLE pgtrade_jobs")
                conn.execute("SELECT cron.unschedule(%s)", (job,))
        scheduled = conn.execute(
            "SELECT decision, compared_to IS NOT NULL FROM ml.training_runs WHERE name = %s AND trigger = 'schedule'",
            (name,),
        ).fetchall()
        assert scheduled and all(d in ("activated", "candidate") and c for d, c in scheduled), scheduled
        owner = conn.execute("SELECT username FROM cron.job_run_details WHERE runid = %s", (run[0],)).fetchone()
        assert owner == ("pgtrade_jobs",)
        conn.execute("UPDATE ml.models SET status = 'retired', retired_at = now() WHERE name = %s", (name,))
