"""Training rows as arrays, and time-ordered splits. The rows come from SQL (``ml.training_rows``: the features of
``ml.features`` joined to the labels of ``ml.labels``); nothing here computes a feature."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: the query of a training window (plpy's $n placeholders; pgtrade/cli_ml.py and tests pass the same arguments)
TRAINING_SQL = (
    "SELECT symbol, ts, x, fwd_return, up FROM ml.training_rows($1::text[], $2::text, $3::timestamptz, $4::timestamptz)"
)
TRAINING_TYPES = ["text[]", "text", "timestamptz", "timestamptz"]


@dataclass(frozen=True, kw_only=True)
class Dataset:
    """Rows in time order (ts, then symbol); ``t`` numbers the distinct timestamps 0, 1, 2..."""

    symbols: np.ndarray
    ts: list[Any]
    t: np.ndarray
    X: np.ndarray  # float32: what ONNX sees, and what scikit-learn is fit and scored on
    y: np.ndarray
    fwd: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def take(self, mask: np.ndarray) -> Dataset:
        idx = np.flatnonzero(mask)
        return Dataset(
            symbols=self.symbols[idx],
            ts=[self.ts[i] for i in idx],
            t=self.t[idx],
            X=self.X[idx],
            y=self.y[idx],
            fwd=self.fwd[idx],
        )


def from_rows(rows: Iterable[Sequence[Any]], n_features: int) -> Dataset:
    """A Dataset from (symbol, ts, x, fwd_return, up) rows already in time order."""
    syms, ts, xs, fwd, up, t = [], [], [], [], [], []
    k, last = -1, object()
    for sym, when, x, f, u in rows:
        if when != last:
            k, last = k + 1, when
        syms.append(sym)
        ts.append(when)
        xs.append(x)
        fwd.append(f)
        up.append(u)
        t.append(k)
    X = np.asarray(xs, dtype=np.float32).reshape(-1, n_features)
    return Dataset(
        symbols=np.asarray(syms, dtype=object),
        ts=ts,
        t=np.asarray(t, dtype=np.int64),
        X=X,
        y=np.asarray(up, dtype=np.int64),
        fwd=np.asarray(fwd, dtype=np.float64),
    )


def holdout(ds: Dataset, test_fraction: float, purge: int) -> tuple[Dataset, Dataset]:
    """Train on the earlier part, test on the last ``test_fraction`` of the distinct timestamps; the ``purge``
    timestamps just before the test part are dropped from training (their labels reach into the test window)."""
    n_t = int(ds.t.max()) + 1 if len(ds) else 0
    n_test = max(1, int(round(n_t * test_fraction)))
    start = n_t - n_test
    if start - purge < 1:
        raise ValueError(f"too few bars to train: {n_t} timestamps, {n_test} held out for the test")
    return ds.take(ds.t < start - purge), ds.take(ds.t >= start)


def walk_forward_folds(n_t: int, train: int, test: int, purge: int) -> list[tuple[int, int, int]]:
    """(train_start, test_start, test_end) over timestamps 0..n_t-1: train on [train_start, test_start - purge),
    test on [test_start, test_end), then roll forward by ``test`` (a rolling window of ``train`` timestamps)."""
    folds = []
    s = 0
    while s + train + purge < n_t:
        test_start = s + train + purge
        folds.append((s, test_start, min(test_start + test, n_t)))
        s += test
    return folds
