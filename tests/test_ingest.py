"""The one ingest path: validation rules, rejects recorded with reasons, idempotent upsert, corrections."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from pgtrade.ingest import Bar, Unparsed, ingest

T0 = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)


def bar(symbol, ts=T0, o="10", h="11", low="9", c="10.5", v="100", interval="1m"):
    return Bar(symbol=symbol, interval=interval, ts=ts, open=o, high=h, low=low, close=c, volume=v)


def rejects(db, source):
    return db.execute("SELECT reason FROM market.rejected_bars WHERE source = %s ORDER BY id", (source,)).fetchall()


def register(db, symbol, **kw):
    db.execute("SELECT market.upsert_instrument(%s::text, 'test'::text)", (symbol,))


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"o": "NaN"}, "price is NaN"),
        ({"c": float("nan")}, "price is NaN"),
        ({"h": "Infinity"}, "price is infinite"),
        ({"low": float("-inf")}, "price is infinite"),
        ({"o": "0", "low": "0"}, "price is zero or negative"),
        ({"o": "-1", "low": "-2"}, "price is zero or negative"),
        ({"h": "8", "low": "7"}, "high is below open, close or low"),
        ({"h": "11", "low": "10.2"}, "low is above open or close"),
        ({"v": "-5"}, "volume is negative"),
        ({"v": "NaN"}, "volume is not finite"),
        ({"ts": T0 + timedelta(seconds=15)}, "timestamp is not aligned to the interval (UTC)"),
        ({"ts": datetime(2024, 3, 4, 14, 30, 0, 123, tzinfo=UTC)}, "timestamp is not aligned to the interval (UTC)"),
        ({"ts": datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(hours=2)}, "timestamp is in the future"),
        ({"interval": "7m"}, "unknown interval"),
        ({"interval": "1h", "ts": T0 + timedelta(minutes=15)}, "timestamp is not aligned to the interval (UTC)"),
        ({"interval": "1d", "ts": T0}, "timestamp is not aligned to the interval (UTC)"),
        ({"ts": datetime(2024, 3, 4, 14, 30)}, "timestamp has no time zone"),
        ({"o": "1,234.5"}, "not a number"),
    ],
)
def test_each_validation_rule_rejects_with_its_reason(db, kwargs, reason):
    register(db, "RULES")
    report = ingest(db, [bar("RULES", **kwargs)], source="test:rules")
    assert report.total.rejected == 1 and report.total.inserted == 0
    ((got,),) = rejects(db, "test:rules")
    assert got.startswith(reason)
    assert db.execute("SELECT count(*) FROM market.bars WHERE symbol = 'RULES'").fetchone()[0] == 0


def test_hourly_bars_may_open_on_the_half_hour(db):
    register(db, "HALF")
    report = ingest(
        db,
        [
            bar("HALF", interval="1h", ts=T0),
            bar("HALF", interval="1h", ts=T0 + timedelta(minutes=30)),
            bar("HALF", interval="4h", ts=T0),
        ],
        source="test:half",
    )
    assert (report.total.inserted, report.total.rejected) == (3, 0)


def test_valid_bar_is_stored_exactly(db):
    register(db, "EXACT")
    report = ingest(
        db, [bar("EXACT", o="1.05236", h="1.05253", low="1.05221", c="1.05227", v="1.00532E+11")], source="test:exact"
    )
    assert report.total.inserted == 1
    row = db.execute("SELECT open, high, low, close, volume, source FROM market.bars WHERE symbol = 'EXACT'").fetchone()
    assert row == (
        Decimal("1.05236"),
        Decimal("1.05253"),
        Decimal("1.05221"),
        Decimal("1.05227"),
        Decimal("100532000000"),
        "test:exact",
    )


def test_reload_is_idempotent_and_a_correction_replaces_the_bar(db):
    register(db, "IDEM")
    bars = [bar("IDEM", ts=T0 + timedelta(minutes=i)) for i in range(10)]
    first = ingest(db, bars, source="test:idem")
    assert (first.total.inserted, first.total.updated, first.total.unchanged) == (10, 0, 0)
    before = db.execute(
        "SELECT ts, open, close, ingested_at FROM market.bars WHERE symbol = 'IDEM' ORDER BY ts"
    ).fetchall()
    again = ingest(db, bars, source="test:idem")
    assert (again.total.inserted, again.total.updated, again.total.unchanged) == (0, 0, 10)
    assert (
        db.execute("SELECT ts, open, close, ingested_at FROM market.bars WHERE symbol = 'IDEM' ORDER BY ts").fetchall()
        == before
    )
    fixed = ingest(db, [bar("IDEM", ts=T0 + timedelta(minutes=3), c="10.75")], source="test:fix")
    assert (fixed.total.inserted, fixed.total.updated) == (0, 1)
    assert db.execute(
        "SELECT close, source FROM market.bars WHERE symbol = 'IDEM' AND ts = %s", (T0 + timedelta(minutes=3),)
    ).fetchone() == (Decimal("10.75"), "test:fix")


def test_out_of_order_bars_are_accepted_and_duplicates_in_one_load_keep_the_last(db):
    register(db, "DUP")
    items = [
        bar("DUP", ts=T0 + timedelta(minutes=2)),
        bar("DUP", ts=T0),
        bar("DUP", ts=T0 + timedelta(minutes=1)),
        bar("DUP", ts=T0, c="10.9"),
    ]
    report = ingest(db, items, source="test:dup")
    assert report.total.inserted == 3
    assert report.total.rejected == 1
    assert rejects(db, "test:dup") == [("superseded by a later row for the same bar in this load",)]
    assert db.execute("SELECT close FROM market.bars WHERE symbol = 'DUP' AND ts = %s", (T0,)).fetchone()[0] == Decimal(
        "10.9"
    )


def test_unknown_symbol_is_rejected_or_auto_registered_with_a_flag(db):
    report = ingest(db, [bar("NEWSYM")], source="test:unknown")
    assert report.total.rejected == 1
    assert rejects(db, "test:unknown") == [("unknown symbol",)]
    report = ingest(db, [bar("newsym ")], source="test:auto", auto_register=True, asset_class="crypto")
    assert report.total.inserted == 1
    assert db.execute(
        "SELECT asset_class, auto_registered FROM market.instruments WHERE symbol = 'NEWSYM'"
    ).fetchone() == ("crypto", True)


@pytest.mark.parametrize(
    "evil", ["'; DROP TABLE market.bars; --", 'AAPL"); DELETE FROM market.bars; --', "Robert'); DROP TABLE students;--"]
)
def test_sql_injection_in_symbols_is_data_never_executed(db, evil):
    register(db, "SAFE")
    ingest(db, [bar("SAFE")], source="test:safe")
    report = ingest(db, [bar(evil)], source="test:evil", auto_register=True)
    assert report.total.rejected == 1
    row = db.execute("SELECT symbol, reason FROM market.rejected_bars WHERE source = 'test:evil'").fetchone()
    assert row[0] == evil and row[1].startswith("invalid symbol")
    assert db.execute("SELECT count(*) FROM market.bars WHERE symbol = 'SAFE'").fetchone()[0] == 1


def test_unparsed_rows_are_recorded_with_the_raw_text(db):
    report = ingest(
        db, [Unparsed(raw="2024-01-01,abc", problem="line 7: bad", symbol="X", interval="1d")], source="test:unparsed"
    )
    assert report.total.rejected == 1
    assert db.execute("SELECT reason, raw FROM market.rejected_bars WHERE source = 'test:unparsed'").fetchone() == (
        "line 7: bad",
        "2024-01-01,abc",
    )


def test_valid_rows_survive_next_to_invalid_ones(db):
    register(db, "MIXED")
    items = [bar("MIXED", ts=T0 + timedelta(minutes=i)) for i in range(5)]
    items.insert(2, bar("MIXED", ts=T0 + timedelta(minutes=9), o="NaN"))
    report = ingest(db, items, source="test:mixed")
    assert (report.total.inserted, report.total.rejected) == (5, 1)


def test_correcting_a_bar_in_a_compressed_chunk(db):
    register(db, "COMP")
    old = datetime(2020, 1, 6, tzinfo=UTC)
    ingest(db, [bar("COMP", ts=old + timedelta(minutes=i)) for i in range(30)], source="test:comp")
    chunks = db.execute(
        "SELECT show_chunks('market.bars', older_than => %s::timestamptz, newer_than => %s::timestamptz)",
        (old + timedelta(days=40), old - timedelta(days=40)),
    ).fetchall()
    for (chunk,) in chunks:
        db.execute("SELECT compress_chunk(%s::regclass, if_not_compressed => true)", (chunk,))
    assert db.execute(
        "SELECT bool_and(is_compressed) FROM timescaledb_information.chunks WHERE "
        "hypertable_name = 'bars' AND range_start <= %s AND range_end > %s",
        (old, old),
    ).fetchone()[0]
    fixed = ingest(
        db,
        [bar("COMP", ts=old + timedelta(minutes=5), c="10.25"), bar("COMP", ts=old + timedelta(minutes=31))],
        source="test:comp-fix",
    )
    assert (fixed.total.inserted, fixed.total.updated) == (1, 1)
    assert db.execute(
        "SELECT close FROM market.bars WHERE symbol = 'COMP' AND ts = %s", (old + timedelta(minutes=5),)
    ).fetchone()[0] == Decimal("10.25")
    assert db.execute("SELECT count(*) FROM market.bars WHERE symbol = 'COMP'").fetchone()[0] == 31


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (("ZZZNOPE", "1m", "10", "11", "9", "10"), "unknown symbol"),
        (("LASTLINE", "1m", "10", "9", "9", "10"), "high is below"),
        (("LASTLINE", "1m", "NaN", "11", "9", "10"), "price is NaN"),
        (("LASTLINE", "7m", "10", "11", "9", "10"), "unknown interval"),
    ],
)
def test_writes_that_bypass_the_ingest_path_are_still_validated(db, values, reason):
    import psycopg

    register(db, "LASTLINE")
    with pytest.raises(psycopg.errors.CheckViolation, match=reason):
        db.execute(
            "INSERT INTO market.bars (symbol, interval, ts, open, high, low, close, volume, source) "
            "VALUES (%s, %s, %s, %s::numeric, %s::numeric, %s::numeric, %s::numeric, 1, 'direct')",
            (values[0], values[1], T0, *values[2:]),
        )


def test_an_update_that_breaks_a_bar_is_refused(db):
    import psycopg

    register(db, "UPD")
    ingest(db, [bar("UPD")], source="test:upd")
    with pytest.raises(psycopg.errors.CheckViolation, match="low is above"):
        db.execute("UPDATE market.bars SET low = 10.2 WHERE symbol = 'UPD'")


def test_counts_for_rows_without_a_symbol_on_both_paths(db):
    register(db, "NOSYM")
    first = ingest(db, [bar("NOSYM"), Unparsed(raw="x", problem="line 2: bad")], source="test:nosym")
    assert first.per_symbol[None].rejected == 1 and first.per_symbol[None].unchanged == 0
    # the same bar again takes the upsert path
    again = ingest(db, [bar("NOSYM"), Unparsed(raw="x", problem="line 2: bad")], source="test:nosym")
    assert (again.per_symbol["NOSYM"].unchanged, again.per_symbol[None].rejected) == (1, 1)
    assert again.per_symbol[None].unchanged == 0


def test_progress_is_reported_per_committed_batch(db):
    register(db, "PROG")
    seen: list[int] = []
    ingest(
        db,
        [bar("PROG", ts=T0 + timedelta(minutes=i)) for i in range(25)],
        source="test:prog",
        batch_size=10,
        on_batch=seen.append,
    )
    assert seen == [10, 10, 5]
