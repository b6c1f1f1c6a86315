"""Alpaca market-data bars (alpaca-py) -> normalized ``Bar``s, sent through the one ingest path.

alpaca-py's ``StockHistoricalDataClient.get_stock_bars(StockBarsRequest)`` returns a ``BarSet`` whose ``data`` maps
each symbol to ``Bar`` objects (``timestamp`` = bar open, aware UTC; floats for prices and volume). Intraday bars
keep their UTC stamp; a daily bar (Alpaca stamps it at 00:00 New York time, i.e. 04:00 or 05:00 UTC) becomes its
calendar date at 00:00 UTC, as ``csv_loader.daily_stamp`` does.

Keys come from ``ALPACA_API_KEY`` / ``ALPACA_SECRET_KEY`` only; they are never printed or logged, and every error
text is scrubbed of them. The client's own 429 retry (fixed 3 s sleeps) is switched off so that ``_retry`` handles
rate limits with backoff, jitter and ``Retry-After``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import psycopg

from pgtrade.errors import PgtradeError
from pgtrade.ingest import Bar, IngestReport, Unparsed, ingest

from ._retry import RetryPolicy, retry_call
from .csv_loader import daily_stamp

KEY_ENV, SECRET_ENV = "ALPACA_API_KEY", "ALPACA_SECRET_KEY"
_NEW_YORK = ZoneInfo("America/New_York")
#: pgtrade interval code -> (amount, TimeFrameUnit name)
INTERVALS = {
    "1m": (1, "Minute"),
    "5m": (5, "Minute"),
    "15m": (15, "Minute"),
    "30m": (30, "Minute"),
    "1h": (1, "Hour"),
    "4h": (4, "Hour"),
    "1d": (1, "Day"),
}

#: fetch(symbols, start, end, interval) -> alpaca.data.models.BarSet
Fetch = Callable[[Sequence[str], datetime, datetime | None, str], object]


def credentials(env: dict | None = None) -> tuple[str, str]:
    env = os.environ if env is None else env
    key, secret = env.get(KEY_ENV, "").strip(), env.get(SECRET_ENV, "").strip()
    if not key or not secret:
        missing = " and ".join(n for n, v in ((KEY_ENV, key), (SECRET_ENV, secret)) if not v)
        raise PgtradeError(f"Alpaca needs API keys: set {missing} (paper-trading keys work for market data)")
    return key, secret


def timeframe(interval: str):
    from alpaca.data.timeframe import TimeFrame, TimeFrameUnit

    try:
        amount, unit = INTERVALS[interval]
    except KeyError:
        raise PgtradeError(f"Alpaca has no {interval!r} bars here; use one of {', '.join(INTERVALS)}") from None
    return TimeFrame(amount, TimeFrameUnit[unit])


def client_fetch(*, feed: str = "iex", env: dict | None = None) -> Fetch:
    """A fetch function backed by a real ``StockHistoricalDataClient`` (keys from the environment)."""
    from alpaca.data.enums import Adjustment, DataFeed
    from alpaca.data.historical import StockHistoricalDataClient
    from alpaca.data.requests import StockBarsRequest

    key, secret = credentials(env)
    client = StockHistoricalDataClient(key, secret)
    # The client retries 429/504 itself with fixed 3 s sleeps and no Retry-After; its constructor has no switch
    # for that, so turn it off on the instance (RESTClient._retry) and let retry_call back off instead.
    client._retry = 0

    def fetch(symbols, start, end, interval):
        req = StockBarsRequest(
            symbol_or_symbols=list(symbols),
            timeframe=timeframe(interval),
            start=start,
            end=end,
            adjustment=Adjustment.RAW,
            feed=DataFeed(feed),
        )
        return client.get_stock_bars(req)

    return fetch


def _num(v):
    return float("nan") if v is None else float(v)


def normalize_barset(barset, *, interval: str) -> Iterator[Bar | Unparsed]:
    """pgtrade bars from an alpaca-py ``BarSet`` (or a dict symbol -> list of alpaca ``Bar``)."""
    data = getattr(barset, "data", barset) or {}
    daily = interval == "1d"
    for symbol, bars in data.items():
        sym = str(symbol).strip().upper()
        for b in bars:
            ts = getattr(b, "timestamp", None)
            if not isinstance(ts, datetime):
                yield Unparsed(
                    raw=repr(b)[:500], problem="alpaca bar without a timestamp", symbol=sym, interval=interval
                )
                continue
            if ts.tzinfo is None:  # alpaca-py parses RFC 3339 'Z' stamps as aware UTC; be explicit if not
                ts = ts.replace(tzinfo=UTC)
            ts = daily_stamp(ts, _NEW_YORK) if daily else ts.astimezone(UTC)
            yield Bar(
                symbol=sym,
                interval=interval,
                ts=ts,
                open=_num(b.open),
                high=_num(b.high),
                low=_num(b.low),
                close=_num(b.close),
                volume=_num(b.volume),
            )


def fetch_bars(
    symbols: Sequence[str],
    *,
    start: datetime,
    end: datetime | None,
    interval: str,
    fetch: Fetch,
    policy: RetryPolicy = RetryPolicy(),
    secrets: Sequence[str] = (),
    sleep=None,
    on_retry=None,
) -> list[Bar | Unparsed]:
    timeframe(interval)  # validate before any request
    extra = {"sleep": sleep} if sleep else {}
    barset = retry_call(
        lambda: fetch(list(symbols), start, end, interval),
        what="alpaca bars",
        policy=policy,
        secrets=secrets,
        on_retry=on_retry,
        **extra,
    )
    return list(normalize_barset(barset, interval=interval))


def load_alpaca(
    conn: psycopg.Connection,
    symbols: Sequence[str],
    *,
    start: datetime,
    end: datetime | None,
    interval: str,
    fetch: Fetch | None = None,
    feed: str = "iex",
    policy: RetryPolicy = RetryPolicy(),
    sleep=None,
    auto_register: bool = True,
    asset_class: str = "stock",
) -> IngestReport:
    """Load Alpaca bars for ``symbols`` through the ingest path."""
    secrets = tuple(v for v in (os.environ.get(KEY_ENV), os.environ.get(SECRET_ENV)) if v)
    if fetch is None:
        fetch = client_fetch(feed=feed)
    bars = fetch_bars(
        symbols, start=start, end=end, interval=interval, fetch=fetch, policy=policy, secrets=secrets, sleep=sleep
    )
    return ingest(conn, bars, source="alpaca", auto_register=auto_register, asset_class=asset_class)
