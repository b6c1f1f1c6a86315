"""Out-of-sample metrics of a direction model, beside naive baselines, and the return of trading its signals.

Trading convention (the one every figure of docs/ml.md uses):

- long or flat, never short (the platform's positions cannot go short);
- the position is decided at the close of bar t from that bar's signal and held over the next bar, earning the log
  return from close t to close t+1 (``ml.labels``' fwd_return): BUY -> long, SELL -> flat, HOLD keeps the position;
- every change of position costs ``cost`` of the traded value (default 10 basis points per side: entering and
  leaving a position costs 0.2 % in all), subtracted as a log return;
- a model pooled over several symbols trades each symbol with capital of its own; its return is the mean of the
  symbols' returns. Net return = exp(sum of the bar log returns net of costs) - 1.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: cost of a change of position, as a fraction of the traded value (10 bps per side)
DEFAULT_COST = 0.001


def classification(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """Accuracy and balanced accuracy of ``p >= 0.5`` as the prediction of ``y``, and the AUC of ``p`` as a score
    (None when the test window holds a single class)."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

    y = np.asarray(y, dtype=np.int64)
    pred = (np.asarray(p) >= 0.5).astype(np.int64)
    auc = roc_auc_score(y, p) if len(np.unique(y)) == 2 else None
    return {
        "n": int(len(y)),
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)) if len(np.unique(y)) == 2 else None,
        "auc": None if auc is None else float(auc),
        "up_rate": float(y.mean()) if len(y) else None,
    }


def positions(p: np.ndarray, symbols: np.ndarray, buy: float, sell: float) -> np.ndarray:
    """Long (1) or flat (0) after each bar: BUY (p >= buy) enters, SELL (p <= sell) leaves, HOLD keeps; each symbol
    starts flat. Rows are in time order within each symbol."""
    pos = np.zeros(len(p))
    for sym in np.unique(symbols):
        idx = np.flatnonzero(symbols == sym)
        held = 0.0
        for i in idx:
            if p[i] >= buy:
                held = 1.0
            elif p[i] <= sell:
                held = 0.0
            pos[i] = held
    return pos


def trading(pos: np.ndarray, fwd: np.ndarray, symbols: np.ndarray, cost: float = DEFAULT_COST) -> dict[str, Any]:
    """Net return of holding ``pos`` over each next bar, per the module's convention; also the share of bars held
    and the number of changes of position (entries and exits)."""
    totals, changes = [], 0
    for sym in np.unique(symbols):
        idx = np.flatnonzero(symbols == sym)
        ps = pos[idx]
        turnover = np.abs(np.diff(np.concatenate([[0.0], ps])))
        changes += int(np.count_nonzero(turnover))
        totals.append(float(np.sum(ps * fwd[idx]) - cost * np.sum(turnover)))
    net = float(np.mean([math.expm1(t) for t in totals])) if totals else None
    return {"net_return": net, "exposure": float(np.mean(pos)) if len(pos) else None, "trades": changes}


def evaluate(
    y: np.ndarray,
    p: np.ndarray,
    fwd: np.ndarray,
    symbols: np.ndarray,
    *,
    buy: float,
    sell: float,
    cost: float = DEFAULT_COST,
) -> dict[str, Any]:
    """Classification metrics and the net return of trading the signals of P(up) = ``p``."""
    out = classification(y, p)
    out.update(trading(positions(p, symbols, buy, sell), fwd, symbols, cost))
    return out


def baselines(
    y: np.ndarray, ret_1: np.ndarray, fwd: np.ndarray, symbols: np.ndarray, cost: float = DEFAULT_COST
) -> dict[str, dict[str, Any]]:
    """The naive baselines on the same rows: always up (predicts up; trades as buy and hold), yesterday's direction
    (predicts the last bar's direction, scored by its return; long after an up bar, flat after a down bar), and buy
    and hold (long from the first bar to the last, one entry cost)."""
    ones = np.ones(len(y))
    always_up = classification(y, ones)
    always_up["auc"] = 0.5 if always_up["auc"] is not None else None
    hold = trading(ones, fwd, symbols, cost)
    always_up.update(hold)
    yesterday = classification(y, np.where(ret_1 > 0, 1.0, 0.0))
    if yesterday["auc"] is not None:
        from sklearn.metrics import roc_auc_score

        yesterday["auc"] = float(roc_auc_score(np.asarray(y, dtype=np.int64), ret_1))
    yesterday.update(trading(np.where(ret_1 > 0, 1.0, 0.0), fwd, symbols, cost))
    return {"always_up": always_up, "yesterday": yesterday, "buy_and_hold": dict(hold)}
