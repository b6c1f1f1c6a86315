"""Yahoo Finance bars (the ``yfinance`` package) -> normalized ``Bar``s, sent through the one ingest path.

What yfinance returns, and what becomes of it here:

- ``Ticker.history`` gives one frame per symbol: columns Open, High, Low, Close, Adj Close (with
  ``auto_adjust=False``), Volume; index ``Datetime`` (intraday: tz-aware, exchange time) or ``Date`` (daily:
  tz-aware midnight in exchange time). ``yf.download`` for several tickers gives MultiIndex columns
  (Price, Ticker) -- or (Ticker, Price) with ``group_by='ticker'`` -- and a tz-naive index for daily bars.
  Both shapes are accepted.
- Intraday timestamps are converted to UTC; a daily bar is stamped with its calendar date at 00:00 UTC (as
  ``csv_loader.daily_stamp`` does). A tz-naive intraday index is localized in ``exchange_tz``.
- Prices are unadjusted (``auto_adjust=False``); 'Adj Close', dividends and splits are ignored.
- Rows with NaN prices (Yahoo's gaps, and the rows ``yf.download`` adds when tickers' dates differ) are kept
  (``keepna=True``) and sent as they are, so the database records each as a reject with its reason.
- Yahoo stamps hourly US-equity bars at hh:30 (the session opens 09:30); pgtrade accepts 1h and 4h bars that
  open on the hour or the half hour (market.alignment_grid), so they are stored as stamped, not shifted.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pandas as pd
import psycopg

from pgtrade.errors import PgtradeError
from pgtrade.ingest import Bar, IngestReport, Unparsed, ingest

from ._retry import RetryPolicy, retry_call

#: pgtrade interval code -> yfinance interval
INTERVALS = {"1m": "1m", "5m": "5m", "15m": "15m", "30m": "30m", "1h": "60m", "1d": "1d"}
_FIELDS = {"open": "Open", "high": "High", "low": "Low", "close": "Close", "volume": "Volume"}

#: fetch(symbol, start, end, yf_interval) -> DataFrame shaped like ``Ticker.history`` (or ``yf.download``)
Fetch = Callable[[str, "date | datetime | str | None", "date | datetime | str | None", str], pd.DataFrame]


def yf_interval(interval: str) -> str:
    try:
        return INTERVALS[interval]
    except KeyError:
        raise PgtradeError(f"yfinance has no {interval!r} bars; use one of {', '.join(INTERVALS)}") from None


def fetch_history(symbol: str, start, end, interval: str, *, session=None) -> pd.DataFrame:
    """One symbol's bars from Yahoo via ``Ticker.history``, raising errors (so they can be retried) instead of
    logging them. ``session``: a requests or curl_cffi Session (yfinance's own parameter; tests pass one that
    serves recorded responses)."""
    import yfinance as yf

    yf.config.debug.hide_exceptions = False
    logging.getLogger("yfinance").setLevel(logging.ERROR)  # its warnings would break the one-line errors
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return yf.Ticker(symbol, session=session).history(
            start=start,
            end=end,
            interval=interval,
            auto_adjust=False,
            actions=False,
            keepna=True,
            prepost=False,
            repair=False,
            timeout=20,
        )


def _per_symbol(frame: pd.DataFrame, symbols: Sequence[str]) -> Iterator[tuple[str, pd.DataFrame]]:
    cols = frame.columns
    if isinstance(cols, pd.MultiIndex):
        price_level = next((i for i in range(cols.nlevels) if "Close" in set(cols.get_level_values(i))), None)
        if price_level is None:
            raise PgtradeError("yfinance frame has no Close column")
        ticker_level = 1 - price_level
        for ticker in dict.fromkeys(cols.get_level_values(ticker_level)):
            yield str(ticker), frame.xs(ticker, axis=1, level=ticker_level)
        return
    if len(symbols) != 1:
        raise PgtradeError("a single-level yfinance frame needs exactly one symbol")
    yield symbols[0], frame


def _stamp(ts: pd.Timestamp, *, daily: bool, zone: ZoneInfo) -> datetime:
    if daily:
        # Yahoo's daily index is midnight in exchange time (tz-aware) or a plain date (download, tz-naive):
        # either way the bar's calendar date is the index's own date.
        return datetime(ts.year, ts.month, ts.day, tzinfo=UTC)
    if ts.tzinfo is None:
        ts = ts.tz_localize(zone)
    return ts.tz_convert("UTC").to_pydatetime()


def _value(v):
    """A float (NaN stays NaN: the database rejects it with its reason); odd values as text (rejected too)."""
    if v is None:
        return float("nan")
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


def normalize_frame(
    frame: pd.DataFrame, *, symbols: Sequence[str], interval: str, exchange_tz: str = "America/New_York"
) -> Iterator[Bar | Unparsed]:
    """Bars of a yfinance frame (see the module docstring for the shapes and rules)."""
    if frame is None or frame.empty:
        return
    daily = interval == "1d"
    zone = ZoneInfo(exchange_tz)
    for symbol, df in _per_symbol(frame, [s.upper() for s in symbols]):
        sym = symbol.strip().upper()
        missing = [name for name in ("Open", "High", "Low", "Close") if name not in df.columns]
        if missing:
            yield Unparsed(
                raw=",".join(map(str, df.columns))[:500],
                symbol=sym,
                interval=interval,
                problem=f"yfinance frame lacks {', '.join(missing)}",
            )
            continue
        if not isinstance(df.index, pd.DatetimeIndex):
            raise PgtradeError("yfinance frame has no datetime index")
        for ts, row in zip(df.index, df.itertuples(index=False, name=None), strict=True):
            rec = dict(zip(df.columns, row, strict=True))
            if pd.isna(ts):
                yield Unparsed(raw=repr(rec)[:500], problem="missing timestamp", symbol=sym, interval=interval)
                continue
            yield Bar(
                symbol=sym,
                interval=interval,
                ts=_stamp(ts, daily=daily, zone=zone),
                open=_value(rec["Open"]),
                high=_value(rec["High"]),
                low=_value(rec["Low"]),
                close=_value(rec["Close"]),
                volume=_value(rec.get("Volume", 0)),
            )


def fetch_bars(
    symbols: Sequence[str],
    *,
    start,
    end,
    interval: str,
    fetch: Fetch = fetch_history,
    policy: RetryPolicy = RetryPolicy(),
    sleep=None,
    exchange_tz: str = "America/New_York",
    on_retry=None,
) -> Iterator[Bar | Unparsed]:
    """Fetch each symbol (with retries) and yield its normalized bars."""
    yfi = yf_interval(interval)
    extra = {"sleep": sleep} if sleep else {}
    for sym in symbols:
        frame = retry_call(
            lambda s=sym: fetch(s, start, end, yfi), what=f"yfinance {sym}", policy=policy, on_retry=on_retry, **extra
        )
        yield from normalize_frame(frame, symbols=[sym], interval=interval, exchange_tz=exchange_tz)


def load_yfinance(
    conn: psycopg.Connection,
    symbols: Sequence[str],
    *,
    start,
    end,
    interval: str,
    fetch: Fetch = fetch_history,
    policy: RetryPolicy = RetryPolicy(),
    sleep=None,
    auto_register: bool = True,
    asset_class: str = "stock",
) -> IngestReport:
    """Load Yahoo bars for ``symbols`` through the ingest path (one transaction per symbol)."""
    report = IngestReport()
    for sym in symbols:
        bars = list(fetch_bars([sym], start=start, end=end, interval=interval, fetch=fetch, policy=policy, sleep=sleep))
        report.merge(ingest(conn, bars, source="yfinance", auto_register=auto_register, asset_class=asset_class))
    return report
