"""The ml package's models and the registry: every kind's ONNX export scores exactly as scikit-learn does, through
internal.onnx_run in the server; the scaler sees the training window alone; registered versions are immutable and
one per name is active; an imported model is checked against the feature list."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from ml import data, models, train

SPX_UNTIL = "2006-12-31"


def spx(db: psycopg.Connection, until: str = SPX_UNTIL) -> data.Dataset:
    """The SPX sample's training rows up to ``until``, read through SQL (ml.training_rows)."""
    from loaders.sample import load_sample

    load_sample(db, symbols=["SPX"])
    n = db.execute("SELECT cardinality(ml.feature_names())").fetchone()[0]
    rows = db.execute(data.TRAINING_SQL.replace("$1", "%s").replace("$2", "%s").replace("$3", "%s").replace("$4", "%s"),
                      (["SPX"], "1d", "-infinity", until)).fetchall()  # fmt: skip
    return data.from_rows(rows, n)


def register(db: psycopg.Connection, est, kind: str, name: str, n_features: int) -> int:
    onnx, _output, _column, _seconds = train.export(est, kind, n_features)
    return db.execute(
        "SELECT ml.import_model(%s, ARRAY['SPX'], '1d', %s, %s, %s)", (name, onnx, kind, models.TASKS[kind])
    ).fetchone()[0]


@pytest.mark.parametrize("kind", models.KINDS)
def test_onnx_in_the_server_equals_scikit_learn(db, kind):
    ds = spx(db)
    tr, te = data.holdout(ds, 0.25, purge=1)
    est = train.fit(kind, tr)
    model_id = register(db, est, kind, f"t-onnx-{kind.replace('_', '-')}", ds.X.shape[1])
    want = train.predict(est, kind, te.X)
    got = np.asarray(
        db.execute(
            "SELECT internal.onnx_run(%s, %s, %s)", (model_id, te.X.astype(np.float64).ravel().tolist(), te.X.shape[1])
        ).fetchone()[0]
    )
    assert len(got) == len(te) > 400
    assert np.max(np.abs(got - want)) <= 1e-5
    if models.TASKS[kind] == "direction":
        assert 0.2 < want.min() and want.max() < 0.9  # real probabilities, not a constant
    else:  # decision_function: lower = more anomalous; the fitted threshold puts some test rows below 0
        assert (want < 0).any() and (want > 0).any()


def test_the_scaler_is_fit_on_the_training_window_alone(db):
    ds = spx(db)
    tr, te = data.holdout(ds, 0.2, purge=1)
    assert max(tr.t) < min(te.t) - 1  # time-ordered, one purged bar between
    est = train.fit("logreg", tr)
    scaler = est.named_steps["scale"]
    np.testing.assert_allclose(scaler.mean_, tr.X.astype(np.float64).mean(axis=0), rtol=1e-6, atol=1e-9)
    assert not np.allclose(scaler.mean_, ds.X.astype(np.float64).mean(axis=0), rtol=1e-6, atol=1e-9)
    # and the held-out result of fit_evaluate reports exactly that split
    _, res = train.fit_evaluate("logreg", ds, {"test_fraction": 0.2})
    assert (res["n_train"], res["n_test"]) == (len(tr), len(te))
    assert res["train_until"] < res["test_from"]


def test_walk_forward_folds_never_train_on_what_they_test():
    folds = data.walk_forward_folds(100, train=40, test=20, purge=2)
    assert folds == [(0, 42, 62), (20, 62, 82), (40, 82, 100)]
    for s, test_start, _ in folds:
        assert s + 40 == test_start - 2  # training ends purge bars before the test


def test_registered_versions_are_immutable_and_one_is_active(db):
    ds = spx(db)
    est = train.fit("logreg", ds)
    v1 = register(db, est, "logreg", "t-registry", ds.X.shape[1])
    v2 = register(db, est, "logreg", "t-registry", ds.X.shape[1])
    assert db.execute("SELECT array_agg(version ORDER BY id) FROM ml.models WHERE id IN (%s, %s)", (v1, v2)).fetchone()[
        0
    ] == [1, 2]
    db.execute("SELECT ml.activate('t-registry', 1)")
    db.execute("SELECT ml.activate('t-registry', 2)")
    status = dict(db.execute("SELECT version, status FROM ml.models WHERE name = 't-registry'").fetchall())
    assert status == {1: "retired", 2: "active"}
    # each failure below in a savepoint, so the test's transaction goes on
    with pytest.raises(psycopg.Error) as exc, db.transaction():
        db.execute("UPDATE ml.models SET onnx = '\\x00' WHERE id = %s", (v2,))
    assert exc.value.sqlstate == "ML001"
    with pytest.raises(psycopg.errors.UniqueViolation), db.transaction():
        db.execute("UPDATE ml.models SET status = 'active' WHERE id = %s", (v1,))
    with pytest.raises(psycopg.Error) as exc, db.transaction():
        db.execute("SELECT ml.activate('t-registry', 9)")
    assert exc.value.sqlstate == "ML104"
    db.execute("SELECT ml.retire('t-registry', 2)")
    assert (
        db.execute("SELECT count(*) FROM ml.models WHERE name = 't-registry' AND status = 'active'").fetchone()[0] == 0
    )
    assert db.execute("SELECT count(*) FROM ml.models WHERE name = 't-registry'").fetchone()[0] == 2  # old ones stay


def test_import_rejects_a_wrong_input_width_and_bytes_that_are_no_model(db):
    from sklearn.linear_model import LogisticRegression

    ds = spx(db)
    narrow = LogisticRegression().fit(ds.X[:, :5], ds.y)
    onnx, _, _, _ = train.export(narrow, "logreg", 5)
    with pytest.raises(psycopg.Error) as exc, db.transaction():
        db.execute("SELECT ml.import_model('t-narrow', ARRAY['SPX'], '1d', %s)", (onnx,))
    assert exc.value.sqlstate == "ML107"
    assert "15 features" in exc.value.diag.message_primary and "ret_1" in exc.value.diag.message_detail
    with pytest.raises(psycopg.Error) as exc, db.transaction():
        db.execute("SELECT ml.import_model('t-junk', ARRAY['SPX'], '1d', %s)", (b"not an onnx model",))
    assert exc.value.sqlstate == "ML106"
    assert db.execute("SELECT count(*) FROM ml.models WHERE name IN ('t-narrow', 't-junk')").fetchone()[0] == 0


def test_import_registers_a_checked_candidate(db):
    ds = spx(db)
    est = train.fit("rf", ds, {"n_estimators": 20})
    model_id = register(db, est, "rf", "t-imported", ds.X.shape[1])
    row = db.execute(
        "SELECT status, origin, output_name, output_column, features = ml.feature_names() FROM ml.models WHERE id = %s",
        (model_id,),
    ).fetchone()
    assert row == ("candidate", "imported", "probabilities", 1, True)
