"""The client side of the one ingest path: every loader and the live feed send bars through ``ingest``.

Rows are COPYed (binary) into the session's ``pg_temp.bars_staging`` and ``market.ingest_staged`` validates,
records rejects and upserts, all in one transaction. The rules live in SQL; this module only moves rows.
"""

from __future__ import annotations

import contextvars
import logging
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

from .logs import event

log = logging.getLogger("pgtrade.ingest")
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
    #: some of those bars were COPYed straight into market.bars, which logs no invalidation for the rollups: their
    #: refresh must be forced (``refresh_rollups(force=True)``)
    needs_forced_refresh: bool = False

    def merge(self, other: IngestReport) -> None:
        self.needs_forced_refresh = self.needs_forced_refresh or other.needs_forced_refresh
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
    # New bars may be COPYed straight into market.bars only when the forced refresh they need will run here.
    direct = refresh and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    options = {"source": source, "auto_register": auto_register, "asset_class": asset_class, "direct": direct}
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
    _log_batch(source, batch.lines, report, first_line=batch.first_line)
    return report


def _log_batch(source: str, rows: int, report: IngestReport, **fields) -> None:
    """One ``ingest.batch`` event (DEBUG) per committed batch, with its counts."""
    event(log, "ingest.batch", logging.DEBUG, source=source, rows=rows, **vars(report.total), **fields)


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
                # each worker runs in a copy of this context: log lines keep the run_id of the load (pgtrade.logs)
                for future in [pool.submit(contextvars.copy_context().run, drain, c) for c in (conn, *extra)]:
                    report.merge(future.result())
        finally:
            for c in extra:
                c.close()
    if refresh and report.minute_span:
        refresh_rollups(conn, *report.minute_span, force=report.needs_forced_refresh)
    return report


def ingest_batch(
    conn: psycopg.Connection,
    batch: list[Bar | Unparsed],
    *,
    source: str,
    auto_register: bool = False,
    asset_class: str = "stock",
    direct: bool = False,
    feed_now: datetime | None = None,
) -> IngestReport:
    """One batch in one transaction (a savepoint inside a transaction of the caller's).

    ``feed_now`` (a simulated feed's time: ``pgtrade stream`` replaying or synthesizing faster than real time) is
    set as ``pgtrade.feed_now`` for the transaction: the database's clock for the closed-bar rule (``ml.closed_upto``)
    and for wall-clock accounts (``trading.account_clock``), so a forming bar stamped in the simulated past is not
    taken as closed, and orders its closed bars cause are accepted at the simulated time.

    With ``direct``, well-formed new bars (every item a Bar with a normalized symbol, an aware ts and numbers, none
    stored yet) are COPYed straight into ``market.bars``, which checks them with every rule of the ingest path (the
    statement trigger ``market.tg_bars__validate``): new history then costs about what a raw COPY does. TimescaleDB
    logs no rollup invalidation for a COPY, so the caller must then refresh the rollups over the batch with
    ``force`` (the report says so; ``ingest`` does it). Anything else, or a batch any bar of which that check
    refuses, takes the staging path (``market.ingest_staged``: rejects recorded with their reason, corrections and
    duplicates upserted), with the same result as always."""
    rows = [_row(item) for item in batch]
    if direct and _well_formed(batch, rows):
        report = _direct(conn, rows, source, feed_now)
        if report is not None:
            _log_batch(source, len(rows), report, path="direct")
            return report
    report = IngestReport()
    with conn.transaction(), conn.cursor() as cur:
        _set_feed_now(cur, feed_now)
        cur.execute("SELECT market.ingest_begin()")
        with cur.copy(_COPY) as copy:
            copy.set_types(_TYPES)
            for row in rows:
                copy.write_row(row)
        lo, hi = cur.execute("SELECT * FROM market.staged_rollup_span()").fetchone()
        if lo is not None:
            report.minute_span = (lo, hi)
        cur.execute("SELECT * FROM market.ingest_staged(%s, %s, %s)", (source, auto_register, asset_class))
        for symbol, ins, upd, unch, rej in cur.fetchall():
            report.per_symbol[symbol] = SymbolCounts(inserted=ins, updated=upd, unchanged=unch, rejected=rej)
    _log_batch(source, len(rows), report, path="staged")
    return report


