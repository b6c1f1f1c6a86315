"""Synthetic daily series for the ML tests (H1): closes given, OHLC and volume derived, committed or not."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import psycopg
from trading_support import bars, instrument

START = datetime(2001, 1, 1, tzinfo=UTC)


def daily_series(conn: psycopg.Connection, symbol: str, closes, *, start: datetime = START) -> None:
    """Register ``symbol`` (trades every day) and ingest one daily bar per close from ``start``."""
    instrument(conn, symbol, session_open=None, session_close=None, trades_weekends=True, session_tz="UTC",
               asset_class="crypto", qty_step="0.0001")  # fmt: skip
    rows, prev = [], float(closes[0])
    for i, c in enumerate(closes):
        c = float(c)
        o = prev
        rows.append(
            (f"{o:.6f}", f"{max(o, c) * 1.002:.6f}", f"{min(o, c) * 0.998:.6f}", f"{c:.6f}", 1000 + 37 * (i % 11))
        )
        prev = c
    bars(conn, symbol, rows, interval="1d", start=start)


def random_walk(n: int, seed: int, *, sigma: float = 0.01, start: float = 100.0) -> np.ndarray:
    """Closes of a driftless Gaussian random walk in log price (seeded: the same series every run)."""
    rng = np.random.default_rng(seed)
    return start * np.exp(np.cumsum(rng.normal(0.0, sigma, n)))


def pattern(n: int, steps, *, start: float = 100.0) -> np.ndarray:
    """Closes whose log returns repeat ``steps`` (e.g. [+0.02, -0.01]: up, down, up, down...)."""
    r = np.resize(np.asarray(steps, dtype=float), n)
    return start * np.exp(np.cumsum(r))
