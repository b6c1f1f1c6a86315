"""CSV files of OHLCV bars -> normalized ``Bar``s (or ``Unparsed`` rows, which the database records as rejected).

Accepts the common header spellings (Date/Datetime/Timestamp/time, Open/o, Adj Close ignored, Vol ...), ISO 8601
timestamps with or without offset, plain dates, US and European date formats, and epoch seconds or milliseconds.
Naive timestamps are read in ``tz`` (default UTC). Daily bars are stamped with their calendar date at 00:00 UTC.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg

from pgtrade.errors import PgtradeError
from pgtrade.ingest import Bar, CsvBatch, CsvLayout, IngestReport, Unparsed, ingest_csv

HEADER_ALIASES: dict[str, tuple[str, ...]] = {
    "ts": ("ts", "time", "timestamp", "date", "datetime", "date_time", "gmt time", "local time", "t"),
    "open": ("open", "o", "open price", "opening price"),
    "high": ("high", "h", "high price"),
    "low": ("low", "l", "low price"),
    "close": ("close", "c", "close price", "closing price", "last", "price"),
    "volume": ("volume", "v", "vol", "vol.", "volume traded"),
    "symbol": ("symbol", "ticker", "sym"),
}
_DATE_FORMATS = (
    "%Y-%m-%d %H:%M:%S%z",
    "%Y-%m-%d %H:%M%z",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y",
    "%d.%m.%Y %H:%M:%S.%f",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y",
    "%Y%m%d",
)
_EPOCH = re.compile(r"^\d{9,13}(\.\d+)?$")


def _norm(name: str) -> str:
    return re.sub(r"\s+", " ", name.strip().lower().replace("_", " ")).replace(" ", "_") if name else ""


def map_header(header: list[str]) -> dict[str, int]:
    """Column index of each field, by alias; raises a clear error naming what is missing."""
    normalized = [_norm(h).replace("_", " ") for h in header]
    found: dict[str, int] = {}
    for field, aliases in HEADER_ALIASES.items():
        for i, h in enumerate(normalized):
            if h in aliases:
                found[field] = i
                break
    missing = [f for f in ("ts", "open", "high", "low", "close") if f not in found]
    if missing:
        shown = ", ".join(repr(h[:40]) for h in header[:12])
        raise PgtradeError(f"CSV header lacks {', '.join(missing)} (found columns: {shown})")
    return found


def parse_timestamp(text: str, tz: ZoneInfo) -> datetime:
    """A timestamp in any supported format, as an aware UTC datetime (naive text is read in ``tz``)."""
    s = text.strip()
    if _EPOCH.match(s):
        value = float(s)
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, tz=UTC)
    iso = s[:-1] + "+00:00" if s.endswith(("Z", "z")) else s
    try:
        dt = datetime.fromisoformat(iso)
    except ValueError:
        for fmt in _DATE_FORMATS:
            try:
                dt = datetime.strptime(s, fmt)
                break
            except ValueError:
                continue
        else:
            raise ValueError(f"unrecognized timestamp {s[:40]!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return dt.astimezone(UTC)


def daily_stamp(dt_utc: datetime, tz: ZoneInfo) -> datetime:
    """A daily bar's stamp: its calendar date (in the file's zone) at 00:00 UTC."""
    local = dt_utc.astimezone(tz)
    return datetime(local.year, local.month, local.day, tzinfo=UTC)


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise PgtradeError(f"unknown time zone {tz!r} (use an IANA name such as America/New_York)") from exc


def load_csv(
    conn: psycopg.Connection,
    path: str | Path,
    *,
    symbol: str | None,
    interval: str,
    tz: str = "UTC",
    source: str | None = None,
    auto_register: bool = False,
    asset_class: str = "stock",
    batch_lines: int = 100_000,
    workers: int = 2,
    on_batch: Callable[[int], None] | None = None,
    refresh: bool = True,
) -> IngestReport:
    """Load a CSV file (plain or .gz) through the ingest path as bytes: Python reads the header only (field
    positions by alias, the delimiter); the lines go to the server unparsed, in batches of ``batch_lines``, where
    ``market.ingest_csv`` types and validates them set-based (same formats as ``read_csv``; a line it cannot read
    is a reject with its line number, reason and raw text). Rollups are refreshed at the end (see ``ingest``)."""
    _zone(tz)
    p = Path(path)
    if not p.is_file():
        raise PgtradeError(f"no such file: {p}")
    opener = gzip.open if p.suffix == ".gz" else open
    try:
        with opener(p, "rb") as fh:
            layout, rest = _layout(fh, symbol=symbol, interval=interval, tz=tz, name=p.name)
            return ingest_csv(
                conn,
                _line_batches(rest, fh, batch_lines),
                layout,
                source=source or f"csv:{p.name}",
                auto_register=auto_register,
                asset_class=asset_class,
                workers=workers,
                on_batch=on_batch,
                refresh=refresh,
            )
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as exc:
        raise PgtradeError(f"{p}: not a readable text CSV ({exc})") from exc
    except (psycopg.errors.CharacterNotInRepertoire, psycopg.errors.BadCopyFileFormat) as exc:
        raise PgtradeError(f"{p}: not a readable text CSV ({exc.diag.message_primary})") from exc


def _layout(fh: BinaryIO, *, symbol: str | None, interval: str, tz: str, name: str) -> tuple[CsvLayout, bytes]:
    """Read the header (and sniff the delimiter) from the start of the file; returns the bytes after the header."""
    head = fh.read(1 << 16)
    end = head.find(b"\n")
    header_line = (head if end < 0 else head[:end]).decode("utf-8-sig").rstrip("\r")
    sample = head[:4096].decode("utf-8-sig", errors="replace")
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    header = next(csv.reader([header_line], dialect), None)
    if not header:
        raise PgtradeError(f"{name}: empty file")
    cols = map_header(header)
    if symbol is None and "symbol" not in cols:
        raise PgtradeError(f"{name}: no symbol column; pass --symbol")
    layout = CsvLayout(
        columns=cols,
        interval=interval,
        symbol=symbol.strip().upper() if symbol else None,
        tz=tz,
        delimiter=dialect.delimiter,
    )
    return layout, (b"" if end < 0 else head[end + 1 :])


def _line_batches(first: bytes, fh: BinaryIO, batch_lines: int) -> Iterator[CsvBatch]:
    """The file's remaining lines in batches of ``batch_lines``, as byte chunks (split only at line ends)."""
    line_no, chunks, count, buf = 2, [], 0, first
    while True:
        if not buf:
            buf = fh.read(1 << 20)
            if not buf:
                break
        n = buf.count(b"\n")
        if count + n < batch_lines:
            chunks.append(buf)
            count, buf = count + n, b""
            continue
        pos = -1
        for _ in range(batch_lines - count):
            pos = buf.index(b"\n", pos + 1)
        chunks.append(buf[: pos + 1])
        yield CsvBatch(first_line=line_no, chunks=chunks, lines=batch_lines)
        line_no, chunks, count, buf = line_no + batch_lines, [], 0, buf[pos + 1 :]
    if chunks:
        unterminated = 0 if chunks[-1].endswith(b"\n") else 1
        yield CsvBatch(first_line=line_no, chunks=chunks, lines=count + unterminated)


