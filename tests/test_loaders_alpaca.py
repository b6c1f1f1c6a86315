"""The Alpaca adapter, without network: real alpaca-py ``BarSet``s built from v2 bars JSON, real ``APIError``s."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.models import BarSet
from click.testing import CliRunner
from requests.models import Response

from loaders._retry import NetworkUnreachable, RetriesExhausted, RetryPolicy
from loaders.alpaca_loader import load_alpaca, normalize_barset, timeframe
from pgtrade.cli import main
from pgtrade.errors import PgtradeError

FIXTURES = Path(__file__).parent / "fixtures"
KEY, SECRET = "PKTESTKEY0123456789", "sEcReT/abcdefghijklmnopqrstuvwxyz0123456"


def barset(name: str, rename: dict[str, str] | None = None) -> BarSet:
    """What ``get_stock_bars`` returns: a BarSet over the response's ``bars`` object (alpaca-py's own parsing)."""
    raw = json.loads((FIXTURES / name).read_text())["bars"]
    return BarSet({(rename or {}).get(k, k): v for k, v in raw.items()})


def api_error(status: int, body: str, headers: dict | None = None) -> APIError:
    """An APIError made the way alpaca-py's RESTClient makes it (response text + the requests HTTPError)."""
    r = Response()
    r.status_code, r._content, r.url, r.encoding = (
        status,
        body.encode(),
        "https://data.alpaca.markets/v2/stocks/bars",
        "utf-8",
    )
    r.headers.update(headers or {})
    try:
        r.raise_for_status()
    except requests.HTTPError as exc:
        return APIError(r.text, exc)
    raise AssertionError("not an error status")


class Script:
    """A fetch function: raises the scripted errors first, then returns the BarSet."""

    def __init__(self, result, errors=()):
        self.result, self.errors, self.calls = result, list(errors), []

    def __call__(self, symbols, start, end, interval):
        self.calls.append((tuple(symbols), start, end, interval))
        if self.errors:
            raise self.errors.pop(0)
        return self.result


class FakeClock:
    def __init__(self):
        self.sleeps: list[float] = []

    def sleep(self, s):
        self.sleeps.append(s)


START = datetime(2024, 3, 8, tzinfo=UTC)


def test_minute_bars_keep_their_utc_stamps_and_are_stored(db, unique_symbol):
    a, m = unique_symbol + "A", unique_symbol + "M"
    fetch = Script(barset("alpaca_bars_1min.json", {"AAPL": a, "MSFT": m}))
    report = load_alpaca(db, [a, m], start=START, end=None, interval="1m", fetch=fetch)
    assert (report.per_symbol[a].inserted, report.per_symbol[m].inserted, report.total.rejected) == (3, 2, 0)
    rows = db.execute(
        "SELECT ts, open, low, volume, source FROM market.bars WHERE symbol = %s ORDER BY ts", (a,)
    ).fetchall()
    assert [r[0] for r in rows] == [
        datetime(2024, 3, 8, 14, 30, tzinfo=UTC),
        datetime(2024, 3, 8, 14, 31, tzinfo=UTC),
        datetime(2024, 3, 11, 13, 30, tzinfo=UTC),
    ]
    assert rows[2][1:] == (Decimal("172.94"), Decimal("172.055"), Decimal("289433"), "alpaca")


def test_daily_bars_become_calendar_dates_in_summer_and_winter():
    bars = list(normalize_barset(barset("alpaca_bars_1day.json"), interval="1d"))
    # Alpaca stamps a day at 00:00 New York: 05:00 UTC in January, 04:00 UTC in July
    assert [b.ts for b in bars] == [
        datetime(2024, 1, 2, tzinfo=UTC),
        datetime(2024, 1, 3, tzinfo=UTC),
        datetime(2024, 7, 1, tzinfo=UTC),
    ]


def test_interval_codes_map_to_timeframes():
    assert [str(timeframe(i).value) for i in ("1m", "5m", "1h", "4h", "1d")] == [
        "1Min",
        "5Min",
        "1Hour",
        "4Hour",
        "1Day",
    ]
    with pytest.raises(PgtradeError, match="no '2m' bars"):
        timeframe("2m")


def test_429_honours_retry_after_then_succeeds(db, unique_symbol):
    errors = [
        api_error(429, '{"message":"too many requests."}', {"Retry-After": "7"}),
        api_error(503, "Service Unavailable"),
    ]
    fetch = Script(barset("alpaca_bars_1min.json", {"AAPL": unique_symbol, "MSFT": unique_symbol + "M"}), errors)
    clock = FakeClock()
    report = load_alpaca(
        db,
        [unique_symbol],
        start=START,
        end=None,
        interval="1m",
        fetch=fetch,
        sleep=clock.sleep,
        policy=RetryPolicy(attempts=5, base=1, cap=60, total=300),
    )
    assert report.per_symbol[unique_symbol].inserted == 3 and len(fetch.calls) == 3
    assert clock.sleeps[0] == 7  # Retry-After outweighs the 1st backoff (<= 1 s)
    assert 1 <= clock.sleeps[1] <= 2  # then exponential backoff with jitter


