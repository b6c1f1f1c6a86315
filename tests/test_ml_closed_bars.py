"""Closed bars (db/procedures/ml_closed_bars.sql, db/triggers/ml_bars_closed.sql): every bar is handed to ML
processing (internal.on_closed_bars) once, when it has closed, by the one rule ml.closed_upto.

What is handed on is observed through ml.watermarks: internal.process_closed hands on exactly the series whose
watermark it moves, the bars in (old watermark, new watermark]. A test-only row trigger on ml.watermarks, created
inside each test's rolled-back transaction, records every move and the bar's stored values at that moment; the
foundation's functions are not touched. The concurrency test commits and observes the return value of
internal.process_closed (the number of series it handed on) in each session instead.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from test_ml_features import load_series
from trading_support import T0, bars, instrument
from waiting import eventually

M = timedelta(minutes=1)

TRACE = """
-- after_ts NULL: the series' first move (from -infinity, which Python's datetime cannot hold)
CREATE TEMP TABLE handed (n serial, symbol text, "interval" text, after_ts timestamptz, upto_ts timestamptz,
                          upto_close numeric, upto_volume numeric);
-- SECURITY DEFINER: the watermark moves inside the owner's functions, and only this session's user may write here
CREATE FUNCTION pg_temp.trace_watermark_moves() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $f$
BEGIN
  INSERT INTO pg_temp.handed (symbol, "interval", after_ts, upto_ts, upto_close, upto_volume)
  SELECT NEW.symbol, NEW."interval", nullif(OLD.ts, '-infinity'), NEW.ts, b.close, b.volume
  FROM (SELECT 1) one
  LEFT JOIN market.bars b ON b.symbol = NEW.symbol AND b.interval = NEW."interval" AND b.ts = NEW.ts;
  RETURN NULL;
END
$f$;
CREATE TRIGGER zz_test_trace AFTER UPDATE ON ml.watermarks FOR EACH ROW
  EXECUTE FUNCTION pg_temp.trace_watermark_moves();
"""


@pytest.fixture
def trace(db):
    """Record every watermark move of this test's transaction; returns a reader of the moves of one series."""
    db.execute(TRACE)

    def moves(symbol: str, interval: str = "1m"):
        return db.execute(
            "SELECT after_ts, upto_ts, upto_close, upto_volume FROM pg_temp.handed"
            " WHERE symbol = %s AND interval = %s ORDER BY n",
            (symbol, interval),
        ).fetchall()

    return moves


def feed_clock(db, at: datetime | None) -> None:
    """The feed's clock for the rest of the transaction (None: back to now())."""
    db.execute("SELECT set_config('pgtrade.feed_now', %s, true)", ("" if at is None else at.isoformat(),))


def handed_bars(db, symbol, interval, moves) -> list[datetime]:
    """Every stored bar of the series, once per move whose range holds it."""
    out = []
    for after, upto, *_ in moves:
        out += [
            r[0]
            for r in db.execute(
                "SELECT ts FROM market.bars WHERE symbol = %s AND interval = %s"
                " AND ts > coalesce(%s::timestamptz, '-infinity') AND ts <= %s ORDER BY ts",
                (symbol, interval, after, upto),
            ).fetchall()
        ]
    return out


def sweep(db) -> int:
    """ml.process_closed_bars() as its pg_cron job runs it: as pgtrade_jobs."""
    db.execute("SET LOCAL ROLE pgtrade_jobs")
    try:
        return db.execute("SELECT ml.process_closed_bars()").fetchone()[0]
    finally:
        db.execute("RESET ROLE")


FORMING = [  # six updates of the bar at T0 as a live feed sends them: (seconds into the minute, o, h, l, c, v)
    (5, 100, 100.2, 99.9, 100.1, 10),
    (15, 100, 100.4, 99.9, 100.3, 25),
    (25, 100, 100.4, 99.5, 99.6, 40),
    (35, 100, 100.6, 99.5, 100.5, 52),
    (45, 100, 100.8, 99.5, 100.7, 61),
    (55, 100, 100.8, 99.4, 100.2, 77),
]


def forming_bar(db, sym, moves):
    """History up to T0-1m (closed at once), then the bar at T0 upserted six times inside its minute: nothing of T0
    is handed on meanwhile."""
    instrument(db, sym)
    feed_clock(db, T0 + timedelta(seconds=1))
    bars(db, sym, [(T0 - 2 * M, 99, 99, 99, 99, 5), (T0 - M, 99, 100, 99, 100, 5)])
    history = moves(sym)
    assert [m[:2] for m in history] == [(None, T0 - M)]  # the history, closed at once
    for sec, o, h, low, c, v in FORMING:
        feed_clock(db, T0 + timedelta(seconds=sec))
        bars(db, sym, [(T0, o, h, low, c, v)])
        assert moves(sym) == history, f"the forming bar was handed on at {sec} s"
    stored = db.execute("SELECT close, volume FROM market.bars WHERE symbol = %s AND ts = %s", (sym, T0)).fetchone()
    assert stored == (Decimal("100.2"), 77)
    return history


def test_a_forming_bar_upserted_six_times_is_handed_on_once_when_the_next_bar_arrives(db, trace):
    sym = "CLOSEA"
    forming_bar(db, sym, trace)
    feed_clock(db, T0 + M + timedelta(seconds=2))  # the next minute's first update
    bars(db, sym, [(T0 + M, 100.2, 100.3, 100.1, 100.25, 3)])
    new = trace(sym)[1:]
    assert [(m[0], m[1]) for m in new] == [(T0 - M, T0)], new
    assert (new[0][2], new[0][3]) == (Decimal("100.2"), 77)  # handed on with its final values
    # the next bar's own updates hand nothing more on
    for sec in (10, 30):
        feed_clock(db, T0 + M + timedelta(seconds=sec))
        bars(db, sym, [(T0 + M, 100.2, 100.4, 100.1, 100.3, 3 + sec)])
    assert len(trace(sym)) == 2
    assert handed_bars(db, sym, "1m", trace(sym)) == [T0 - 2 * M, T0 - M, T0]


def test_a_forming_bar_is_handed_on_once_the_clock_passes_its_end_by_the_sweep(db, trace):
    """The sweep runs as pg_cron runs it (db/jobs/ml_jobs.sql: every minute, as pgtrade_jobs)."""
    sym = "CLOSEB"
    forming_bar(db, sym, trace)
    feed_clock(db, T0 + M - timedelta(microseconds=1))
    sweep(db)
    assert len(trace(sym)) == 1, "handed on before its minute ended"
    feed_clock(db, T0 + M)  # its end: closed (ml.closed_upto: the clock has reached ts + step)
    assert sweep(db) >= 1
    moves = trace(sym)
    assert [(m[0], m[1]) for m in moves[1:]] == [(T0 - M, T0)]
    assert (moves[1][2], moves[1][3]) == (Decimal("100.2"), 77)
    feed_clock(db, T0 + 10 * M)
    sweep(db)
    sweep(db)
    assert len(trace(sym)) == 2, "handed on twice"
    # a late update of the closed bar (a correction) does not hand it on again
    bars(db, sym, [(T0, 100, 100.8, 99.4, 100.0, 80)])
    assert len(trace(sym)) == 2


def test_without_a_feed_clock_a_bar_whose_time_has_passed_is_closed_on_arrival(db, trace):
    """The default clock is now(): a bar stamped in the past (a backfill, a replay without feed_now) is closed."""
    sym = "CLOSEC"
    instrument(db, sym)
    feed_clock(db, None)
    bars(db, sym, [(T0, 1, 1, 1, 1, 1)])
    assert [m[:2] for m in trace(sym)] == [(None, T0)]


def test_a_feed_clock_ahead_of_now_closes_nothing_early(db, trace):
    """The feed's setting never moves the clock past now(): a forming bar stays open under a clock set an hour
    ahead (and a wall-clock account's time stays now(): the same rule, trading.account_clock)."""
    sym = "CLOSEF"
    instrument(db, sym)
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    feed_clock(db, minute + timedelta(hours=1))
    bars(db, sym, [(minute, 1, 1, 1, 1, 1)])
    assert trace(sym) == []
    assert db.execute("SELECT trading.account_clock('wall', NULL) <= now()").fetchone()[0]
    feed_clock(db, minute - timedelta(hours=1))
    assert db.execute("SELECT trading.account_clock('wall', NULL) = %s", (minute - timedelta(hours=1),)).fetchone()[0]


def test_a_bulk_load_hands_all_its_closed_bars_on_once(db, trace):
    n = load_series(db, "GOOG", as_symbol="BULKGOOG")  # the bundled CSV, through the CSV ingest path
    moves = trace("BULKGOOG", "1d")
    got = handed_bars(db, "BULKGOOG", "1d", moves)
    assert len(got) == n == len(set(got)) and len(moves) == 1, (n, len(got), moves)
    load_series(db, "GOOG", as_symbol="BULKGOOG")  # again: nothing changes, nothing is handed on
    assert trace("BULKGOOG", "1d") == moves


def test_the_direct_copy_path_of_a_committed_load_hands_its_bars_on(db_url, unique_symbol):
    """`pgtrade load csv` on an idle connection COPYs new bars straight into market.bars (two workers, committed
    batches): the statement trigger fires for COPY too, and the series' watermark ends on its last bar."""
    from loaders.csv_loader import load_csv
    from loaders.sample import DATA_DIR, register_instrument

    with psycopg.connect(db_url, autocommit=True) as conn:
        register_instrument(conn, symbol=unique_symbol, name="direct path", asset_class="stock")
        with psycopg.connect(db_url) as loader:  # idle: the direct path
            report = load_csv(loader, DATA_DIR / "GOOG_1d.csv.gz", symbol=unique_symbol, interval="1d")
        assert report.total.inserted == 2148 and report.total.rejected == 0
        last, wm = conn.execute(
            "SELECT (SELECT max(ts) FROM market.bars WHERE symbol = %s),"
            " (SELECT ts FROM ml.watermarks WHERE symbol = %s)",
            (unique_symbol, unique_symbol),
        ).fetchone()
        assert wm == last


def test_a_bulk_load_under_a_feed_clock_keeps_its_forming_last_bar(db, trace):
    sym = "CLOSED"
    instrument(db, sym)
    feed_clock(db, T0 + 99 * M + timedelta(seconds=30))  # inside the last bar's minute
    bars(db, sym, [(100 + k % 7, 101 + k % 7, 99 + k % 7, 100 + k % 7, 10) for k in range(100)], start=T0)
    moves = trace(sym)
    assert [m[1] for m in moves] == [T0 + 98 * M]
    assert handed_bars(db, sym, "1m", moves) == [T0 + k * M for k in range(99)]


def test_each_statement_closing_bars_hands_them_on_in_its_own_transaction(db, trace):
    """Bars are handed on by the statement that closed them, inside its transaction: rolled back, they are
    handed on again by the next statement that closes them (nothing is lost to a failed ingest)."""
    sym = "CLOSEE"
    instrument(db, sym)
    feed_clock(db, T0 + timedelta(seconds=30))
    bars(db, sym, [(T0 - M, 1, 1, 1, 1, 1), (T0, 1, 1, 1, 1, 1)])
    assert [m[1] for m in trace(sym)] == [T0 - M]
    with db.transaction(force_rollback=True):
        feed_clock(db, T0 + M)
        db.execute("SELECT ml.process_closed_bars()")
        assert [m[1] for m in trace(sym)] == [T0 - M, T0]
    assert [m[1] for m in trace(sym)] == [T0 - M]
    assert db.execute("SELECT ts FROM ml.watermarks WHERE symbol = %s", (sym,)).fetchone()[0] == T0 - M


def test_a_late_bar_below_the_watermark_moves_no_watermark(db, trace):
    """A bar that arrives after a later bar of its series was handed on (a backfilled gap, out-of-order writers) is
    stored and goes to anomalies and signals (internal.on_late_bars), but not to the live path: the watermark stays
    and nothing trades on a stale bar."""
    sym = "CLOSEF"
    instrument(db, sym)
    feed_clock(db, None)
    bars(db, sym, [(T0, 1, 1, 1, 1, 1), (T0 + 2 * M, 1, 1, 1, 1, 1)])
    assert [m[1] for m in trace(sym)] == [T0 + 2 * M]
    bars(db, sym, [(T0 + M, 1, 1, 1, 1, 1)])  # the gap, filled later
    assert [m[1] for m in trace(sym)] == [T0 + 2 * M]
    assert db.execute("SELECT ts FROM ml.watermarks WHERE symbol = %s", (sym,)).fetchone()[0] == T0 + 2 * M


def test_batches_committed_out_of_time_order_get_the_same_anomalies(db):
    """A load over several connections can commit a later batch first (measured: a two-worker load of SPX left the
    September 2001 bars behind the watermark, undetected). The late batch goes through internal.on_late_bars: the
    anomalies of a series loaded in two statements, the later half first, equal those of the series loaded in order."""
    from pgtrade.ingest import Bar, ingest_batch

    load_series(db, "SPX", as_symbol="INORDER")
    rows = db.execute(
        "SELECT ts, open, high, low, close, volume FROM market.bars"
        " WHERE symbol = 'INORDER' AND interval = '1d' AND ts < '2003-01-01' ORDER BY ts"
    ).fetchall()
    instrument(db, "LATEHALF")
    cut = datetime(2001, 10, 1, tzinfo=UTC)
    later = [Bar("LATEHALF", "1d", *r) for r in rows if r[0] >= cut]
    earlier = [Bar("LATEHALF", "1d", *r) for r in rows if r[0] < cut]
    ingest_batch(db, later, source="test")
    ingest_batch(db, earlier, source="test")
    assert db.execute("SELECT ts FROM ml.watermarks WHERE symbol = 'LATEHALF'").fetchone()[0] == rows[-1][0]

    def anomalies(sym):
        return db.execute(
            "SELECT ts, type, severity, round(score::numeric, 9) FROM ml.anomalies"
            " WHERE symbol = %s AND ts < '2003-01-01' ORDER BY ts, type",
            (sym,),
        ).fetchall()

    got = anomalies("LATEHALF")
    assert got == anomalies("INORDER")
    assert ("2001-09-17", "price") in {(r[0].date().isoformat(), r[1]) for r in got}


# --- two sessions ------------------------------------------------------------------------------------------------


