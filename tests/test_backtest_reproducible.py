"""Reproducible backtests (docs/backtesting.md, Reproducibility): the same data, parameters and code give the same
rows, metrics and hashes; a correction of a closed bar in a run's range (or in the warmup its strategy reads)
changes a fresh run's data hash and results, while backtest.rerun of the stored run reads the bars as of its data
version and reproduces it exactly."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from backtest_support import account_rows, ensure_sample, run
from psycopg.rows import dict_row

ARGS = ("sma_crossover", ["GOOG"], "1d", "2005-01-01", "2012-01-01", {"cash": 10000, "commission": 0.002})
HASHES = ("params_hash", "schema_version", "code_hash", "data_hash", "data_version", "bars", "warmup")


@pytest.fixture
def goog(db):
    ensure_sample(db, "GOOG")
    return db


def rerun(conn: psycopg.Connection, run_id: int) -> dict:
    cur = conn.cursor(row_factory=dict_row)
    r = cur.execute(
        "SELECT x.rerun_id AS run_id, x.original_id, x.status, x.identical, x.same_data, x.same_fills,"
        " x.same_metrics, x.same_code, x.same_schema, x.notes FROM backtest.rerun(%s) x",
        (run_id,),
    ).fetchone()
    r["run"] = cur.execute("SELECT * FROM backtest.runs WHERE id = %s", (r["run_id"],)).fetchone()
    assert (r["original_id"], r["status"]) == (run_id, r["run"]["status"])
    return r


def same_run(conn: psycopg.Connection, a: dict, b: dict) -> None:
    """Every table of the two runs' accounts, the metrics, the counts and every hash are the same."""
    rows_a, rows_b = account_rows(conn, a["account_id"]), account_rows(conn, b["account_id"])
    for table in rows_a:
        assert rows_a[table] == rows_b[table], table
    for col in ("metrics", "decisions", "orders", "fills", "mode", "params", *HASHES):
        assert a[col] == b[col], col


def correct(conn: psycopg.Connection, day: str, factor: str) -> None:
    """Correct GOOG's daily bar of `day`: its close times `factor` (high and low widened to stay valid)."""
    n = conn.execute(
        "UPDATE market.bars SET close = round(close * %(f)s::numeric, 2),"
        " high = greatest(high, round(close * %(f)s::numeric, 2)), low = least(low, round(close * %(f)s::numeric, 2))"
        " WHERE symbol = 'GOOG' AND interval = '1d' AND ts = %(ts)s",
        {"f": factor, "ts": datetime.fromisoformat(day).replace(tzinfo=UTC)},
    ).rowcount
    assert n == 1


def test_two_runs_of_the_same_inputs_are_identical(goog):
    a = run(goog, *ARGS)
    b = run(goog, *ARGS)
    assert a["id"] != b["id"] and a["account_id"] != b["account_id"]
    assert len(account_rows(goog, a["account_id"])["fills"]) > 20
    same_run(goog, a, b)
    assert a["warmup"] == 20  # SMA(10, 20) reads the 20 bars before the range
    assert all(a[h] is not None for h in HASHES)


def test_exact_mode_runs_are_identical_too(goog):
    args = (*ARGS[:3], "2009-01-01", "2011-01-01", ARGS[5])
    same_run(goog, run(goog, *args, mode="exact"), run(goog, *args, mode="exact"))


