"""Bar revisions (migration 0027, db/triggers/market_bar_revisions.sql, db/procedures/market_bar_revisions.sql):
every correction of a closed bar is kept with the values it replaced, updates of a still-forming bar are not, a
backfill below the closed horizon is an insert revision, and the bars read as of a data version are the bars as
they were then (corrected ones with their old values, deleted ones restored, later backfills left out)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from psycopg.types.json import Jsonb
from trading_support import bars, instrument
from waiting import eventually

from pgtrade.ingest import Bar, ingest

D = timedelta(days=1)
START = datetime(2020, 1, 6, tzinfo=UTC)  # a Monday; daily bars, all long closed


def series(db, symbol: str, days: list[int], *, interval: str = "1d", base: int = 100) -> None:
    """Daily bars of `symbol` on START + each day (closes base + day), through the ingest path."""
    step = {"1d": D, "4h": timedelta(hours=4), "1m": timedelta(minutes=1)}[interval]
    instrument(db, symbol)
    bars(
        db,
        symbol,
        [(START + d * step, base + d, base + d + 2, base + d - 2, base + d + 1) for d in days],
        interval=interval,
    )


def revisions(db, symbol: str) -> list[tuple]:
    return db.execute(
        "SELECT kind, ts, open, high, low, close, volume FROM market.bar_revisions WHERE symbol = %s ORDER BY id",
        (symbol,),
    ).fetchall()


def current(db, symbol: str, interval: str = "1d") -> list[tuple]:
    return db.execute(
        "SELECT ts, open, high, low, close, volume FROM market.bars WHERE symbol = %s AND interval = %s ORDER BY ts",
        (symbol, interval),
    ).fetchall()


def as_of(db, symbols: list[str], version: int | None, start=START - 30 * D, end=START + 60 * D) -> list[tuple]:
    return db.execute(
        "SELECT symbol, ts, open, high, low, close, volume FROM market.bars_as_of(%s, '1d', %s, %s, %s)"
        " ORDER BY symbol, ts",
        (symbols, start, end, version),
    ).fetchall()


def version(db) -> int:
    return db.execute("SELECT market.data_version()").fetchone()[0]


def feed_clock(db, at: datetime | None) -> None:
    db.execute("SELECT set_config('pgtrade.feed_now', %s, true)", ("" if at is None else at.isoformat(),))


def upsert(db, symbol: str, rows, interval: str = "1d") -> None:
    """The ingest path's upsert (market.ingest_staged), as the live feed and every loader correct bars."""
    bars(db, symbol, rows, interval=interval)


def test_a_corrected_closed_bar_is_kept_with_its_old_values(db):
    series(db, "RVA", list(range(10)))
    before = current(db, "RVA")
    db.execute(
        "UPDATE market.bars SET close = close + 1, high = high + 1 WHERE symbol = 'RVA' AND ts = %s", (START + 3 * D,)
    )
    # through the ingest path's upsert too, and a write that changes no price or volume records nothing
    upsert(db, "RVA", [(START + 5 * D, 50, 60, 40, 55, 7)])
    db.execute("UPDATE market.bars SET source = 'elsewhere' WHERE symbol = 'RVA' AND ts = %s", (START + 6 * D,))
    upsert(db, "RVA", [(START + 7 * D, *before[7][1:])])  # the same values again: unchanged
    got = revisions(db, "RVA")
    assert got == [("update", *before[3]), ("update", *before[5])]
    assert current(db, "RVA")[5][1:] == (50, 60, 40, 55, 7)
    old = db.execute(
        "SELECT source, revised_at = now() FROM market.bar_revisions WHERE symbol = 'RVA' ORDER BY id"
    ).fetchall()
    assert old == [("test", True), ("test", True)]


def test_updates_of_a_forming_bar_are_not_kept_until_it_has_closed(db):
    series(db, "RVF", list(range(5)), interval="1m")
    last = START + 4 * timedelta(minutes=1)
    feed_clock(db, last + timedelta(seconds=20))  # the newest minute is forming
    for k in range(6):
        upsert(db, "RVF", [(last, 104, 110 + k, 100, 105 + k)], interval="1m")
    db.execute(
        "UPDATE market.bars SET volume = volume + 1 WHERE symbol = 'RVF' AND interval = '1m' AND ts = %s", (last,)
    )
    assert revisions(db, "RVF") == []
    final = current(db, "RVF", "1m")[-1]
    # once the feed's clock passed its end, a change to it is a correction
    feed_clock(db, last + timedelta(minutes=1))
    upsert(db, "RVF", [(last, 104, 120, 100, 119)], interval="1m")
    assert revisions(db, "RVF") == [("update", *final)]
    # the bar before it was closed all along
    upsert(db, "RVF", [(last - timedelta(minutes=1), 103, 110, 100, 101)], interval="1m")
    assert [r[0:2] for r in revisions(db, "RVF")] == [("update", last), ("update", last - timedelta(minutes=1))]


def test_deletes_of_closed_bars_are_kept_and_of_forming_bars_not(db):
    series(db, "RVD", list(range(6)), interval="1m")
    rows = current(db, "RVD", "1m")
    last = rows[-1][0]
    feed_clock(db, last + timedelta(seconds=30))
    db.execute(
        "DELETE FROM market.bars WHERE symbol = 'RVD' AND interval = '1m' AND ts IN (%s, %s)", (rows[1][0], last)
    )
    assert revisions(db, "RVD") == [("delete", *rows[1])]


def test_a_backfill_below_the_closed_horizon_is_an_insert_revision_and_an_append_is_not(db):
    series(db, "RVI", [0, 1, 2, 4, 5])  # a gap at day 3
    horizon = db.execute("SELECT ts FROM ml.watermarks WHERE symbol = 'RVI' AND interval = '1d'").fetchone()[0]
    assert horizon == START + 5 * D
    upsert(db, "RVI", [(START + 3 * D, 103, 105, 101, 104), (START + 6 * D, 106, 108, 104, 107)])
    assert revisions(db, "RVI") == [("insert", START + 3 * D, None, None, None, None, None)]
    # a new series and history appended above a series are no revisions
    series(db, "RVJ", [0, 1, 2])
    upsert(db, "RVJ", [(START + 3 * D, 103, 105, 101, 104)])
    assert revisions(db, "RVJ") == []


def test_reads_as_of_a_version_see_the_bars_as_they_were(db):
    series(db, "RVS", [0, 1, 2, 3, 5, 6, 7])  # no day 4
    series(db, "RVT", [0, 1, 2, 3], base=200)  # never revised
    v0 = version(db)
    at_v0 = as_of(db, ["RVS", "RVT"], v0)
    assert at_v0 == [(s, *r) for s in ("RVS", "RVT") for r in current(db, s)]

    upsert(db, "RVS", [(START + 1 * D, 90, 95, 85, 91)])  # correct day 1
    v1 = version(db)
    at_v1 = as_of(db, ["RVS", "RVT"], v1)
    db.execute("DELETE FROM market.bars WHERE symbol = 'RVS' AND ts = %s", (START + 2 * D,))  # delete day 2
    upsert(db, "RVS", [(START + 4 * D, 104, 106, 102, 105)])  # backfill day 4
    upsert(db, "RVS", [(START + 1 * D, 80, 85, 75, 81)])  # correct day 1 again
    upsert(db, "RVS", [(START + 4 * D, 114, 116, 112, 115)])  # correct the backfilled bar
    assert [r[0] for r in revisions(db, "RVS")] == ["update", "delete", "insert", "update", "update"]

    assert v1 > v0
    assert as_of(db, ["RVS", "RVT"], v0) == at_v0
    assert as_of(db, ["RVS", "RVT"], v1) == at_v1
    assert [r[1:] for r in at_v1 if r[0] == "RVS" and r[1] == START + D] == [(START + D, 90, 95, 85, 91, 1000000)]
    now = version(db)
    assert as_of(db, ["RVS", "RVT"], now) == [(s, *r) for s in ("RVS", "RVT") for r in current(db, s)]
    assert as_of(db, ["RVS", "RVT"], None) == as_of(db, ["RVS", "RVT"], now)
    # a sub-range: only its bars, as of the version
    assert as_of(db, ["RVS"], v0, START + D, START + 3 * D) == [
        r for r in at_v0 if r[0] == "RVS" and START + D <= r[1] < START + 3 * D
    ]


def test_warmup_bars_as_of_a_version(db):
    """backtest.bars(run, warmup): the last `warmup` bars before the run's start as they were at its version."""
    series(db, "RVW", [0, 1, 2, 3, 5, 6, 7, 8])  # no day 4
    run = {
        "id": -1,
        "symbols": ["RVW"],
        "interval": "1d",
        "start_ts": (START + 6 * D).isoformat(),
        "end_ts": (START + 9 * D).isoformat(),
    }

    def read(v: int | None, warmup: int) -> list[tuple]:
        r = run | {"data_version": v}
        return db.execute(
            "SELECT ts, open, high, low, close, volume"
            " FROM backtest.bars(jsonb_populate_record(NULL::backtest.runs, %s::jsonb), %s) ORDER BY ts",
            (Jsonb(r), warmup),
        ).fetchall()

    v0 = version(db)
    before = read(v0, 3)
    assert [r[0] for r in before] == [START + d * D for d in (2, 3, 5, 6, 7, 8)]
    upsert(db, "RVW", [(START + 4 * D, 104, 106, 102, 105)])  # backfill day 4
    db.execute("DELETE FROM market.bars WHERE symbol = 'RVW' AND ts = %s", (START + 5 * D,))
    upsert(db, "RVW", [(START + 3 * D, 50, 60, 40, 55)])
    upsert(db, "RVW", [(START + 7 * D, 50, 60, 40, 55)])
    assert read(v0, 3) == before
    assert [r[0] for r in read(None, 3)] == [START + d * D for d in (2, 3, 4, 6, 7, 8)]
    assert read(v0, 0) == before[3:]


