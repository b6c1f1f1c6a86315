"""The load path end to end: rollups brought up to date by the ingest path itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

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
        # 14:32 .. 16:11 on one day and 14:30 .. 14:39 the next: partial first/last buckets on every level
        bars = minute_bars(unique_symbol, DAY + timedelta(hours=14, minutes=32), 100)
        bars += minute_bars(unique_symbol, DAY + timedelta(days=1, hours=14, minutes=30), 10)
        report = ingest(conn, bars, source="test:rollup-refresh", workers=2)
        assert report.total.inserted == 110
        five = materialized(conn, "bars_5m", unique_symbol)
        hours = materialized(conn, "bars_1h", unique_symbol)
        days = materialized(conn, "bars_1d", unique_symbol)
    assert sum(n for _, n in five) == sum(n for _, n in hours) == sum(n for _, n in days) == 110
    assert five[0][0] == DAY + timedelta(hours=14, minutes=30) and len(five) == 21 + 2
    assert [ts for ts, _ in hours] == [DAY + timedelta(hours=h) for h in (14, 15, 16)] + [
        DAY + timedelta(days=1, hours=14)
    ]
    assert days == [(DAY, 100), (DAY + timedelta(days=1), 10)]


def test_inside_a_callers_transaction_the_refresh_is_left_to_the_caller(db, unique_symbol):
    db.execute("SELECT market.upsert_instrument(%s::text, 'rollup test'::text)", (unique_symbol,))
    report = ingest(db, minute_bars(unique_symbol, DAY, 10), source="test:rollup-intrans")
    assert report.total.inserted == 10 and report.minute_span == (DAY, DAY + timedelta(minutes=9))
    assert materialized(db, "bars_5m", unique_symbol) == []
