"""The load path end to end: rollups brought up to date by the ingest path itself."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from loaders.csv_loader import load_csv, read_csv
from pgtrade.errors import PgtradeError
from pgtrade.ingest import Bar, ingest

DAY = datetime(2023, 3, 6, tzinfo=UTC)  # a Monday, far older than every refresh policy's window


def minute_bars(symbol: str, start: datetime, n: int) -> list[Bar]:
    return [
        Bar(symbol, "1m", start + timedelta(minutes=i), "10", "11", "9", str(10 + (i % 7) / 10), str(100 + i))
        for i in range(n)
    ]


def materialized(conn: psycopg.Connection, view: str, symbol: str) -> list[tuple]:
    """Rows of a continuous aggregate's materialization only (not the real-time part)."""
    schema, table = conn.execute(
        "SELECT materialization_hypertable_schema, materialization_hypertable_name "
        "FROM timescaledb_information.continuous_aggregates WHERE view_schema = 'market' AND view_name = %s",
        (view,),
    ).fetchone()
    return conn.execute(
        psycopg.sql.SQL("SELECT ts, bars FROM {}.{} WHERE symbol = %s ORDER BY ts").format(
            psycopg.sql.Identifier(schema), psycopg.sql.Identifier(table)
        ),
        (symbol,),
    ).fetchall()


def test_a_minute_backfill_is_materialized_in_every_rollup_by_the_ingest_path(db_url, unique_symbol):
    with psycopg.connect(db_url) as conn:
        conn.execute("SELECT market.upsert_instrument(%s::text, 'rollup test'::text)", (unique_symbol,))
        conn.commit()
        # a later bar first, refreshed: every aggregate's invalidation threshold is then past the backfill below,
        # which therefore needs the invalidation (or, after a direct COPY, the forced refresh) to show
        later = ingest(conn, minute_bars(unique_symbol, DAY + timedelta(days=400, hours=15), 1), source="test:later")
        assert later.total.inserted == 1
        # 14:32 .. 16:11 on one day and 14:30 .. 14:39 the next: partial first/last buckets on every level
        bars = minute_bars(unique_symbol, DAY + timedelta(hours=14, minutes=32), 100)
        bars += minute_bars(unique_symbol, DAY + timedelta(days=1, hours=14, minutes=30), 10)
        report = ingest(conn, bars, source="test:rollup-refresh", workers=2)
        assert report.total.inserted == 110
        cut = DAY + timedelta(days=2)
        five = [r for r in materialized(conn, "bars_5m", unique_symbol) if r[0] < cut]
        hours = [r for r in materialized(conn, "bars_1h", unique_symbol) if r[0] < cut]
        days = [r for r in materialized(conn, "bars_1d", unique_symbol) if r[0] < cut]
    assert sum(n for _, n in five) == sum(n for _, n in hours) == sum(n for _, n in days) == 110
    assert five[0][0] == DAY + timedelta(hours=14, minutes=30) and len(five) == 21 + 2
    assert [ts for ts, _ in hours] == [DAY + timedelta(hours=h) for h in (14, 15, 16)] + [
        DAY + timedelta(days=1, hours=14)
    ]
    assert days == [(DAY, 100), (DAY + timedelta(days=1), 10)]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"h": "8"}, "high is below open, close or low"),
        ({"ts": datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(hours=2)}, "timestamp is in the future"),
        ({"symbol": "NOSUCHSYMBOL1"}, "unknown symbol"),
    ],
)
def test_a_committed_batch_with_one_bad_bar_keeps_the_rest_and_records_the_reject(db_url, unique_symbol, bad, reason):
    """New bars are COPYed straight into market.bars when the whole batch passes its check; one bad bar sends the
    batch through the staging path, which keeps the others and records the bad one with its reason."""
    with psycopg.connect(db_url) as conn:
        conn.execute("SELECT market.upsert_instrument(%s::text, 'direct test'::text)", (unique_symbol,))
        conn.commit()
        bars = minute_bars(unique_symbol, DAY + timedelta(days=30, hours=14, minutes=30), 20)
        fields = {"symbol": unique_symbol, "ts": DAY + timedelta(days=31, hours=15), "h": "11"} | bad
        bars.append(Bar(fields["symbol"], "1m", fields["ts"], "10", fields["h"], "9", "10.5", "1"))
        report = ingest(conn, bars, source=f"test:{unique_symbol}")
        assert (report.total.inserted, report.total.rejected) == (20, 1)
        assert conn.execute(
            "SELECT reason FROM market.rejected_bars WHERE source = %s", (f"test:{unique_symbol}",)
        ).fetchall() == [(reason,)]
        conn.commit()
        clean = ingest(conn, minute_bars(unique_symbol, DAY + timedelta(days=32, hours=14), 30), source="test:clean")
        assert clean.needs_forced_refresh and clean.total.inserted == 30  # the direct COPY, refreshed by force
        assert sum(n for ts, n in materialized(conn, "bars_1d", unique_symbol) if ts >= DAY + timedelta(days=32)) == 30


def test_inside_a_callers_transaction_the_refresh_is_left_to_the_caller(db, unique_symbol):
    db.execute("SELECT market.upsert_instrument(%s::text, 'rollup test'::text)", (unique_symbol,))
    report = ingest(db, minute_bars(unique_symbol, DAY, 10), source="test:rollup-intrans")
    assert report.total.inserted == 10 and report.minute_span == (DAY, DAY + timedelta(minutes=9))
    assert materialized(db, "bars_5m", unique_symbol) == []


# ---------------------------------------------------------------- CSV files as bytes (market.ingest_csv)

CSV_CASES = {
    "iso_z": ("timestamp,open,high,low,close,volume\n2024-03-04T14:30:00Z,10,11,9,10.5,100\n", "1m", "UTC"),
    "offset": ("ts,open,high,low,close,volume\n2024-03-04 09:30:00-05:00,10,11,9,10.5,100\n", "1m", "UTC"),
    "naive_in_tz": ("ts,open,high,low,close,volume\n2024-07-01 09:30,10,11,9,10.5,1\n", "1m", "America/New_York"),
    "us_dates": ("Date,Open,High,Low,Close,Volume\n03/04/2024 14:30,10,11,9,10.5,1\n", "1m", "UTC"),
    "european": ("Local time;Open;High;Low;Close;Volume\n04.03.2024 14:30:00.000;10;11;9;10.5;1\n", "1m", "UTC"),
    "epoch_s_and_ms": ("t,o,h,l,c,v\n1709562600,10,11,9,10.5,1\n1709562660000,10,11,9,10.5,1\n", "1m", "UTC"),
    "daily_local_date": (
        "Date,Open,High,Low,Close\n2024-01-05T05:00:00Z,1,1,1,1\n20240108,2,2,2,2\n",
        "1d",
        "America/New_York",
    ),
    "quoted_and_blank": (
        'Date,Open,High,Low,Close,Volume\n"2024-01-02",10,11,9,"10.5",100\n\n , , \n2024-01-03,10,11,9,10,\n',
        "1d",
        "UTC",
    ),
    "crlf_bom_tabs": (
        "\ufeffDate\tOpen\tHigh\tLow\tClose\tVolume\r\n2024-01-02\t10\t11\t9\t10.5\t100\r\n",
        "1d",
        "UTC",
    ),
    "bad_rows": (
        "Date,Open,High,Low,Close,Volume\n2024-01-02,10,11,9,10.5,100\nnot-a-date,10,11,9,10.5,100\n2024-01-03,10,11\n"
        '2024-01-04,abc,11,9,10.5,100\n2024-01-05,"1,234.5",11,9,10.5,100\n2024-01-08,10,9,9,10,1\n2024-01-09,NaN,11,9,10,1\n'
        "2024-01-10,10,11,9,10.5,100",
        "1d",
        "UTC",
    ),
    "out_of_range_fields": (
        "Date,Open,High,Low,Close,Volume\n2024-01-02,10,11,9,10.5,100\n2024-02-30,10,11,9,10.5,100\n"
        "2024-01-04,10,11,9,10.5,100\n",
        "1d",
        "UTC",
    ),
}


@pytest.mark.parametrize("case", sorted(CSV_CASES))
def test_csv_bytes_path_stores_what_the_python_reader_stores(db_url, tmp_path, unique_symbol, case):
    """The same file through read_csv + ingest (a Python object per row) and through load_csv (bytes, typed in SQL):
    the same bars stored and the same number of rejects, with a reason and the raw line for each."""
    text, interval, tz = CSV_CASES[case]
    path = tmp_path / "bars.csv"
    path.write_bytes(text.encode())
    with psycopg.connect(db_url) as conn:
        syms = (f"{unique_symbol}P", f"{unique_symbol}B")
        for s in syms:
            conn.execute("SELECT market.upsert_instrument(%s::text, 'csv test'::text)", (s,))
        conn.commit()
        py = ingest(conn, read_csv(path, symbol=syms[0], interval=interval, tz=tz), source=f"test:{syms[0]}")
        by = load_csv(conn, path, symbol=syms[1], interval=interval, tz=tz, source=f"test:{syms[1]}", batch_lines=2)
        stored = [
            conn.execute(
                "SELECT interval, ts, open, high, low, close, volume FROM market.bars WHERE symbol = %s ORDER BY ts",
                (s,),
            ).fetchall()
            for s in syms
        ]
        rejected = conn.execute(
            "SELECT reason, raw FROM market.rejected_bars WHERE source = %s ORDER BY id", (f"test:{syms[1]}",)
        ).fetchall()
    assert stored[0] == stored[1] and stored[1]
    assert (by.total.inserted, by.total.rejected) == (py.total.inserted, py.total.rejected)
    assert len(rejected) == by.total.rejected
    reasons = dict(rejected)  # reason -> raw line (NULL for lines that parsed but broke a bar rule)
    if case == "bad_rows":
        assert reasons == {
            "line 3: unrecognized timestamp 'not-a-date'": "not-a-date,10,11,9,10.5,100",
            "line 4: 3 fields, expected at least 6": "2024-01-03,10,11",
            "not a number: 'abc'": "2024-01-04,abc,11,9,10.5,100",
            "not a number: '1,234.5'": '2024-01-05,"1,234.5",11,9,10.5,100',
            "high is below open, close or low": None,
            "price is NaN": None,
        }
    if case == "out_of_range_fields":
        assert reasons == {
            "line 3: unrecognized timestamp '2024-02-30'": "2024-02-30,10,11,9,10.5,100",
        }


def test_csv_bytes_path_batches_keep_file_line_numbers_and_refresh_the_rollups(db_url, tmp_path, unique_symbol):
    lines = ["ts,open,high,low,close,volume"]
    for i in range(250):
        ts = DAY + timedelta(hours=14, minutes=30 + i)
        lines.append(f"{ts:%Y-%m-%d %H:%M:%S}+00,10,11,9,10.5,{i}" if i != 137 else "garbage,1,1,1,1,1")
    path = tmp_path / "bars.csv.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    seen: list[int] = []
    with psycopg.connect(db_url) as conn:
        report = load_csv(
            conn, path, symbol=unique_symbol, interval="1m", auto_register=True, batch_lines=60, on_batch=seen.append
        )
        assert (report.total.inserted, report.total.rejected) == (249, 1)
        assert sorted(seen) == [10, 60, 60, 60, 60]
        assert conn.execute(
            "SELECT reason FROM market.rejected_bars WHERE symbol = %s", (unique_symbol,)
        ).fetchone() == ("line 139: unrecognized timestamp 'garbage'",)
        assert sum(n for _, n in materialized(conn, "bars_1h", unique_symbol)) == 249
        assert conn.execute(
            "SELECT auto_registered FROM market.instruments WHERE symbol = %s", (unique_symbol,)
        ).fetchone() == (True,)


def test_csv_bytes_path_refuses_binary_files_in_one_line(db_url, tmp_path):
    path = tmp_path / "bin.csv"
    path.write_bytes(b"ts,open,high,low,close\n2024-01-02,1,1,1,1\n\xff\xfe\x00garbage\n")
    with psycopg.connect(db_url) as conn, pytest.raises(PgtradeError, match="not a readable text CSV"):
        load_csv(conn, path, symbol="X", interval="1d")


def test_csv_bytes_path_turns_a_number_out_of_numeric_range_into_a_reject(db_url, tmp_path, unique_symbol):
    path = tmp_path / "huge.csv"
    path.write_text("Date,Open,High,Low,Close,Volume\n2024-01-02,10,11,9,10.5,100\n2024-01-03,1e999999999,11,9,10,1\n")
    with psycopg.connect(db_url) as conn:
        report = load_csv(conn, path, symbol=unique_symbol, interval="1d", auto_register=True)
        assert (report.total.inserted, report.total.rejected) == (1, 1)
        assert conn.execute(
            "SELECT reason, raw FROM market.rejected_bars WHERE symbol = %s", (unique_symbol,)
        ).fetchone() == ("not a number: '1e999999999'", "2024-01-03,1e999999999,11,9,10,1")