def test_gives_up_after_n_attempts_and_a_too_long_retry_after_stops_early(db):
    fetch = Script(None, [api_error(429, '{"message":"too many requests."}')] * 9)
    clock = FakeClock()
    with pytest.raises(RetriesExhausted, match=r"^alpaca bars: gave up after 4 attempts in .*HTTP 429"):
        load_alpaca(
            db,
            ["AAPL"],
            start=START,
            end=None,
            interval="1m",
            fetch=fetch,
            sleep=clock.sleep,
            policy=RetryPolicy(attempts=4, base=0.5, cap=60, total=300),
        )
    assert len(fetch.calls) == 4 and len(clock.sleeps) == 3
    fetch = Script(None, [api_error(429, "{}", {"Retry-After": "3600"})])
    with pytest.raises(RetriesExhausted, match="gave up after 1 attempt "):
        load_alpaca(
            db,
            ["AAPL"],
            start=START,
            end=None,
            interval="1m",
            fetch=fetch,
            sleep=clock.sleep,
            policy=RetryPolicy(attempts=4, total=300),
        )


def test_a_permanent_error_is_not_retried(db):
    fetch = Script(None, [api_error(422, '{"code":42210000,"message":"invalid symbol: AAPL!"}')])
    clock = FakeClock()
    with pytest.raises(PgtradeError, match="^alpaca bars: HTTP 422$"):
        load_alpaca(db, ["AAPL"], start=START, end=None, interval="1m", fetch=fetch, sleep=clock.sleep)
    assert clock.sleeps == []


def test_missing_keys_is_one_line(db_url, monkeypatch):
    monkeypatch.delenv("ALPACA_API_KEY", raising=False)
    monkeypatch.setenv("ALPACA_SECRET_KEY", SECRET)
    monkeypatch.setenv("PGTRADE_DATABASE_URL", db_url)
    result = CliRunner().invoke(main, ["load", "alpaca", "--symbols", "AAPL", "--start", "2024-01-02"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "error: Alpaca needs API keys: set ALPACA_API_KEY (paper-trading keys work for market data)"
    )
    assert SECRET not in result.output


def test_unreachable_network_is_one_line_and_secrets_never_show(db_url, monkeypatch, caplog):
    """The real alpaca-py client, real keys-shaped env, no route to Alpaca: one line, no key anywhere."""
    monkeypatch.setenv("ALPACA_API_KEY", KEY)
    monkeypatch.setenv("ALPACA_SECRET_KEY", SECRET)
    monkeypatch.setenv("PGTRADE_DATABASE_URL", db_url)
    caplog.set_level(logging.DEBUG)
    result = CliRunner().invoke(main, ["load", "alpaca", "--symbols", "AAPL", "--start", "2024-01-02"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "error: alpaca bars: network unreachable (cannot resolve host "
        "data.alpaca.markets); check the connection or proxy settings"
    )
    for text in (result.output, caplog.text):
        assert KEY not in text and SECRET not in text


def test_secrets_are_scrubbed_from_errors_and_logs(db, monkeypatch, caplog):
    monkeypatch.setenv("ALPACA_API_KEY", KEY)
    monkeypatch.setenv("ALPACA_SECRET_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    # a misbehaving proxy echoing the request headers back in its error text
    echo = f"upstream timeout; headers APCA-API-KEY-ID={KEY} APCA-API-SECRET-KEY={SECRET}"
    fetch = Script(None, [TimeoutError(echo)] * 3)
    with pytest.raises(RetriesExhausted) as info:
        load_alpaca(
            db,
            ["AAPL"],
            start=START,
            end=None,
            interval="1m",
            fetch=fetch,
            sleep=FakeClock().sleep,
            policy=RetryPolicy(attempts=3, total=300),
        )
    assert "APCA-API-SECRET-KEY=***" in str(info.value)
    for text in (str(info.value), caplog.text):
        assert KEY not in text and SECRET not in text


def test_unreachable_from_the_fetch_is_not_retried(db):
    import socket

    fetch = Script(None, [requests.ConnectionError(socket.gaierror(-2, "Name or service not known"))])
    clock = FakeClock()
    with pytest.raises(NetworkUnreachable, match="^alpaca bars: network unreachable"):
        load_alpaca(db, ["AAPL"], start=START, end=None, interval="1m", fetch=fetch, sleep=clock.sleep)
    assert clock.sleeps == [] and len(fetch.calls) == 1
