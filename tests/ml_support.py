"""Test support for the ML tables: fit a real scikit-learn estimator on ml.features rows, export it with skl2onnx and
register it in ml.models (the tests of scoring, anomalies and auto-trading need a registered model; the product's
own training path is ``ml/`` and ``pgtrade ml train``)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import numpy as np
import psycopg
from psycopg.types.json import Jsonb


def feature_rows(conn: psycopg.Connection, symbols: list[str], interval: str, until=None):
    """(X, y, ts) of the complete bars with a next-bar label, in time order."""
    rows = conn.execute(
        """SELECT f.x, l.up, f.ts FROM ml.features(%s, %s, '-infinity', coalesce(%s::timestamptz, 'infinity')) f
           JOIN ml.labels(%s, %s, '-infinity', coalesce(%s::timestamptz, 'infinity')) l USING (symbol, ts)
           WHERE f.complete ORDER BY f.ts, f.symbol""",
        (symbols, interval, until, symbols, interval, until),
    ).fetchall()
    X = np.array([r[0] for r in rows], dtype=np.float32)
    y = np.array([r[1] for r in rows], dtype=np.int64)
    return X, y, [r[2] for r in rows]


def to_onnx(estimator, n_features: int) -> tuple[bytes, str]:
    """ONNX bytes and the name of the output to score (probabilities for classifiers, scores for outlier models)."""
    from skl2onnx import to_onnx as convert
    from skl2onnx.common.data_types import FloatTensorType

    options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "predict_proba") else None
    onx = convert(
        estimator,
        initial_types=[("x", FloatTensorType([None, n_features]))],
        options=options,
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    outputs = [o.name for o in onx.graph.output]
    name = "probabilities" if "probabilities" in outputs else outputs[-1]
    return onx.SerializeToString(), name


def register_model(
    conn: psycopg.Connection,
    estimator,
    *,
    name: str,
    symbols: list[str],
    interval: str,
    task: str = "direction",
    kind: str | None = None,
    status: str = "active",
    output_column: int | None = None,
    buy_threshold: float = 0.55,
    sell_threshold: float = 0.45,
) -> int:
    """Register a fitted estimator over the current feature definition; returns its ml.models id."""
    names, version = conn.execute("SELECT ml.feature_names(), ml.feature_version()").fetchone()
    onnx, output = to_onnx(estimator, len(names))
    if output_column is None:
        output_column = 1 if output == "probabilities" else 0
    model_id, model_version = conn.execute(
        """INSERT INTO ml.models (name, version, task, kind, symbols, interval, feature_version, features,
                                  output_name, output_column, onnx, onnx_sha256, status, params,
                                  buy_threshold, sell_threshold)
           VALUES (%s, (SELECT coalesce(max(version), 0) + 1 FROM ml.models WHERE name = %s), %s, %s, %s, %s, %s, %s,
                   %s, %s, %s, %s, %s, %s, %s, %s)
           RETURNING id, version""",
        (
            name,
            name,
            task,
            kind or type(estimator).__name__,
            symbols,
            interval,
            version,
            names,
            output,
            output_column,
            onnx,
            hashlib.sha256(onnx).hexdigest(),
            "candidate" if status == "active" else status,
            Jsonb({}),
            buy_threshold,
            sell_threshold,
        ),
    ).fetchone()
    if status == "active":  # the registry's own rule: the version before it is retired
        conn.execute("SELECT ml.activate(%s, %s)", (name, model_version))
    return model_id


def toy_model(seed: int = 3):
    """A real logistic regression on a seeded toy problem (up when ret_1 > 0): live-path tests need a model whose
    outputs vary with the bars, not one with skill."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    X = rng.normal(0, 1, (400, 15)).astype(np.float32) * 0.002
    y = (X[:, 0] + rng.normal(0, 0.001, 400) > 0).astype(np.int64)
    return LogisticRegression(C=1e4).fit(X, y)


def walk(sym: str, n: int, start: datetime, *, seed: int = 5, places: int = 2) -> list:
    """n consecutive 1m bars of a seeded random walk from start, prices written with `places` decimals."""
    from pgtrade.ingest import Bar

    rng = np.random.default_rng(seed)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    out = []
    for i in range(n):
        o = c[i - 1] if i else c[0]
        hi, lo = max(o, c[i]) * 1.001, min(o, c[i]) * 0.999
        out.append(
            Bar(
                sym,
                "1m",
                start + timedelta(minutes=i),
                f"{o:.{places}f}",
                f"{hi:.{places}f}",
                f"{lo:.{places}f}",
                f"{c[i]:.{places}f}",
                str(int(rng.integers(100, 5000))),
            )
        )
    return out
