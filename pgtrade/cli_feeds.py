"""``pgtrade load yfinance|alpaca`` and ``pgtrade stream``: market-data feeds (registered on the CLI groups)."""

from __future__ import annotations

import os
import signal
from datetime import UTC, date, datetime, time

import click
from rich.table import Table

from . import logs
from .cli import console, emit_json, load, main, print_report, user_errors
from .db import connect, database_url
from .errors import PgtradeError


def _symbols(text: str) -> list[str]:
    syms = [s.strip().upper() for s in (text or "").split(",") if s.strip()]
    if not syms:
        raise PgtradeError("no symbols given (--symbols A,B,...)")
    return syms


def _when(text: str | None, name: str) -> datetime | None:
    """A date (00:00 UTC) or an ISO 8601 timestamp (naive = UTC)."""
    if not text:
        return None
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), tzinfo=UTC)
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PgtradeError(f"--{name}: not a date or ISO 8601 timestamp: {text!r}") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


_COMMON = [
    click.option("--symbols", required=True, help="Comma-separated symbols, e.g. AAPL,MSFT."),
    click.option("--start", required=True, help="First day (YYYY-MM-DD) or ISO 8601 timestamp (naive = UTC)."),
    click.option("--end", help="End, exclusive (default: now)."),
    click.option(
        "--asset-class",
        default="stock",
        show_default=True,
        type=click.Choice(["stock", "etf", "index", "fx", "crypto"]),
        help="For symbols this load registers.",
    ),
    click.option("--json", "as_json", is_flag=True, help="Machine-readable output."),
]


def _common(fn):
    for opt in reversed(_COMMON):
        fn = opt(fn)
    return fn


@load.command("yfinance")
@_common
@click.option(
    "--interval",
    default="1d",
    show_default=True,
    type=click.Choice(["1m", "5m", "15m", "30m", "1h", "1d"]),
    help="Bar interval (Yahoo keeps 1m bars ~7 days, other intraday ~60 days; its US-equity 1h bars "
    "open at hh:30 and are stored as stamped).",
)
@user_errors
def load_yfinance_cmd(symbols, start, end, asset_class, as_json, interval) -> None:
    """Load Yahoo Finance bars (unadjusted) through the ingest path; NaN rows are recorded as rejects."""
    from loaders.yfinance_loader import load_yfinance

    syms = _symbols(symbols)
    with logs.ingest_run(database_url(), kind="load", source="yfinance", symbols=syms) as run, connect() as conn:
        report = load_yfinance(
            conn,
            syms,
            start=_when(start, "start"),
            end=_when(end, "end"),
            interval=interval,
            asset_class=asset_class,
        )
        logs.record_report(run, report)
    print_report(report, "yfinance bars loaded", as_json)


@load.command("alpaca")
@_common
@click.option(
    "--interval",
    default="1d",
    show_default=True,
    type=click.Choice(["1m", "5m", "15m", "30m", "1h", "4h", "1d"]),
    help="Bar interval.",
)
@click.option(
    "--feed",
    default="iex",
    show_default=True,
    type=click.Choice(["iex", "sip"]),
    help="Alpaca data feed (free accounts: iex).",
)
@user_errors
def load_alpaca_cmd(symbols, start, end, asset_class, as_json, interval, feed) -> None:
    """Load Alpaca bars (raw prices) through the ingest path. Keys: $ALPACA_API_KEY and $ALPACA_SECRET_KEY."""
    from loaders.alpaca_loader import credentials, load_alpaca

    credentials()  # fail with one line before touching the database
    syms = _symbols(symbols)
    with logs.ingest_run(database_url(), kind="load", source="alpaca", symbols=syms) as run, connect() as conn:
        report = load_alpaca(
            conn,
            syms,
            start=_when(start, "start"),
            end=_when(end, "end"),
            interval=interval,
            feed=feed,
            asset_class=asset_class,
        )
        logs.record_report(run, report)
    print_report(report, "alpaca bars loaded", as_json)


@main.command("stream")
@click.option(
    "--source",
    required=True,
    type=click.Choice(["replay", "synthetic", "yfinance", "alpaca"]),
    help="replay stored history, a calibrated synthetic walk, or poll an API.",
)
@click.option("--symbols", required=True, help="Comma-separated symbols (synthetic ones are registered).")
@click.option("--interval", default="1m", show_default=True, help="Bar interval (replay and synthetic: 1m).")
@click.option(
    "--speed",
    default=1.0,
    show_default=True,
    type=float,
    help="Simulated time per wall second (replay/synthetic); above 1 the run ends at the present.",
)
@click.option("--duration", type=float, help="Stop after this many seconds.")
@click.option("--max-bars", type=int, help="Stop after this many bar updates.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the synthetic walk.")
@click.option(
    "--updates-per-minute",
    default=6,
    show_default=True,
    type=int,
    help="Synthetic: updates of each symbol's forming bar per simulated minute.",
)
@click.option(
    "--calibrate-on",
    default="SPX",
    show_default=True,
    help="Synthetic: daily series whose returns set drift, volatility and jumps.",
)
@click.option(
    "--poll",
    "poll_seconds",
    default=30.0,
    show_default=True,
    type=float,
    help="yfinance/alpaca: seconds between polls.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Replay: continue each symbol's history after the bars earlier replays stored, from the minute after the "
    "last of them (else from its first bar, at the run's own start).",
)
@click.option(
    "--ends-ago",
    default=0.0,
    show_default=True,
    type=float,
    help="Above --speed 1: place the run so that it ends this many minutes before now (room for a later run).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@user_errors
def stream_cmd(
    source,
    symbols,
    interval,
    speed,
    duration,
    max_bars,
    seed,
    updates_per_minute,
    calibrate_on,
    poll_seconds,
    resume,
    ends_ago,
    as_json,
) -> None:
    """Feed bars into the database live, through the ingest path; Ctrl-C stops with a summary.

    Reports arrival-to-commit latency (p50/p99/max) and counts at the end. Rides out dropped database
    connections (reconnects and resends the uncommitted batch) and transient API errors.
    """
    from loaders.stream import StreamConfig, build

    if duration is None and max_bars is None and speed != 1 and source in ("replay", "synthetic"):
        raise PgtradeError("--speed above 1 needs --duration or --max-bars (simulated time must end by now)")
    cfg = StreamConfig(
        source=source,
        symbols=tuple(_symbols(symbols)),
        interval=interval,
        speed=speed,
        duration=duration,
        max_bars=max_bars,
        seed=seed,
        updates_per_minute=updates_per_minute,
        calibrate_on=calibrate_on,
        poll_seconds=poll_seconds,
        resume=resume,
        ends_ago=ends_ago,
    )
    stream = build(cfg, url=database_url())
    if not as_json:
        console.print(
            f"streaming {source} for {', '.join(cfg.symbols)} into {stream.source_name!r} (Ctrl-C stops)",
            highlight=False,
        )
    # The feed's series are expected fresh while it runs (ops.fed_series: health and the alert watcher); a run that
    # ends as asked (duration, max bars, source exhausted, Ctrl-C, SIGTERM) releases them, one that dies does not.
    with connect(autocommit=True) as conn:
        feed_id = conn.execute(
            "SELECT ops.feed_started(%s::text, %s::text[], %s::text, %s::numeric, %s::text)",
            (
                stream.source_name,
                list(cfg.symbols),
                cfg.interval,
                stream.config.speed,
                f"pgtrade stream pid {os.getpid()}",
            ),
        ).fetchone()[0]
    previous = signal.signal(signal.SIGTERM, lambda *_: stream.stop())
    try:
        with logs.ingest_run(database_url(), kind="stream", source=stream.source_name, symbols=cfg.symbols) as run:
            stats = stream.run()
            summary = stats.summary()
            run.set_counts(**{k: summary[k] for k in logs.COUNTS})
            run.detail = {k: v for k, v in summary.items() if k not in logs.COUNTS}
            if summary["stopped_by"] == "interrupted":
                run.status = "interrupted"
    finally:
        signal.signal(signal.SIGTERM, previous)
    if stats.stopped_by in ("duration", "max-bars", "source exhausted", "stop", "interrupted"):
        with connect(autocommit=True) as conn:
            conn.execute("SELECT ops.feed_ended(%s::bigint, %s::text)", (feed_id, stats.stopped_by))
    if as_json:
        emit_json(summary)
        return
    lat = summary["latency_ms"]
    table = Table(title=f"stream summary ({summary['stopped_by']})", show_header=False)
    for key in (
        "updates",
        "distinct_bars",
        "batches",
        "inserted",
        "updated",
        "unchanged",
        "rejected",
        "coalesced",
        "reconnects",
        "db_errors",
        "api_errors",
        "elapsed_s",
        "updates_per_s",
    ):
        table.add_row(key, str(summary[key]))
    table.add_row("latency p50 / p99 / max (ms)", f"{lat['p50']} / {lat['p99']} / {lat['max']}")
    console.print(table)
