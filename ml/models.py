"""The model kinds: what each one fits (scikit-learn) and with which default parameters."""

from __future__ import annotations

from typing import Any

#: kind -> task ('direction': P(next bar up); 'anomaly': pattern anomaly score)
TASKS: dict[str, str] = {
    "logreg": "direction",
    "gbm": "direction",
    "rf": "direction",
    "isolation_forest": "anomaly",
}
KINDS = tuple(TASKS)

#: default hyper-parameters of each kind (a model's params may override any of them)
DEFAULTS: dict[str, dict[str, Any]] = {
    "logreg": {"C": 1.0, "max_iter": 1000},
    "gbm": {"n_estimators": 100, "max_depth": 2, "learning_rate": 0.05, "subsample": 0.8},
    "rf": {"n_estimators": 200, "max_depth": 4, "min_samples_leaf": 20},
    "isolation_forest": {"n_estimators": 100, "contamination": "auto"},
}

#: keys of a model's params that are not the estimator's (how the model is trained, not what it is)
TRAINING_KEYS = ("window_bars", "test_fraction", "horizon", "buy_threshold", "sell_threshold", "seed")


def estimator_params(kind: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """The estimator's hyper-parameters: the kind's defaults updated by ``params`` (training keys left out)."""
    if kind not in TASKS:
        raise ValueError(f"unknown model kind {kind!r} (known: {', '.join(KINDS)})")
    out = dict(DEFAULTS[kind])
    out.update({k: v for k, v in (params or {}).items() if k not in TRAINING_KEYS})
    return out


def make_estimator(kind: str, params: dict[str, Any] | None = None):
    """A fresh, unfitted estimator of this kind. ``logreg`` is a Pipeline (StandardScaler, LogisticRegression): the
    scaler is fit inside ``fit`` on the training rows alone. Every kind is seeded (params ``seed``, default 0), so a
    run is repeatable."""
    from sklearn.ensemble import GradientBoostingClassifier, IsolationForest, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    hp = estimator_params(kind, params)
    seed = int((params or {}).get("seed", 0))
    if kind == "logreg":
        return Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(random_state=seed, **hp))])
    if kind == "gbm":
        return GradientBoostingClassifier(random_state=seed, **hp)
    if kind == "rf":
        # n_jobs=1: inside the server a backend must not spread over every core
        return RandomForestClassifier(random_state=seed, n_jobs=1, **hp)
    return IsolationForest(random_state=seed, n_jobs=1, **hp)