_DIRECT = "COPY market.bars (symbol, interval, ts, open, high, low, close, volume, source) FROM STDIN (FORMAT BINARY)"
_DIRECT_TYPES = ["text", "text", "timestamptz", "numeric", "numeric", "numeric", "numeric", "numeric", "text"]
# Whether any series of the batch already has a bar in the batch's range (then some bars may be corrections or
# repeats: the staging path's upsert handles them). One short index probe per series.
_STORED = """SELECT EXISTS (
  SELECT 1 FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[]) r(symbol, interval, lo, hi)
  WHERE EXISTS (SELECT 1 FROM market.bars b
                WHERE b.symbol = r.symbol AND b.interval = r.interval AND b.ts BETWEEN r.lo AND r.hi))"""


def _well_formed(batch: list[Bar | Unparsed], rows: list[tuple]) -> bool:
    return bool(rows) and all(
        row[9] is None
        and isinstance(item, Bar)
        and isinstance(row[0], str)
        and row[0] == row[0].strip().upper()
        and isinstance(row[1], str)
        for item, row in zip(batch, rows, strict=True)
    )


def _set_feed_now(cur: psycopg.Cursor, feed_now: datetime | None) -> None:
    if feed_now is not None:
        cur.execute("SELECT set_config('pgtrade.feed_now', %s, true)", (feed_now.astimezone(UTC).isoformat(),))


def _direct(
    conn: psycopg.Connection, rows: list[tuple], source: str, feed_now: datetime | None = None
) -> IngestReport | None:
    """COPY new, well-formed bars straight into market.bars; None when the staging path must take the batch."""
    series: dict[tuple[str, str], list] = {}
    counts: dict[str, int] = {}
    for symbol, interval, ts, *_ in rows:
        span = series.get((symbol, interval))
        if span is None:
            series[(symbol, interval)] = [ts, ts]
        elif ts < span[0]:
            span[0] = ts
        elif ts > span[1]:
            span[1] = ts
        counts[symbol] = counts.get(symbol, 0) + 1
    if len(rows) != len({(r[0], r[1], r[2]) for r in rows}):
        return None  # the same bar twice: the staging path keeps the later one and records the earlier
    keys = list(series)
    probe = ([k[0] for k in keys], [k[1] for k in keys], [series[k][0] for k in keys], [series[k][1] for k in keys])
    try:
        with conn.transaction(), conn.cursor() as cur:
            _set_feed_now(cur, feed_now)
            rollup = cur.execute("SELECT market.rollup_interval()").fetchone()[0]
            if cur.execute(_STORED, probe).fetchone()[0]:
                raise _Staging
            # history written into a compressed chunk is invisible to the statement's triggers: decompressed first,
            # as the staging path does (market.open_compressed_range)
            cur.execute("SELECT market.open_compressed_range(%s, %s)", (min(probe[2]), max(probe[3])))
            with cur.copy(_DIRECT) as copy:
                copy.set_types(_DIRECT_TYPES)
                for row in rows:
                    copy.write_row((*row[:8], source))
    except (_Staging, psycopg.errors.CheckViolation, psycopg.errors.UniqueViolation):
        return None  # nothing of the attempt is kept (its transaction or savepoint rolled back)
    report = IngestReport(per_symbol={sym: SymbolCounts(inserted=n) for sym, n in counts.items()})
    minutes = [span for (_, interval), span in series.items() if interval == rollup]
    if minutes:
        report.minute_span = (min(s[0] for s in minutes), max(s[1] for s in minutes))
        report.needs_forced_refresh = True
    return report


class _Staging(Exception):
    """The batch needs the staging path (raised inside the attempt's transaction to roll it back)."""


def refresh_rollups(conn: psycopg.Connection, start: datetime, end: datetime, *, force: bool = False) -> bool:
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
        conn.execute("CALL market.refresh_rollups(%s, %s, %s)", (start, end, force))
    finally:
        conn.autocommit = was
    return True


def _batches(items: Iterable, size: int) -> Iterator[list]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch
