"""CSV normalization (header spellings, date formats, time zones) and loading through the ingest path."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from loaders.csv_loader import read_csv, read_csv_text
from pgtrade.errors import PgtradeError
from pgtrade.ingest import Bar, Unparsed, ingest


def only_bars(items):
    return [i for i in items if isinstance(i, Bar)]


@pytest.mark.parametrize(
    "header",
    [
        "Date,Open,High,Low,Close,Adj Close,Volume",
        "timestamp,open,high,low,close,volume",
        "Datetime,O,H,L,C,Vol",
        "time;open;high;low;close;volume",
        "DATE,OPEN,HIGH,LOW,CLOSE,VOLUME",
    ],
)
def test_header_spellings(header):
    sep = ";" if ";" in header else ","
    cols = header.split(sep)
    row = {
        "date": "2024-01-05",
        "datetime": "2024-01-05",
        "timestamp": "2024-01-05",
        "time": "2024-01-05",
        "open": "10",
        "o": "10",
        "high": "11",
        "h": "11",
        "low": "9",
        "l": "9",
        "close": "10.5",
        "c": "10.5",
        "adj close": "10.4",
        "volume": "100",
        "vol": "100",
    }
    line = sep.join(row[c.lower()] for c in cols)
    (b,) = list(read_csv_text(f"{header}\n{line}\n", symbol="aapl", interval="1d"))
    assert (b.symbol, b.ts, b.open, b.high, b.low, b.close, b.volume) == (
        "AAPL",
        datetime(2024, 1, 5, tzinfo=UTC),
        "10",
        "11",
        "9",
        "10.5",
        "100",
    )


@pytest.mark.parametrize(
    ("text", "tz", "expected"),
    [
        ("2024-03-04T14:30:00Z", "UTC", datetime(2024, 3, 4, 14, 30, tzinfo=UTC)),
        ("2024-03-04 09:30:00-05:00", "UTC", datetime(2024, 3, 4, 14, 30, tzinfo=UTC)),
        ("2024-03-04 09:30:00", "America/New_York", datetime(2024, 3, 4, 14, 30, tzinfo=UTC)),
        ("2024-07-01 09:30", "America/New_York", datetime(2024, 7, 1, 13, 30, tzinfo=UTC)),  # EDT
        ("03/04/2024 14:30", "UTC", datetime(2024, 3, 4, 14, 30, tzinfo=UTC)),
        ("04.03.2024 14:30:00.000", "UTC", datetime(2024, 3, 4, 14, 30, tzinfo=UTC)),
        ("1709562600", "UTC", datetime(2024, 3, 4, 14, 30, tzinfo=UTC)),
        ("1709562600000", "UTC", datetime(2024, 3, 4, 14, 30, tzinfo=UTC)),
    ],
)
def test_timestamp_formats_and_time_zones(text, tz, expected):
    (b,) = list(read_csv_text(f"ts,open,high,low,close,volume\n{text},1,1,1,1,1\n", symbol="X", interval="1m", tz=tz))
    assert b.ts == expected


def test_daily_bars_are_stamped_with_their_local_date():
    # a daily bar exported with its New York midnight in UTC (05:00Z) is still that calendar date
    (b,) = list(
        read_csv_text(
            "Date,Open,High,Low,Close,Volume\n2024-01-05T05:00:00Z,1,1,1,1,1\n",
            symbol="X",
            interval="1d",
            tz="America/New_York",
        )
    )
    assert b.ts == datetime(2024, 1, 5, tzinfo=UTC)


def test_malformed_rows_become_recorded_rejects_not_crashes(db):
    text = (
        "Date,Open,High,Low,Close,Volume\n"
        "2024-01-02,10,11,9,10.5,100\n"
        "not-a-date,10,11,9,10.5,100\n"
        "2024-01-03,10,11\n"
        "2024-01-04,abc,11,9,10.5,100\n"
        "2024-01-05,10,11,9,10.5,100\n"
    )
    items = list(read_csv_text(text, symbol="CSVX", interval="1d"))
    assert sum(isinstance(i, Unparsed) for i in items) == 2
    report = ingest(db, items, source="test:csv-bad", auto_register=True)
    assert (report.total.inserted, report.total.rejected) == (2, 3)
    reasons = [
        r[0]
        for r in db.execute(
            "SELECT reason FROM market.rejected_bars WHERE source = 'test:csv-bad' ORDER BY id"
        ).fetchall()
    ]
    assert any("unrecognized timestamp 'not-a-date'" in r for r in reasons)
    assert any("3 fields, expected at least 6" in r for r in reasons)
    assert any(r.startswith("not a number") for r in reasons)


def test_header_without_prices_is_one_clear_error():
    with pytest.raises(PgtradeError, match=r"CSV header lacks open, high"):
        list(read_csv_text("Date,Foo,Bar\n2024-01-02,1,2\n", symbol="X", interval="1d"))


def test_injection_in_header_is_just_a_missing_column():
    evil = 'Date,Open,High,Low,"Close); DROP TABLE market.bars; --",Volume'
    with pytest.raises(PgtradeError, match="CSV header lacks close"):
        list(read_csv_text(f"{evil}\n2024-01-02,1,1,1,1,1\n", symbol="X", interval="1d"))


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(PgtradeError, match="no such file"):
        list(read_csv(tmp_path / "nope.csv", symbol="X", interval="1d"))
    bad = tmp_path / "bad.csv.gz"
    bad.write_bytes(b"\x00\x01 not gzip")
    with pytest.raises(PgtradeError, match="not a readable text CSV"):
        list(read_csv(bad, symbol="X", interval="1d"))
    with pytest.raises(PgtradeError, match="unknown time zone"):
        list(read_csv(bad, symbol="X", interval="1d", tz="Mars/Olympus"))


def test_gzip_file_with_symbol_column(tmp_path, db):
    path = tmp_path / "multi.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("symbol,ts,open,high,low,close,volume\nAAA,2024-01-02,1,2,1,2,5\nBBB,2024-01-02,3,4,3,4,6\n")
    report = ingest(db, read_csv(path, symbol=None, interval="1d"), source="test:multi", auto_register=True)
    assert report.total.inserted == 2
    assert db.execute("SELECT close FROM market.bars WHERE symbol = 'BBB'").fetchone()[0] == Decimal(4)