def test_a_version_differs_from_the_current_bars_only_where_a_revision_after_it_touches_the_series(db):
    series(db, "RVP", [0, 1, 2])
    series(db, "RVQ", [0, 1, 2])
    v0 = version(db)

    def revised(symbols, v, end=START + 10 * D):
        return db.execute("SELECT market.revised_since(%s, '1d', %s, %s)", (symbols, end, v)).fetchone()[0]

    assert not revised(["RVP"], v0)
    upsert(db, "RVQ", [(START + D, 90, 95, 85, 91)])
    assert not revised(["RVP"], v0)  # another series
    assert not revised(["RVQ"], v0, START + D)  # the revision lies after the range
    assert revised(["RVP", "RVQ"], v0)
    assert not revised(["RVQ"], version(db))
    assert not revised(["RVQ"], None)


def test_retention_drops_bars_without_revisions(db):
    instrument(db, "RVR")
    rows = [(datetime(2020, 1, 1, tzinfo=UTC) + i * timedelta(hours=4), 10, 12, 8, 11) for i in range(12)]
    db.execute("UPDATE market.retention SET keep = interval '1 year' WHERE interval = '4h'")
    ingest(db, [Bar("RVR", "4h", *r) for r in rows], source="test")
    deleted = dict(db.execute("SELECT * FROM market.apply_retention()").fetchall())
    assert deleted["4h"] >= 12
    assert revisions(db, "RVR") == []
    assert db.execute("SELECT current_setting('pgtrade.bar_revisions', true)").fetchone()[0] in ("", None)
    # the switch was put back: a delete after it is recorded again
    upsert(db, "RVR", [(START, 10, 12, 8, 11), (START + D, 10, 12, 8, 11)])
    db.execute("DELETE FROM market.bars WHERE symbol = 'RVR' AND ts = %s", (START,))
    assert [r[0] for r in revisions(db, "RVR")] == ["delete"]


def test_a_version_is_read_after_revising_transactions_in_flight(db_url, unique_symbol):
    """market.data_version() waits for a correction that has drawn its revision id and not committed yet, so the
    version it returns covers that revision (sequence order is not commit order)."""
    sym = unique_symbol
    with psycopg.connect(db_url) as setup:
        series(setup, sym, [0, 1, 2])
        setup.commit()
    with psycopg.connect(db_url) as writer, psycopg.connect(db_url, autocommit=True) as reader:
        writer.execute("UPDATE market.bars SET close = close + 1 WHERE symbol = %s AND ts = %s", (sym, START + D))
        rid = writer.execute("SELECT max(id) FROM market.bar_revisions WHERE symbol = %s", (sym,)).fetchone()[0]
        assert rid is not None
        got: dict[str, int] = {}
        pid = reader.info.backend_pid
        t = threading.Thread(target=lambda: got.update(v=reader.execute("SELECT market.data_version()").fetchone()[0]))
        t.start()
        with psycopg.connect(db_url, autocommit=True) as watch:
            eventually(
                lambda: watch.execute(
                    "SELECT 1 FROM pg_locks WHERE pid = %s AND locktype = 'advisory' AND NOT granted", (pid,)
                ).fetchone(),
                timeout=10,
                what="data_version() waiting for the revising transaction",
            )
        assert "v" not in got
        writer.commit()
        t.join(timeout=10)
        assert got["v"] >= rid


def test_forming_and_closed_values_need_no_decimal_scale(db):
    """Prices compare by value: rewriting 101 as 101.00 changes nothing and records nothing."""
    series(db, "RVN", [0, 1])
    upsert(db, "RVN", [(START, Decimal("100.00"), Decimal("102.0"), Decimal("98"), Decimal("101.000"))])
    assert revisions(db, "RVN") == []


@pytest.mark.parametrize("kind", ["update", "delete"])
def test_revisions_of_a_moved_key(db, kind):
    """An UPDATE that moves a closed bar to another time is its delete there and, below the horizon, an insert."""
    series(db, "RVM", [0, 1, 3, 4])
    old = current(db, "RVM")[1]
    if kind == "update":
        db.execute("UPDATE market.bars SET ts = %s WHERE symbol = 'RVM' AND ts = %s", (START + 2 * D, START + D))
    else:
        db.execute("DELETE FROM market.bars WHERE symbol = 'RVM' AND ts = %s", (START + D,))
    got = revisions(db, "RVM")
    assert got[0] == ("delete", *old)
    assert got[1:] == ([("insert", START + 2 * D, None, None, None, None, None)] if kind == "update" else [])
