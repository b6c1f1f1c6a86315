"""Structured logs (``pgtrade --log-json``, pgtrade/logs.py) and the ``ops.ingest_runs`` row of each load and stream.

The CLI runs as a user runs it (a subprocess), against the session's test database (loads of symbols of their own)
or a migrated database of its own (the stream, which replays SPX).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from pgtrade import logs
from pgtrade.migrate import migrate

ROOT = Path(__file__).resolve().parent.parent


def cli(url: str, *args: str, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PGTRADE_")}
    return subprocess.run(
        [sys.executable, "-m", "pgtrade.cli", *args],
        capture_output=True,
        text=True,
        env=base | {"PGTRADE_DATABASE_URL": url, "PYTHONPATH": str(ROOT)} | (env or {}),
        timeout=120,
        **kw,
    )


def lines(stderr: str) -> list[dict]:
    """Every line of stderr as JSON (fails on a line that is not)."""
    return [json.loads(line) for line in stderr.splitlines()]


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("date,open,high,low,close,volume\n" + "".join(f"{r}\n" for r in rows))
    return path


GOOD = ["2024-01-02,10,11,9,10.5,100", "2024-01-03,10.5,12,10,11,200", "2024-01-04,11,11.5,10.5,11.2,150"]
BAD = "2024-01-05,10,9,11,10,100"  # high below low: the database rejects it


def run_row(url: str, run_id: int) -> dict:
    with psycopg.connect(url) as conn:
        cur = conn.execute("SELECT * FROM ops.ingest_runs WHERE id = %s", (run_id,))
        names = [d.name for d in cur.description]
        row = cur.fetchone()
    assert row is not None, f"no ops.ingest_runs row {run_id}"
    return dict(zip(names, row, strict=True))


def test_without_log_json_the_output_is_what_it_was(db_url, unique_symbol, tmp_path):
    res = cli(
        db_url, "load", "csv", str(write_csv(tmp_path / "a.csv", GOOD)), "--symbol", unique_symbol, "--interval", "1d"
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""  # no log line, no JSON: nothing is configured without --log-json
    assert "loaded" in res.stdout and unique_symbol in res.stdout
    # the run is a row all the same
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT status, inserted, rejected FROM ops.ingest_runs WHERE %s = ANY(symbols)", (unique_symbol,)
        ).fetchone()
    assert row == ("done", 3, 0)


def test_a_load_emits_json_lines_with_its_events_and_its_row(db_url, unique_symbol, tmp_path):
    path = write_csv(tmp_path / "prices.csv", [*GOOD, BAD])
    res = cli(
        db_url,
        "--log-json",
        "load",
        "csv",
        str(path),
        "--symbol",
        unique_symbol,
        "--interval",
        "1d",
        env={"PGTRADE_LOG_LEVEL": "DEBUG"},
    )
    assert res.returncode == 0, res.stderr
    events = lines(res.stderr)
    for e in events:
        assert {"ts", "level", "logger", "event"} <= set(e)
        ts = datetime.fromisoformat(e["ts"].replace("Z", "+00:00"))
        assert e["ts"].endswith("Z") and ts.tzinfo == UTC and abs((datetime.now(UTC) - ts).total_seconds()) < 120
    by = {e["event"]: e for e in events}
    assert by["command"]["command"] == "load" and by["command"]["argv"][1:3] == ["load", "csv"]
    assert by["command"]["logger"] == "pgtrade.cli"
    start, end = by["load.start"], by["load.end"]
    run_id = start["run_id"]
    assert start["source"] == "csv:prices.csv" and start["symbols"] == [unique_symbol]
    # every line from the start to the end of the run carries its run_id
    inside = events[events.index(start) : events.index(end) + 1]
    assert {e.get("run_id") for e in inside} == {run_id}
    batch = by["ingest.batch"]  # the ingest path's own event (DEBUG)
    assert batch["logger"] == "pgtrade.ingest" and batch["rows"] == 4 and batch["level"] == "debug"
    symbol = by["load.symbol"]
    assert symbol["symbol"] == unique_symbol and symbol["level"] == "warning"  # one row rejected
    assert (symbol["inserted"], symbol["rejected"]) == (3, 1)
    assert (end["status"], end["inserted"], end["rejected"], end["level"]) == ("done", 3, 1, "info")
    row = run_row(db_url, run_id)
    assert (row["kind"], row["source"], row["symbols"], row["status"]) == (
        "load",
        "csv:prices.csv",
        [unique_symbol],
        "done",
    )
    assert (row["inserted"], row["updated"], row["unchanged"], row["rejected"]) == (3, 0, 0, 1)
    assert row["detail"]["symbols"][unique_symbol]["rejected"] == 1
    assert row["finished_at"] >= row["started_at"] and row["pid"] > 0
    # the human table still goes to stdout; stderr holds JSON only (checked by lines() above)
    assert unique_symbol in res.stdout


def test_a_failed_load_is_a_failed_row_and_an_error_line(db_url, unique_symbol, tmp_path):
    missing = tmp_path / "nope.csv"
    res = cli(
        db_url,
        "load",
        "csv",
        str(missing),
        "--symbol",
        unique_symbol,
        "--interval",
        "1d",
        env={"PGTRADE_LOG_JSON": "1"},
    )
    assert res.returncode == 1
    events = lines(res.stderr)  # the error too is a JSON line, not the red one-liner
    end = next(e for e in events if e["event"] == "load.end")
    error = next(e for e in events if e["event"] == "error")
    assert end["status"] == "failed" and end["level"] == "error" and "nope.csv" in end["error"]
    assert error["level"] == "error" and "nope.csv" in error["message"]
    row = run_row(db_url, end["run_id"])
    assert row["status"] == "failed" and "nope.csv" in row["detail"]["error"] and row["finished_at"] is not None
    # the same failure without --log-json: the one red line of today
    plain = cli(db_url, "load", "csv", str(missing), "--symbol", unique_symbol, "--interval", "1d")
    assert plain.returncode == 1 and plain.stderr.startswith("error:") and len(plain.stderr.splitlines()) == 1


def test_a_bad_log_level_is_a_usage_error(db_url):
    res = cli(db_url, "--log-json", "summary", env={"PGTRADE_LOG_LEVEL": "LOUD"})
    assert res.returncode == 2 and "PGTRADE_LOG_LEVEL" in res.stderr


def test_the_formatter_keeps_reserved_keys_and_serializes_anything():
    record = logging.LogRecord("pgtrade.x", logging.WARNING, __file__, 1, "thing.happened", None, None)
    record.fields = {"event": "clash", "when": datetime(2026, 1, 2, tzinfo=UTC), "n": 3}
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    out = json.loads(logs.JsonFormatter().format(record))
    assert out["event"] == "thing.happened" and out["field_event"] == "clash"
    assert out["when"] == "2026-01-02 00:00:00+00:00" and out["n"] == 3 and out["level"] == "warning"
    assert "ValueError: boom" in out["exc"]


@pytest.fixture
def own_db(scratch_db: str) -> str:
    with psycopg.connect(scratch_db, autocommit=True) as conn:
        migrate(conn)
    return scratch_db


def test_a_stream_session_is_a_row_and_ctrl_c_ends_it_interrupted(own_db):
    """pgtrade stream (replaying SPX) stopped by SIGINT, as `docker stop` stops the feed service."""
    loaded = cli(own_db, "load", "sample", "--symbols", "SPX")
    assert loaded.returncode == 0, loaded.stderr
    base = {k: v for k, v in os.environ.items() if not k.startswith("PGTRADE_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pgtrade.cli",
            "--log-json",
            "stream",
            "--source",
            "replay",
            "--symbols",
            "SPX",
            "--speed",
            "60",
            "--duration",
            "60",
            "--ends-ago",
            "10",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=base | {"PGTRADE_DATABASE_URL": own_db, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 60
    with psycopg.connect(own_db, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT id, status FROM ops.ingest_runs WHERE kind = 'stream'").fetchone()
            bars = conn.execute("SELECT count(*) FROM market.bars WHERE source LIKE 'replay:%'").fetchone()[0]
            if row and bars:
                break
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            time.sleep(0.2)
        assert row[1] == "running"  # the row is there while the session runs
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    end = next(e for e in lines(err) if e["event"] == "stream.end")
    assert end["status"] == "interrupted" and end["stopped_by"] == "interrupted" and end["run_id"] == row[0]
    stored = run_row(own_db, row[0])
    assert stored["status"] == "interrupted" and stored["inserted"] == end["inserted"] > 0
    assert stored["detail"]["stopped_by"] == "interrupted" and stored["source"] == "replay:SPX:1d"
    assert stored["rejected"] == 0 and stored["detail"]["batches"] > 0
