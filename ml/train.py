"""Fit, evaluate out of sample, export: the one training path, used by the server (``internal.train_model`` and
``internal.evaluate_model``, PL/Python) and by clients (tests, bench/ml_train_bench.py) alike."""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from . import data, metrics
from .models import TASKS, make_estimator
from .onnx_export import to_onnx

#: held-out final share of a training window (time-ordered) when the model's params do not say
DEFAULT_TEST_FRACTION = 0.2
DEFAULT_BUY, DEFAULT_SELL = 0.55, 0.45


def thresholds(params: dict[str, Any]) -> tuple[float, float]:
    return float(params.get("buy_threshold", DEFAULT_BUY)), float(params.get("sell_threshold", DEFAULT_SELL))


def predict(estimator, kind: str, X: np.ndarray) -> np.ndarray:
    """The number the database scores: P(up) for a direction model, decision_function (lower = more anomalous,
    below 0 = an outlier by the fitted threshold) for isolation_forest."""
    X = np.asarray(X, dtype=np.float32)
    if TASKS[kind] == "direction":
        return estimator.predict_proba(X)[:, 1]
    return estimator.decision_function(X)


def fit(kind: str, ds: data.Dataset, params: dict[str, Any] | None = None):
    """A fitted estimator of ``kind`` on every row of ``ds`` (labels unused by an anomaly model)."""
    est = make_estimator(kind, params)
    if TASKS[kind] == "direction":
        if len(np.unique(ds.y)) < 2:
            raise ValueError("the training rows hold a single direction: nothing to learn")
        est.fit(ds.X, ds.y)
    else:
        est.fit(ds.X)
    return est


def score_window(kind: str, p: np.ndarray, test: data.Dataset, params: dict[str, Any]) -> dict[str, Any]:
    """Out-of-sample metrics of outputs ``p`` on the rows of ``test``."""
    if TASKS[kind] == "direction":
        buy, sell = thresholds(params)
        return metrics.evaluate(test.y, p, test.fwd, test.symbols, buy=buy, sell=sell)
    return {
        "n": int(len(p)),
        "outlier_share": float(np.mean(p < 0)) if len(p) else None,
        "score_p01": float(np.quantile(p, 0.01)) if len(p) else None,
        "score_median": float(np.median(p)) if len(p) else None,
    }


