"""Structured logs (``pgtrade --log-json``) and the database row of each load and feed session.

Every module logs through the standard ``logging`` module: ``event(log, "load.end", symbol=..., rows=...)``. Without
``--log-json`` nothing is configured here, so the CLI's human output is what it always was (Python's last-resort
handler still prints warnings as plain lines, as before). With it, the root logger gets one handler that writes one
JSON object per line to stderr::

    {"ts": "2026-12-01T17:02:03.123456Z", "level": "info", "logger": "pgtrade.load", "event": "load.end",
     "run_id": 42, "source": "sample", "inserted": 25770, ...}

``ts`` is UTC ISO 8601, ``event`` the message (a dotted event name for pgtrade's own events; other libraries' log
messages as they format them), then the event's fields. ``run_id`` (the id of the run's ``ops.ingest_runs`` row) is
added to every line logged while ``ingest_run`` is open.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from psycopg.types.json import Jsonb

log = logging.getLogger("pgtrade.runs")
_run_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("pgtrade_run_id", default=None)
_json_enabled = False
_RESERVED = ("ts", "level", "logger", "event", "run_id")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (UTC), level, logger, event, run_id when a run is open, the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        run_id = getattr(record, "run_id", None) or _run_id.get()
        if run_id is not None:
            out["run_id"] = run_id
        for key, value in (getattr(record, "fields", None) or {}).items():
            out[key if key not in _RESERVED else f"field_{key}"] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False, separators=(",", ":"))


def setup(json_lines: bool, level: str | None = None) -> None:
    """Send every log record to stderr as a JSON line (``json_lines``); otherwise leave logging as it is."""
    global _json_enabled
    if not json_lines:
        return
    level = (level or os.environ.get("PGTRADE_LOG_LEVEL") or "INFO").upper()
    if level not in logging.getLevelNamesMapping():
        from .errors import PgtradeError

        raise PgtradeError(f"PGTRADE_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {level!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)  # warnings.warn(...) from libraries become JSON lines too
    _json_enabled = True


def json_enabled() -> bool:
    """Whether ``--log-json`` is on (the CLI then keeps stderr for JSON lines: no progress bars, errors as JSON)."""
    return _json_enabled


def event(logger: logging.Logger, name: str, level: int = logging.INFO, /, **fields) -> None:
    """Log the event ``name`` with its fields (they become keys of the JSON line)."""
    # Logging left unconfigured (the CLI without --log-json): Python's last-resort handler would print the bare event
    # name of a warning; the human output says it in its own words, so the event is dropped.
    if not _json_enabled and not logging.getLogger().handlers:
        return
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": fields})


# ---------------------------------------------------------------------------------------------------- runs
@dataclass
class IngestRun:
    """A load or feed session being recorded; the caller sets the counts (``set_counts``) before it ends."""

    kind: str
    source: str
    symbols: list[str]
    id: int | None = None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    detail: dict = field(default_factory=dict)
    status: str | None = None  # set to end with a status other than done (e.g. a stream stopped by Ctrl-C)

    def set_counts(self, *, inserted: int, updated: int, unchanged: int, rejected: int) -> None:
        self.counts = {"inserted": inserted, "updated": updated, "unchanged": unchanged, "rejected": rejected}


COUNTS = ("inserted", "updated", "unchanged", "rejected")
_BEGIN = """INSERT INTO ops.ingest_runs (kind, source, symbols, host, pid) VALUES (%s, %s, %s, %s, %s) RETURNING id"""
_END = """UPDATE ops.ingest_runs SET status = %s, finished_at = now(), inserted = %s, updated = %s, unchanged = %s,
  rejected = %s, detail = %s WHERE id = %s"""


def _dumps(obj) -> str:
    return json.dumps(obj, default=str)


def record_report(run: IngestRun, report, logger: logging.Logger = log) -> None:
    """Put an ``IngestReport``'s counts into ``run`` and log one ``load.symbol`` event per symbol (a warning when
    some of its rows were rejected: their reasons are rows of market.rejected_bars)."""
    total = report.total
    run.set_counts(inserted=total.inserted, updated=total.updated, unchanged=total.unchanged, rejected=total.rejected)
    per_symbol = report.as_dict()["symbols"]
    run.detail["symbols"] = per_symbol
    for symbol, counts in per_symbol.items():
        event(logger, "load.symbol", logging.WARNING if counts["rejected"] else logging.INFO, symbol=symbol, **counts)


def _short(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def ingest_run(url: str, *, kind: str, source: str, symbols: list[str] | tuple[str, ...] = ()) -> Iterator[IngestRun]:
    """Record a load or feed session as a row of ``ops.ingest_runs`` and log its start and end.

    The row is written on a connection of its own (autocommit), so it is there while the run goes on and its end is
    written even when the run's own connection broke. If the database cannot take the row, the run goes on and the
    log says so. The run's status: done, failed (the exception's first line in ``detail.error``), interrupted
    (KeyboardInterrupt), or what the caller set in ``run.status``."""
    run = IngestRun(kind=kind, source=source, symbols=list(symbols))
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            run.id = conn.execute(_BEGIN, (kind, source, run.symbols, socket.gethostname(), os.getpid())).fetchone()[0]
    except psycopg.Error as exc:
        event(log, f"{kind}.unrecorded", logging.WARNING, reason=_short(exc))
    token = _run_id.set(run.id)
    event(log, f"{kind}.start", source=source, symbols=run.symbols)
    status = "done"
    try:
        yield run
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except BaseException as exc:
        status = "failed"
        run.detail["error"] = _short(exc)
        raise
    finally:
        status = run.status or status
        level = logging.ERROR if status == "failed" else logging.INFO
        event(log, f"{kind}.end", level, status=status, source=source, **run.counts, **run.detail)
        if run.id is not None:
            try:
                with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(
                        _END, (status, *(run.counts[k] for k in COUNTS), Jsonb(run.detail, dumps=_dumps), run.id)
                    )
            except psycopg.Error as exc:
                event(log, f"{kind}.unrecorded", logging.WARNING, reason=_short(exc))
        _run_id.reset(token)