def _blocked_on_a_lock(conn: psycopg.Connection, pid: int) -> bool:
    return conn.execute("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]


def _process(url: str, sym: str, clock: datetime, out: dict, gate: threading.Event | None = None) -> None:
    with psycopg.connect(url) as conn:
        out["pid"] = conn.info.backend_pid
        if gate:
            gate.set()
        conn.execute("SELECT set_config('pgtrade.feed_now', %s, true)", (clock.isoformat(),))
        out["n"] = conn.execute("SELECT internal.process_closed(ARRAY[%s], ARRAY['1m'])", (sym,)).fetchone()[0]
        conn.commit()


@pytest.mark.parametrize(("first", "a_ends"), [("ingest", "commit"), ("sweep", "commit"), ("sweep", "rollback")])
def test_two_sessions_closing_the_same_bar_hand_it_on_once(db_url, unique_symbol, first, a_ends):
    """Session A closes the bar at T0+4m (by ingesting the next bar, or by the clock) and holds its transaction
    open; session B, whose clock also has T0+4m closed, tries to hand it on meanwhile: it waits for A's watermark
    lock, then finds the bar already handed on (0 series). One hand-off in all, and the watermark ends on that bar.
    When A rolls back instead, B hands the bar on itself (1): B's answer is not a constant."""
    sym = unique_symbol
    with psycopg.connect(db_url, autocommit=True) as setup:
        instrument(setup, sym)
        with setup.transaction():
            feed_clock(setup, T0 + 4 * M + timedelta(seconds=30))
            bars(setup, sym, [(T0 + k * M, 1, 1, 1, 1, 1) for k in range(5)])
        wm = setup.execute("SELECT ts FROM ml.watermarks WHERE symbol = %s", (sym,)).fetchone()[0]
        assert wm == T0 + 3 * M  # T0+4m is still forming
    with psycopg.connect(db_url) as a, psycopg.connect(db_url, autocommit=True) as watcher:
        feed_clock(a, T0 + 5 * M + timedelta(seconds=1))
        if first == "ingest":
            bars(a, sym, [(T0 + 5 * M, 1, 1, 1, 1, 1)])  # the next bar closes T0+4m
            moved_to = a.execute("SELECT ts FROM ml.watermarks WHERE symbol = %s", (sym,)).fetchone()[0]
            a_moved = int(moved_to == T0 + 4 * M)
        else:
            a_moved = a.execute("SELECT internal.process_closed(ARRAY[%s], ARRAY['1m'])", (sym,)).fetchone()[0]
        assert a_moved == 1
        out: dict = {}
        started = threading.Event()
        b = threading.Thread(target=_process, args=(db_url, sym, T0 + 5 * M + timedelta(seconds=30), out, started))
        b.start()
        assert started.wait(30), "session B did not connect"
        eventually(lambda: _blocked_on_a_lock(watcher, out["pid"]), timeout=20, what="session B waiting for A's lock")
        a.commit() if a_ends == "commit" else a.rollback()
        b.join(30)
        assert not b.is_alive()
    if a_ends == "commit":
        assert out["n"] == 0, "session B handed on the bar A had handed on"
    else:
        assert out["n"] == 1, "session B did not hand on the bar A's rolled-back transaction had not"
    with psycopg.connect(db_url) as check:
        assert check.execute("SELECT ts FROM ml.watermarks WHERE symbol = %s", (sym,)).fetchone()[0] == T0 + 4 * M


def test_history_loaded_into_a_compressed_chunk_is_seen_by_the_closed_bar_steps(scratch_db):
    """Rows written into a compressed chunk are invisible to the writing statement's triggers (TimescaleDB 2.28.3):
    the ingest path decompresses such chunks first (market.open_compressed_range). Measured before the fix: with one
    compressed 2001 chunk, 9/11's return was scored against the wrong day (10.13 instead of 4.16)."""
    from loaders.sample import load_sample
    from pgtrade.migrate import migrate

    with psycopg.connect(scratch_db, autocommit=True) as conn:
        migrate(conn)
        conn.execute("SELECT market.upsert_instrument('OTHER'::text, 'another symbol'::text)")
        conn.execute(
            "INSERT INTO market.bars (symbol, interval, ts, open, high, low, close, volume, source)"
            " VALUES ('OTHER', '1d', '2001-09-10', 1, 1, 1, 1, 1, 'test')"
        )
        assert conn.execute("SELECT count(compress_chunk(c)) FROM show_chunks('market.bars') c").fetchone()[0] == 1
    with psycopg.connect(scratch_db) as conn:
        load_sample(conn, symbols=["SPX"])
        conn.commit()
    with psycopg.connect(scratch_db, autocommit=True) as conn:
        at_load = conn.execute(
            "SELECT ts, type, severity, score FROM ml.anomalies WHERE symbol = 'SPX' ORDER BY ts, type"
        ).fetchall()
        conn.execute("SELECT ml.detect_anomalies('SPX', '1d', '-infinity', 'infinity')")
        rerun = conn.execute(
            "SELECT ts, type, severity, score FROM ml.anomalies WHERE symbol = 'SPX' ORDER BY ts, type"
        ).fetchall()
    assert at_load == rerun
    assert [round(r[3], 2) for r in at_load if r[0].date().isoformat() == "2001-09-17" and r[1] == "price"] == [4.16]
    # the direct COPY path of pgtrade.ingest (well-formed new bars on an idle connection) too, into chunks compressed
    # again
    from pgtrade.ingest import Bar, _direct, _row

    with psycopg.connect(scratch_db, autocommit=True) as conn:
        conn.execute("SELECT count(compress_chunk(c, if_not_compressed => true)) FROM show_chunks('market.bars') c")
        conn.execute("SELECT market.upsert_instrument('SPXCOPY'::text, 'a copy of SPX'::text)")
        rows = conn.execute(
            "SELECT ts, open, high, low, close, volume FROM market.bars"
            " WHERE symbol = 'SPX' AND interval = '1d' AND ts < '2002-01-01' ORDER BY ts"
        ).fetchall()
    with psycopg.connect(scratch_db) as conn:
        # None would mean the staging path took the batch
        assert _direct(conn, [_row(Bar("SPXCOPY", "1d", *r)) for r in rows], "test") is not None
        conn.commit()
        copied = conn.execute(
            "SELECT ts, type, severity, score FROM ml.anomalies WHERE symbol = 'SPXCOPY' ORDER BY ts, type"
        ).fetchall()
    assert copied == [r for r in at_load if r[0].year < 2002]
