"""The yfinance adapter, without network: the real ``yfinance`` code runs against recorded-style Yahoo chart JSON.

yfinance accepts a requests ``Session`` (its public ``session=`` parameter); the session here has a transport
adapter that answers Yahoo's URLs from tests/fixtures, so ``Ticker.history`` and ``yf.download`` build their
DataFrames exactly as they do from the live API (tz-aware exchange-time index, MultiIndex columns, NaN rows).
"""

from __future__ import annotations

import functools
import json
import logging
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
import requests
import yfinance as yf
from requests.adapters import BaseAdapter
from requests.models import Response
from yfinance._http import new_session
from yfinance.data import YfData

from loaders._retry import NetworkUnreachable, RetriesExhausted, RetryPolicy
from loaders.yfinance_loader import fetch_history, load_yfinance, normalize_frame, yf_interval
from pgtrade.errors import PgtradeError

FIXTURES = Path(__file__).parent / "fixtures"


def chart(name: str, symbol: str | None = None) -> dict:
    data = json.loads((FIXTURES / name).read_text())
    if symbol:
        data["chart"]["result"][0]["meta"]["symbol"] = symbol
    return data


class YahooAdapter(BaseAdapter):
    """Answers Yahoo's chart URLs from fixtures; ``script`` per symbol: a list of statuses to return first."""

    def __init__(self, charts: dict[str, dict], script: dict[str, list[tuple[int, dict]]] | None = None):
        super().__init__()
        self.charts, self.script, self.calls = charts, script or {}, []

    def send(self, request, **kwargs):
        r = Response()
        r.request, r.url, r.encoding, r.status_code = request, request.url, "utf-8", 200
        if "/v8/finance/chart/" in request.url:
            sym = request.url.split("/v8/finance/chart/")[1].split("?")[0]
            if "period1" in request.url:
                self.calls.append(sym)
                queue = self.script.get(sym)
                if queue:
                    r.status_code, headers = queue.pop(0)
                    r.headers.update(headers)
                    r._content = b"Too Many Requests"
                    return r
            r._content = json.dumps(self.charts[sym]).encode()
        elif "getcrumb" in request.url:
            r._content = b"crumb-from-fixture"
        else:
            r._content = b"<html></html>"
        return r

    def close(self):
        pass


@pytest.fixture(autouse=True)
def _yf_state(tmp_path_factory):
    """yfinance keeps one process-wide session and a timezone cache on disk: keep both out of the way."""
    yf.set_tz_cache_location(str(tmp_path_factory.mktemp("yf-tz")))
    yield
    YfData(session=new_session())  # the next test talks to the real (unreachable) Yahoo again


def session_for(adapter: YahooAdapter) -> requests.Session:
    s = requests.Session()
    s.mount("https://", adapter)
    return s


class FakeClock:
    def __init__(self):
        self.t = 0.0
        self.sleeps: list[float] = []

    def sleep(self, s):
        self.sleeps.append(s)
        self.t += s


def test_history_daily_frame_is_normalized_to_calendar_dates_and_stored(db, unique_symbol):
    adapter = YahooAdapter({unique_symbol: chart("yahoo_chart_AAPL_1d.json", unique_symbol)})
    fetch = functools.partial(fetch_history, session=session_for(adapter))
    frame = fetch(unique_symbol, "2024-01-02", "2024-01-06", "1d")
    # what yfinance really returned: midnight New York, tz-aware, 'Adj Close' present
    assert str(frame.index.tz) == "America/New_York" and frame.index.name == "Date"
    assert "Adj Close" in frame.columns
    report = load_yfinance(db, [unique_symbol], start="2024-01-02", end="2024-01-06", interval="1d", fetch=fetch)
    assert (report.total.inserted, report.total.rejected) == (4, 0)
    rows = db.execute(
        "SELECT ts, open, close, volume, source FROM market.bars WHERE symbol = %s AND interval = '1d' ORDER BY ts",
        (unique_symbol,),
    ).fetchall()
    assert [r[0] for r in rows] == [datetime(2024, 1, d, tzinfo=UTC) for d in (2, 3, 4, 5)]
    # unadjusted close (not Adj Close 184.29...), exactly the float Yahoo sent
    assert rows[0][1:] == (Decimal("187.14999389648438"), Decimal("185.63999938964844"), Decimal(82488700), "yfinance")


def test_intraday_across_dst_is_stored_in_utc_and_nan_rows_are_rejects(db, unique_symbol):
    adapter = YahooAdapter({unique_symbol: chart("yahoo_chart_AAPL_5m.json", unique_symbol)})
    fetch = functools.partial(fetch_history, session=session_for(adapter))
    frame = fetch(unique_symbol, "2024-03-08", "2024-03-12", "5m")
    assert str(frame.index.tz) == "America/New_York" and frame.index.name == "Datetime"
    assert frame["Open"].isna().sum() == 1  # keepna=True: the gap is still there
    report = load_yfinance(db, [unique_symbol], start="2024-03-08", end="2024-03-12", interval="5m", fetch=fetch)
    assert (report.total.inserted, report.total.rejected) == (5, 1)
    ts = [
        r[0]
        for r in db.execute("SELECT ts FROM market.bars WHERE symbol = %s ORDER BY ts", (unique_symbol,)).fetchall()
    ]
    # 09:30 New York is 14:30 UTC before the 2024-03-10 DST change and 13:30 UTC after it
    assert ts[0] == datetime(2024, 3, 8, 14, 30, tzinfo=UTC)
    assert ts[3] == datetime(2024, 3, 11, 13, 30, tzinfo=UTC)
    assert db.execute("SELECT ts, reason FROM market.rejected_bars WHERE symbol = %s", (unique_symbol,)).fetchall() == [
        (datetime(2024, 3, 11, 13, 35, tzinfo=UTC), "price is NaN")
    ]


def test_download_multiindex_frame_with_two_tickers(db, unique_symbol):
    a, m = unique_symbol + "A", unique_symbol + "M"
    s = session_for(YahooAdapter({a: chart("yahoo_chart_AAPL_1d.json", a), m: chart("yahoo_chart_MSFT_1d.json", m)}))
    with pytest.warns():
        frame = yf.download(
            [a, m],
            start="2024-01-02",
            end="2024-01-06",
            interval="1d",
            auto_adjust=False,
            keepna=True,
            progress=False,
            threads=False,
            session=s,
        )
    assert isinstance(frame.columns, pd.MultiIndex) and frame.columns.names == ["Price", "Ticker"]
    assert frame.index.tz is None  # download drops the zone of daily bars
    bars = list(normalize_frame(frame, symbols=[a, m], interval="1d"))
    assert len(bars) == 8 and {b.symbol for b in bars} == {a, m}
    assert all(b.ts.tzinfo is UTC and b.ts.hour == 0 for b in bars)
    from pgtrade.ingest import ingest

    report = ingest(db, bars, source="yfinance", auto_register=True)
    # MSFT: Yahoo's null row (01-03) and the row download adds for a date it lacks (01-04) are rejected, not lost
    assert report.per_symbol[m].inserted == 2 and report.per_symbol[m].rejected == 2
    assert report.per_symbol[a].inserted == 4
    assert (
        db.execute(
            "SELECT count(*) FROM market.rejected_bars WHERE symbol = %s AND reason = 'price is NaN'", (m,)
        ).fetchone()[0]
        == 2
    )


def test_interval_codes_map_to_yfinance():
    assert [yf_interval(i) for i in ("1m", "5m", "15m", "30m", "1h", "1d")] == ["1m", "5m", "15m", "30m", "60m", "1d"]
    with pytest.raises(PgtradeError, match="no '4h' bars"):
        yf_interval("4h")


def test_429_is_retried_with_backoff_then_succeeds(db, unique_symbol):
    # yfinance itself repeats a failed request once (other cookie strategy): 4 responses = 2 failed calls
    adapter = YahooAdapter(
        {unique_symbol: chart("yahoo_chart_AAPL_1d.json", unique_symbol)},
        script={unique_symbol: [(429, {"Retry-After": "7"})] * 4},
    )
    fetch = functools.partial(fetch_history, session=session_for(adapter))
    clock = FakeClock()
    report = load_yfinance(
        db,
        [unique_symbol],
        start="2024-01-02",
        end="2024-01-06",
        interval="1d",
        fetch=fetch,
        sleep=clock.sleep,
        policy=RetryPolicy(attempts=5, base=1, cap=60, total=300),
    )
    assert report.total.inserted == 4
    # yfinance turns a 429 into YFRateLimitError and drops Retry-After, so the exponential backoff applies
    assert len(clock.sleeps) == 2 and 0.5 <= clock.sleeps[0] <= 1 and 1 <= clock.sleeps[1] <= 2
    assert adapter.calls.count(unique_symbol) == 5


def test_gives_up_after_the_allowed_attempts_with_one_clear_line(db, unique_symbol):
    adapter = YahooAdapter(
        {unique_symbol: chart("yahoo_chart_AAPL_1d.json", unique_symbol)}, script={unique_symbol: [(429, {})] * 10}
    )
    fetch = functools.partial(fetch_history, session=session_for(adapter))
    clock = FakeClock()
    with pytest.raises(RetriesExhausted) as info:
        load_yfinance(
            db,
            [unique_symbol],
            start="2024-01-02",
            end="2024-01-06",
            interval="1d",
            fetch=fetch,
            sleep=clock.sleep,
            policy=RetryPolicy(attempts=3, base=1, cap=60, total=300),
        )
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"yfinance {unique_symbol}: gave up after 3 attempts")
    assert "Too Many Requests" in msg and len(clock.sleeps) == 2
    assert db.execute("SELECT count(*) FROM market.bars WHERE symbol = %s", (unique_symbol,)).fetchone()[0] == 0


def test_unreachable_network_is_one_line_without_retries(db):
    """The machine has no route to Yahoo: the real client fails on DNS, at once, in one line."""
    clock = FakeClock()
    with pytest.raises(NetworkUnreachable) as info:
        load_yfinance(db, ["AAPL"], start="2024-01-02", end="2024-01-06", interval="1d", sleep=clock.sleep)
    assert str(info.value) == (
        "yfinance AAPL: network unreachable (cannot resolve host query2.finance.yahoo.com); "
        "check the connection or proxy settings"
    )
    assert clock.sleeps == []


def test_cli_unreachable_is_one_line_and_nonzero(db_url, monkeypatch):
    from click.testing import CliRunner

    from pgtrade.cli import main

    monkeypatch.setenv("PGTRADE_DATABASE_URL", db_url)
    result = CliRunner().invoke(main, ["load", "yfinance", "--symbols", "AAPL", "--start", "2024-01-02"])
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: yfinance AAPL: network unreachable"), result.output
    logging.getLogger("yfinance").setLevel(logging.WARNING)
