"""The client side of the one ingest path: every loader and the live feed send bars through ``ingest``.

Rows are COPYed (binary) into the session's ``pg_temp.bars_staging`` and ``market.ingest_staged`` validates,
records rejects and upserts, all in one transaction. The rules live in SQL; this module only moves rows.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from itertools import islice

import psycopg
from psycopg.types.json import Jsonb

Number = Decimal | float | int | str


@dataclass(frozen=True, slots=True)
class Bar:
    """One OHLCV bar, normalized: upper-case symbol, interval code, ``ts`` = bar open as an aware datetime."""

    symbol: str
    interval: str
    ts: datetime
    open: Number
    high: Number
    low: Number
    close: Number
    volume: Number = 0


@dataclass(frozen=True, slots=True)
class Unparsed:
    """Input a loader could not turn into a Bar: it is still sent, so the database records it as rejected."""

    raw: str
    problem: str
    symbol: str | None = None
    interval: str | None = None


@dataclass(kw_only=True)
class SymbolCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0

    def add(self, other: SymbolCounts) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.rejected += other.rejected


@dataclass(kw_only=True)
class IngestReport:
    """What a load did, per symbol (``None`` keys rows with no usable symbol)."""

    per_symbol: dict[str | None, SymbolCounts] = field(default_factory=dict)
    #: first and last ts of the 1-minute bars sent (what the rollups must be refreshed over; from
    #: ``market.staged_rollup_span``), or None
    minute_span: tuple[datetime, datetime] | None = None

    def merge(self, other: IngestReport) -> None:
        for sym, counts in other.per_symbol.items():
            self.per_symbol.setdefault(sym, SymbolCounts()).add(counts)
        if other.minute_span:
            lo, hi = other.minute_span
            if self.minute_span:
                lo, hi = min(lo, self.minute_span[0]), max(hi, self.minute_span[1])
            self.minute_span = (lo, hi)

    @property
    def total(self) -> SymbolCounts:
        tot = SymbolCounts()
        for c in self.per_symbol.values():
            tot.add(c)
        return tot

    def as_dict(self) -> dict:
        return {
            "total": vars(self.total),
            "symbols": {str(k): vars(v) for k, v in sorted(self.per_symbol.items(), key=lambda kv: str(kv[0]))},
        }


_COPY = (
    "COPY pg_temp.bars_staging (symbol, interval, ts, open, high, low, close, volume, raw, problem) "
    "FROM STDIN (FORMAT BINARY)"
)
_TYPES = ["text", "text", "timestamptz", "numeric", "numeric", "numeric", "numeric", "numeric", "text", "text"]


def _num(v: Number | None) -> Decimal | None:
    """Exact decimal for numeric columns: floats via repr (shortest round-trip), strings as written."""
    if v is None:
        return None
    if isinstance(v, Decimal):
        return v
    if isinstance(v, float):
        if math.isnan(v):
            return Decimal("NaN")
        if math.isinf(v):
            return Decimal("Infinity") if v > 0 else Decimal("-Infinity")
        return Decimal(repr(v))
    return Decimal(v) if isinstance(v, int) else Decimal(str(v).strip())


def _row(item: Bar | Unparsed) -> tuple:
    if isinstance(item, Unparsed):
        return (item.symbol, item.interval, None, None, None, None, None, None, item.raw, item.problem)
    ts = item.ts
    if ts.tzinfo is None:
        # A naive timestamp is ambiguous; loaders must localize. Treat as an input error, not as UTC.
        return (
            item.symbol,
            item.interval,
            None,
            None,
            None,
            None,
            None,
            None,
            f"{item.symbol},{item.interval},{ts.isoformat()}",
            "timestamp has no time zone",
        )
    try:
        nums = [_num(x) for x in (item.open, item.high, item.low, item.close, item.volume)]
    except (ArithmeticError, ValueError) as exc:
        return (
            item.symbol,
            item.interval,
            ts,
            None,
            None,
            None,
            None,
            None,
            f"{item.open},{item.high},{item.low},{item.close},{item.volume}",
            f"not a number: {exc}",
        )
    return (item.symbol, item.interval, ts.astimezone(UTC), *nums, None, None)


def ingest(
    conn: psycopg.Connection,
    items: Iterable[Bar | Unparsed],
    *,
    source: str,
    auto_register: bool = False,
    asset_class: str = "stock",
    batch_size: int = 100_000,
    workers: int = 1,
    on_batch: Callable[[int], None] | None = None,
    refresh: bool = True,
) -> IngestReport:
    """Send bars through the ingest path, one transaction per batch; returns per-symbol counts.

    Each batch commits on its own, so a long load that fails part-way keeps what it already committed and can
    simply be run again (the upsert makes a re-run change nothing). With ``workers`` > 1 the load is pipelined
    over that many connections: while the server validates and writes one batch, the next one is converted and
    COPYed on another connection (``conn`` must then have nothing uncommitted that the batches depend on).
    ``on_batch(n)`` is called after each committed batch of n items (progress display).

    After the last batch, the continuous aggregates are refreshed over the 1-minute bars the load sent
    (``refresh_rollups``), so a backfill older than the refresh policies' windows shows in 5m/1h/1d at once; with
    ``refresh=False`` (or when ``conn`` is inside a transaction of the caller's) that is left to the caller.
    """
    options = {"source": source, "auto_register": auto_register, "asset_class": asset_class}
    return _run(
        conn,
        _batches(items, batch_size),
        lambda c, batch: (ingest_batch(c, batch, **options), len(batch)),
        workers=workers,
        on_batch=on_batch,
        refresh=refresh,
    )


@dataclass(frozen=True, slots=True)
class CsvBatch:
    """Consecutive lines of a CSV file as raw bytes (never split into rows in Python)."""

    first_line: int  # file line number of the first line (the header is line 1)
    chunks: list[bytes]
    lines: int


@dataclass(frozen=True, kw_only=True)
class CsvLayout:
    """How to read the lines of one CSV file: field positions (0-based) from its header, and its conventions."""

    columns: dict[str, int]
    interval: str
    symbol: str | None = None
    tz: str = "UTC"
    delimiter: str = ","


# One text column per line: a delimiter and a quote character that never occur in text keep every line whole
# (market.ingest_csv splits it), byte for byte, for the rejects' raw text.
_CSV_COPY = "COPY pg_temp.csv_staging (line) FROM STDIN (FORMAT csv, DELIMITER E'\\x1f', QUOTE E'\\x1e')"


def ingest_csv(
    conn: psycopg.Connection,
    batches: Iterable[CsvBatch],
    layout: CsvLayout,
    *,
    source: str,
    auto_register: bool = False,
    asset_class: str = "stock",
    workers: int = 2,
    on_batch: Callable[[int], None] | None = None,
    refresh: bool = True,
) -> IngestReport:
    """Send CSV lines through the ingest path as bytes: each batch is COPYed into ``pg_temp.csv_staging`` and
    ``market.ingest_csv`` types, validates and writes it in SQL (one transaction per batch; unparseable lines become
    rejects with their line number and raw text). Batches, workers, progress and the rollup refresh as ``ingest``."""
    return _run(
        conn,
        iter(batches),
        lambda c, batch: (
            ingest_csv_batch(c, batch, layout, source=source, auto_register=auto_register, asset_class=asset_class),
            batch.lines,
        ),
        workers=workers,
        on_batch=on_batch,
        refresh=refresh,
    )


def ingest_csv_batch(
    conn: psycopg.Connection,
    batch: CsvBatch,
    layout: CsvLayout,
    *,
    source: str,
    auto_register: bool = False,
    asset_class: str = "stock",
) -> IngestReport:
    report = IngestReport()
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT market.csv_begin()")
        with cur.copy(_CSV_COPY) as copy:
            for chunk in batch.chunks:
                copy.write(chunk)
        cur.execute(
            "SELECT * FROM market.ingest_csv(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                source,
                layout.interval,
                Jsonb(layout.columns),
                layout.symbol,
                layout.tz,
                layout.delimiter,
                batch.first_line,
                auto_register,
                asset_class,
            ),
        )
        for symbol, ins, upd, unch, rej, lo, hi in cur.fetchall():
            report.per_symbol[symbol] = SymbolCounts(inserted=ins, updated=upd, unchanged=unch, rejected=rej)
            if lo is not None:
                report.merge(IngestReport(minute_span=(lo, hi)))
    return report


def _run(
    conn: psycopg.Connection,
    batches: Iterator,
    send: Callable[[psycopg.Connection, object], tuple[IngestReport, int]],
    *,
    workers: int,
    on_batch: Callable[[int], None] | None,
    refresh: bool,
) -> IngestReport:
    """Send each batch in a transaction of its own, over ``workers`` connections, then refresh the rollups."""
    report = IngestReport()
    if workers <= 1:
        for batch in batches:
            part, n = send(conn, batch)
            report.merge(part)
            if on_batch:
                on_batch(n)
    else:
        lock = threading.Lock()

        def drain(c: psycopg.Connection) -> IngestReport:
            mine = IngestReport()
            while True:
                with lock:
                    batch = next(batches, None)
                if batch is None:
                    return mine
                part, n = send(c, batch)
                mine.merge(part)
                if on_batch:
                    with lock:
                        on_batch(n)

        extra = [psycopg.connect(conn.info.dsn, password=conn.info.password) for _ in range(workers - 1)]
        try:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for future in [pool.submit(drain, c) for c in (conn, *extra)]:
                    report.merge(future.result())
        finally:
            for c in extra:
                c.close()
    if refresh and report.minute_span:
        refresh_rollups(conn, *report.minute_span)
    return report


def ingest_batch(
    conn: psycopg.Connection,
    batch: list[Bar | Unparsed],
    *,
    source: str,
    auto_register: bool = False,
    asset_class: str = "stock",
) -> IngestReport:
    report = IngestReport()
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT market.ingest_begin()")
        with cur.copy(_COPY) as copy:
            copy.set_types(_TYPES)
            for item in batch:
                copy.write_row(_row(item))
        lo, hi = cur.execute("SELECT * FROM market.staged_rollup_span()").fetchone()
        if lo is not None:
            report.minute_span = (lo, hi)
        cur.execute("SELECT * FROM market.ingest_staged(%s, %s, %s)", (source, auto_register, asset_class))
        for symbol, ins, upd, unch, rej in cur.fetchall():
            report.per_symbol[symbol] = SymbolCounts(inserted=ins, updated=upd, unchanged=unch, rejected=rej)
    return report


def refresh_rollups(conn: psycopg.Connection, start: datetime, end: datetime) -> bool:
    """Bring the continuous aggregates up to date over the 1-minute bars stamped [start, end] (``CALL
    market.refresh_rollups``: each aggregate in one batch over exactly the buckets the range touches).

    ``refresh_continuous_aggregate`` refuses a transaction block, so this needs ``conn`` idle: it runs in
    autocommit on that same connection and restores its mode. When ``conn`` is inside a transaction the caller
    owns, the bars are not committed yet and nothing can be refreshed: returns False (the policies, or a later
    call after the commit, bring the rollups up to date)."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        return False
    was = conn.autocommit
    conn.autocommit = True
    try:
        conn.execute("CALL market.refresh_rollups(%s, %s)", (start, end))
    finally:
        conn.autocommit = was
    return True


def _batches(items: Iterable, size: int) -> Iterator[list]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch
