"""A seeded synthetic market: a random walk with drift, volatility and occasional jumps, calibrated to a real series.

Calibration (``calibrate``) reads a real close series (by default the S&P 500 daily closes, from market.bars or
the bundled ``data/SPX_1d.csv.gz``) and splits its log returns into diffusion and jumps: a return further than
4 robust standard deviations (1.4826 x MAD) from the median is a jump. Drift and volatility come from the other
returns; the jump rate is the share of jump days, jump sizes their mean and spread. Everything is scaled from one
trading day (390 minutes) to one minute: drift / 390, volatility / sqrt(390), jump rate / 390, and jump sizes
/ sqrt(390) (so a jump stays as many standard deviations away as it was in the daily series).

``SyntheticMarket.ticks()`` then emits, for every symbol, ``updates_per_minute`` updates of the bar of the
current minute: each is the *forming* bar (open fixed at the previous close, high/low/close/volume so far), so
the database sees the same (symbol, 1m, ts) bar corrected several times before the walk rolls to the next minute.
Each symbol has its own start price and volatility multiplier drawn from the seed. Same seed, same ticks.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import psycopg

from pgtrade.errors import PgtradeError
from pgtrade.ingest import Bar

MINUTES_PER_DAY = 390


@dataclass(frozen=True, kw_only=True)
class Calibration:
    """Per-minute parameters of the walk, and where they came from."""

    source: str
    returns: int
    drift: float
    vol: float
    jump_rate: float
    jump_mean: float
    jump_std: float


@dataclass(frozen=True, slots=True)
class Tick:
    """One update: ``offset`` seconds of simulated time after the first minute's start; ``bar`` None = wake-up."""

    offset: float
    bar: Bar | None


def calibrate(closes: Sequence[float], *, source: str, minutes_per_step: int = MINUTES_PER_DAY) -> Calibration:
    c = np.asarray([float(x) for x in closes if x is not None and float(x) > 0], dtype=float)
    if len(c) < 30:
        raise PgtradeError(f"cannot calibrate on {source}: {len(c)} usable closes (need at least 30)")
    r = np.diff(np.log(c))
    med = float(np.median(r))
    robust = 1.4826 * float(np.median(np.abs(r - med))) or float(np.std(r)) or 1e-4
    jumps = np.abs(r - med) > 4 * robust
    diffusive = r[~jumps]
    scale = math.sqrt(minutes_per_step)
    return Calibration(
        source=source,
        returns=len(r),
        drift=float(np.mean(diffusive)) / minutes_per_step,
        vol=float(np.std(diffusive)) / scale,
        jump_rate=float(jumps.mean()) / minutes_per_step,
        jump_mean=(float(np.mean(r[jumps])) if jumps.any() else 0.0) / scale,
        jump_std=(float(np.std(r[jumps])) if jumps.sum() > 1 else robust * 4) / scale,
    )


def calibrate_from(conn: psycopg.Connection | None, symbol: str = "SPX") -> Calibration:
    """Calibrate on ``symbol``'s stored daily closes, else on its bundled file (data/manifest.json)."""
    symbol = symbol.upper()
    if conn is not None:
        rows = conn.execute(
            "SELECT close FROM market.bars WHERE symbol = %s AND interval = '1d' ORDER BY ts", (symbol,)
        ).fetchall()
        if len(rows) >= 30:
            return calibrate([r[0] for r in rows], source=f"{symbol} 1d closes in market.bars ({len(rows)})")
    from .csv_loader import read_csv
    from .sample import DATA_DIR, manifest

    series = next((s for s in manifest() if s.symbol == symbol and s.interval == "1d"), None)
    if series is None:
        raise PgtradeError(f"no daily history of {symbol} to calibrate on (load it, or use SPX)")
    closes = [b.close for b in read_csv(DATA_DIR / series.file, symbol=symbol, interval="1d") if isinstance(b, Bar)]
    return calibrate(closes, source=f"{symbol} 1d closes in data/{series.file} ({len(closes)})")


class SyntheticMarket:
    """Deterministic forming-bar updates for ``symbols`` from ``start`` (an aligned minute, aware)."""

    def __init__(
        self,
        symbols: Sequence[str],
        calibration: Calibration,
        *,
        start: datetime,
        seed: int | None = 0,
        updates_per_minute: int = 6,
        interval: str = "1m",
    ):
        if updates_per_minute < 1:
            raise PgtradeError("updates per minute must be at least 1")
        if interval != "1m":
            raise PgtradeError("the synthetic feed makes 1m bars (the rollups give the longer intervals)")
        self.symbols = [s.upper() for s in symbols]
        self.cal = calibration
        self.start = start
        self.k = updates_per_minute
        self.interval = interval
        self._rng = np.random.default_rng(seed)
        n = len(self.symbols)
        self.prices = np.round(self._rng.uniform(20, 500, n), 2)
        self.vol_mult = self._rng.uniform(0.5, 2.0, n)

    def ticks(self) -> Iterator[Tick]:
        cal, k, rng = self.cal, self.k, self._rng
        sub_drift, sub_vol, sub_jump = cal.drift / k, cal.vol / math.sqrt(k), cal.jump_rate / k
        price = self.prices.copy()
        minute = 0
        while True:
            ts = self.start + timedelta(minutes=minute)
            opens = price.copy()
            highs, lows = opens.copy(), opens.copy()
            volume = np.zeros(len(price), dtype=np.int64)
            for j in range(k):
                z = rng.standard_normal(len(price))
                jump = np.where(
                    rng.random(len(price)) < sub_jump, rng.normal(cal.jump_mean, cal.jump_std, len(price)), 0.0
                )
                price = np.maximum(np.round(price * np.exp(sub_drift + sub_vol * self.vol_mult * z + jump), 2), 0.01)
                highs, lows = np.maximum(highs, price), np.minimum(lows, price)
                volume += rng.integers(100, 5000, len(price))
                offset = minute * 60 + (j + 1) * 60 / k
                for i, sym in enumerate(self.symbols):
                    yield Tick(
                        offset,
                        Bar(
                            symbol=sym,
                            interval=self.interval,
                            ts=ts,
                            open=float(opens[i]),
                            high=float(highs[i]),
                            low=float(lows[i]),
                            close=float(price[i]),
                            volume=int(volume[i]),
                        ),
                    )
            minute += 1
