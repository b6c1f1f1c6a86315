"""The real OHLCV history bundled under ``data/`` (see data/SOURCES.md), loaded through the ingest path."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import psycopg

from pgtrade.errors import PgtradeError
from pgtrade.ingest import IngestReport
from pgtrade.logs import event

from .csv_loader import load_csv

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
log = logging.getLogger("pgtrade.loaders.sample")


@dataclass(frozen=True, kw_only=True)
class SampleSeries:
    symbol: str
    name: str
    asset_class: str
    currency: str
    exchange: str | None
    interval: str
    file: str
    rows: int


def manifest(data_dir: Path = DATA_DIR) -> list[SampleSeries]:
    path = data_dir / "manifest.json"
    if not path.is_file():
        raise PgtradeError(f"sample data manifest not found at {path}")
    fields = SampleSeries.__dataclass_fields__
    return [SampleSeries(**{k: v for k, v in entry.items() if k in fields}) for entry in json.loads(path.read_text())]


def register_instrument(
    conn: psycopg.Connection,
    *,
    symbol: str,
    name: str | None,
    asset_class: str,
    currency: str = "USD",
    exchange: str | None = None,
) -> None:
    """Register (or update) an instrument; its session and quantity step are its asset class's
    (``market.asset_classes``), exactly as an auto-registration by any loader gives them."""
    conn.execute(
        "SELECT market.upsert_instrument(%s::text, %s::text, %s::text, %s::text, %s::text)",
        (symbol, name, asset_class, currency, exchange),
    )


def load_sample(
    conn: psycopg.Connection, *, symbols: list[str] | None = None, data_dir: Path = DATA_DIR, progress=None
) -> IngestReport:
    """Register the sample instruments and load their bars; ``progress(series, report)`` after each file."""
    report = IngestReport()
    chosen = [s for s in manifest(data_dir) if not symbols or s.symbol in symbols]
    if symbols and not chosen:
        raise PgtradeError(f"no sample series for {', '.join(symbols)} (see data/manifest.json)")
    for series in chosen:
        with conn.transaction():
            register_instrument(
                conn,
                symbol=series.symbol,
                name=series.name,
                asset_class=series.asset_class,
                currency=series.currency,
                exchange=series.exchange,
            )
        part = load_csv(
            conn, data_dir / series.file, symbol=series.symbol, interval=series.interval, source=f"sample:{series.file}"
        )
        report.merge(part)
        event(
            log, "sample.series", symbol=series.symbol, interval=series.interval, file=series.file, **vars(part.total)
        )
        if progress:
            progress(series, part)
    return report