def test_a_correction_in_the_range_changes_a_fresh_run_and_rerun_reproduces_the_original(goog):
    original = run(goog, *ARGS)
    rows = account_rows(goog, original["account_id"])
    # a corrected close, a deleted bar and a bar backfilled into the range (a Saturday: GOOG has none)
    correct(goog, "2008-07-01", "1.25")
    goog.execute("DELETE FROM market.bars WHERE symbol = 'GOOG' AND interval = '1d' AND ts = '2010-06-01'")
    goog.execute(
        "INSERT INTO market.bars (symbol, interval, ts, open, high, low, close, volume, source)"
        " SELECT symbol, interval, '2009-03-07', open, high, low, close, volume, 'backfill' FROM market.bars"
        " WHERE symbol = 'GOOG' AND interval = '1d' AND ts = '2009-03-06'"
    )
    kinds = goog.execute(
        "SELECT array_agg(kind ORDER BY id) FROM market.bar_revisions WHERE id > %s AND symbol = 'GOOG'",
        (original["data_version"],),
    ).fetchone()[0]
    assert kinds == ["update", "delete", "insert"]

    fresh = run(goog, *ARGS)
    assert fresh["data_version"] > original["data_version"]
    assert fresh["data_hash"] != original["data_hash"]
    assert fresh["bars"] == original["bars"]  # one bar fewer, one more
    fresh_rows = account_rows(goog, fresh["account_id"])
    assert fresh_rows["fills"] != rows["fills"] or fresh["metrics"] != original["metrics"]
    assert fresh_rows["snapshots"] != rows["snapshots"]

    again = rerun(goog, original["id"])
    assert again["identical"] and again["same_data"] and again["same_fills"] and again["same_metrics"]
    assert again["same_code"] and again["same_schema"] and again["notes"] == []
    r = again["run"]
    assert (r["purpose"], r["parent_id"], r["status"]) == ("rerun", original["id"], "done")
    assert r["data_version"] == original["data_version"]
    same_run(goog, original, r)
    assert account_rows(goog, r["account_id"]) == rows

    # a rerun of the fresh run reproduces the fresh one (the current bars)
    again = rerun(goog, fresh["id"])
    assert again["identical"]
    same_run(goog, fresh, again["run"])


def test_a_correction_in_the_warmup_the_strategy_read_changes_the_data_hash(goog):
    original = run(goog, *ARGS)
    assert original["warmup"] == 20
    # the 5th bar before the range's first: read by SMA(20)'s warmup, outside [start, end)
    day = goog.execute(
        "SELECT ts FROM market.bars WHERE symbol = 'GOOG' AND interval = '1d' AND ts < '2005-01-01'"
        " ORDER BY ts DESC OFFSET 4 LIMIT 1"
    ).fetchone()[0]
    correct(goog, day.date().isoformat(), "0.5")
    fresh = run(goog, *ARGS)
    assert fresh["bars"] == original["bars"]
    assert fresh["data_hash"] != original["data_hash"]
    again = rerun(goog, original["id"])
    assert again["identical"]
    same_run(goog, original, again["run"])


def test_rerun_says_when_the_code_differs(goog):
    original = run(goog, *ARGS)
    goog.execute(
        "CREATE FUNCTION backtest.h6_probe() RETURNS int LANGUAGE sql AS 'SELECT 1';"
        " COMMENT ON FUNCTION backtest.h6_probe IS 'a function that was not there when the run ran'"
    )
    again = rerun(goog, original["id"])
    assert again["identical"] and not again["same_code"] and again["same_schema"]
    assert any("code" in n for n in again["notes"])
    assert again["run"]["code_hash"] != original["code_hash"]


def test_rerun_of_an_unknown_or_unfinished_run_is_refused(goog):
    with pytest.raises(psycopg.Error) as exc, goog.transaction():
        goog.execute("SELECT * FROM backtest.rerun(-1)")
    assert exc.value.diag.sqlstate == "BT061" and exc.value.diag.message_hint
    failed = goog.execute(
        "SELECT id, status FROM backtest.run('sma_crossover', ARRAY['GOOG'], '1d', '1990-01-01', '1991-01-01')"
    ).fetchone()
    assert failed[1] == "failed"  # no bars in that range (BT007)
    with pytest.raises(psycopg.Error) as exc, goog.transaction():
        goog.execute("SELECT * FROM backtest.rerun(%s)", (failed[0],))
    assert exc.value.diag.sqlstate == "BT062" and "BT007" in exc.value.diag.message_detail


def test_a_run_reads_as_of_its_version_throughout(goog):
    """A correction committed while a run reads its bars does not reach it: every read after the fingerprint is
    as of the version the fingerprint took (here simulated by correcting a bar after the version was taken, in
    the same transaction, and reading the run's bars again)."""
    original = run(goog, *ARGS)
    before = goog.execute(
        "SELECT b.* FROM backtest.runs r, backtest.bars(r, 20) b WHERE r.id = %s ORDER BY b.ts", (original["id"],)
    ).fetchall()
    correct(goog, "2007-02-01", "1.1")
    after = goog.execute(
        "SELECT b.* FROM backtest.runs r, backtest.bars(r, 20) b WHERE r.id = %s ORDER BY b.ts", (original["id"],)
    ).fetchall()
    assert after == before