def read_csv(
    path: str | Path,
    *,
    symbol: str | None,
    interval: str,
    tz: str = "UTC",
) -> Iterator[Bar | Unparsed]:
    """Yield the bars of a CSV (plain or .gz). ``symbol`` is required unless the file has a symbol column.

    Each row becomes a Python object; ``load_csv`` loads a file without that (the lines go to the server as bytes).
    """
    zone = _zone(tz)
    p = Path(path)
    if not p.is_file():
        raise PgtradeError(f"no such file: {p}")
    opener = gzip.open if p.suffix == ".gz" else open
    try:
        with opener(p, "rt", newline="", encoding="utf-8-sig") as fh:
            yield from _read(fh, symbol=symbol, interval=interval, zone=zone, name=p.name)
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as exc:
        raise PgtradeError(f"{p}: not a readable text CSV ({exc})") from exc


def read_csv_text(text: str, *, symbol: str | None, interval: str, tz: str = "UTC") -> Iterator[Bar | Unparsed]:
    yield from _read(io.StringIO(text), symbol=symbol, interval=interval, zone=ZoneInfo(tz), name="<text>")


def _read(fh, *, symbol: str | None, interval: str, zone: ZoneInfo, name: str) -> Iterator[Bar | Unparsed]:
    sample = fh.read(4096)
    fh.seek(0)
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(fh, dialect)
    header = next(reader, None)
    if not header:
        raise PgtradeError(f"{name}: empty file")
    cols = map_header(header)
    if symbol is None and "symbol" not in cols:
        raise PgtradeError(f"{name}: no symbol column; pass --symbol")
    fixed_symbol = symbol.strip().upper() if symbol else None
    daily = interval == "1d"
    width = max(cols.values()) + 1
    for lineno, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if fixed_symbol:
            sym = fixed_symbol
        else:
            sym = row[cols["symbol"]].strip().upper() if len(row) > cols["symbol"] else None
        raw = ",".join(row)[:500]
        if len(row) < width:
            yield Unparsed(
                raw=raw,
                problem=f"line {lineno}: {len(row)} fields, expected at least {width}",
                symbol=sym,
                interval=interval,
            )
            continue
        try:
            ts = parse_timestamp(row[cols["ts"]], zone)
        except (ValueError, OverflowError, OSError) as exc:
            yield Unparsed(raw=raw, problem=f"line {lineno}: {exc}", symbol=sym, interval=interval)
            continue
        if daily:
            ts = daily_stamp(ts, zone)
        vol = row[cols["volume"]].strip() if "volume" in cols else "0"
        bar = Bar(
            symbol=sym,
            interval=interval,
            ts=ts,
            open=row[cols["open"]],
            high=row[cols["high"]],
            low=row[cols["low"]],
            close=row[cols["close"]],
            volume=vol or "0",
        )
        yield bar