def fit_evaluate(
    kind: str,
    ds: data.Dataset,
    params: dict[str, Any] | None = None,
    *,
    score_other: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Fit on the earlier part of ``ds`` and evaluate on its held-out final part (time-ordered, purged by the
    horizon); ``score_other`` (e.g. the active version through ONNX) is scored on the same test rows. Returns the
    estimator fit on the training part and a result dict (metrics, baselines, other_metrics, windows, timings)."""
    params = dict(params or {})
    test_fraction = float(params.get("test_fraction", DEFAULT_TEST_FRACTION))
    train_ds, test_ds = data.holdout(ds, test_fraction, purge=1)
    cpu0, wall0, rss0 = time.process_time(), time.perf_counter(), _maxrss_kb()
    est = fit(kind, train_ds, params)
    fit_seconds = time.perf_counter() - wall0
    p = predict(est, kind, test_ds.X)
    result: dict[str, Any] = {
        "kind": kind,
        "task": TASKS[kind],
        "n_train": len(train_ds),
        "n_test": len(test_ds),
        "train_from": str(train_ds.ts[0]),
        "train_until": str(train_ds.ts[-1]),
        "test_from": str(test_ds.ts[0]),
        "test_until": str(test_ds.ts[-1]),
        "metrics": score_window(kind, p, test_ds, params),
        "baselines": {},
        "other_metrics": None,
        "fit_seconds": fit_seconds,
    }
    if TASKS[kind] == "direction":
        result["baselines"] = metrics.baselines(
            test_ds.y, test_ds.X[:, 0].astype(np.float64), test_ds.fwd, test_ds.symbols
        )
    if score_other is not None:
        result["other_metrics"] = score_window(kind, np.asarray(score_other(test_ds.X)), test_ds, params)
    result["cpu_seconds"] = time.process_time() - cpu0
    result["maxrss_kb_before"], result["maxrss_kb_after"] = rss0, _maxrss_kb()
    return est, result


def export(est, kind: str, n_features: int) -> tuple[bytes, str, int, float]:
    """ONNX bytes, the output the database scores, its column (P(up) = probabilities[:, 1]; an anomaly model's
    scores[:, 0] = decision_function) and the seconds the export took."""
    t0 = time.perf_counter()
    onnx, output = to_onnx(est, n_features)
    column = 1 if TASKS[kind] == "direction" else 0
    return onnx, output, column, time.perf_counter() - t0


def walk_forward(
    kind: str, ds: data.Dataset, params: dict[str, Any] | None, *, train: int, test: int, purge: int
) -> dict[str, Any]:
    """Walk-forward out of sample: refit on each rolling window of ``train`` timestamps, predict the next ``test``
    (after a gap of ``purge``); the metrics are over all the test predictions together, beside the baselines on the
    same rows."""
    params = dict(params or {})
    n_t = int(ds.t.max()) + 1 if len(ds) else 0
    folds = data.walk_forward_folds(n_t, train, test, purge)
    if not folds:
        raise ValueError(f"too few bars for one fold: {n_t} timestamps, train {train} + purge {purge} + test")
    ps, masks = [], np.zeros(len(ds), dtype=bool)
    t0 = time.perf_counter()
    for train_start, test_start, test_end in folds:
        tr = ds.take((ds.t >= train_start) & (ds.t < test_start - purge))
        te_mask = (ds.t >= test_start) & (ds.t < test_end)
        est = fit(kind, tr, params)
        ps.append(predict(est, kind, ds.X[te_mask]))
        masks |= te_mask
    oos = ds.take(masks)  # folds are consecutive and disjoint, in time order: predictions line up with oos rows
    p = np.concatenate(ps)
    out = {
        "kind": kind,
        "folds": len(folds),
        "train": train,
        "test": test,
        "purge": purge,
        "n_test": len(oos),
        "test_from": str(oos.ts[0]),
        "test_until": str(oos.ts[-1]),
        "metrics": score_window(kind, p, oos, params),
        "baselines": {},
        "seconds": time.perf_counter() - t0,
    }
    if TASKS[kind] == "direction":
        out["baselines"] = metrics.baselines(oos.y, oos.X[:, 0].astype(np.float64), oos.fwd, oos.symbols)
    return out


def _maxrss_kb() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


# ---------------------------------------------------------------------------------------------- in the server
def _server_dataset(plpy, symbols, interval, train_from, train_until) -> data.Dataset:
    n_features = plpy.execute("SELECT cardinality(ml.feature_names()) AS n")[0]["n"]
    plan = plpy.prepare(data.TRAINING_SQL, data.TRAINING_TYPES)
    rows = plpy.execute(plan, [symbols, interval, train_from, train_until])
    return data.from_rows(((r["symbol"], r["ts"], r["x"], r["fwd_return"], r["up"]) for r in rows), n_features)


def train_in_server(plpy, kind, symbols, interval, train_from, train_until, params_json, compare_id):
    """Body of internal.train_model: fit and evaluate in this backend (one BLAS thread), export to ONNX; the
    version ``compare_id`` (if any) is scored through internal.onnx_run on the same test rows."""
    from threadpoolctl import threadpool_limits

    params = json.loads(params_json or "{}")
    ds = _server_dataset(plpy, symbols, interval, train_from or "-infinity", train_until or "infinity")
    n_features = ds.X.shape[1]
    score_other = None
    if compare_id is not None:
        run = plpy.prepare("SELECT internal.onnx_run($1, $2, $3) AS p", ["bigint", "float8[]", "integer"])

        def score_other(X):
            return np.asarray(
                plpy.execute(run, [compare_id, X.astype(np.float64).ravel().tolist(), n_features])[0]["p"]
            )

    with threadpool_limits(limits=1):
        est, result = fit_evaluate(kind, ds, params, score_other=score_other)
        onnx, output, column, export_seconds = export(est, kind, n_features)
    result["export_seconds"] = export_seconds
    result["onnx_bytes"] = len(onnx)
    return onnx, output, column, json.dumps(result)


def evaluate_in_server(plpy, kind, symbols, interval, until, params_json, train, test, purge):
    """Body of internal.evaluate_model: walk-forward evaluation over the history up to ``until``."""
    from threadpoolctl import threadpool_limits

    params = json.loads(params_json or "{}")
    ds = _server_dataset(plpy, symbols, interval, "-infinity", until or "infinity")
    with threadpool_limits(limits=1):
        return json.dumps(walk_forward(kind, ds, params, train=train, test=test, purge=purge))
