"""Health (db/procedures/ops_health.sql, api.health, pgtrade health): a really failing TimescaleDB job, the
freshness rule of live-fed series against their session calendar, live feeds registering their series, what an
anonymous caller sees, and the CLI's exit codes and --json. Real server, real scheduler, no mocks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from click.testing import CliRunner
from trading_support import bars, instrument
from waiting import eventually

from pgtrade.cli import main
from pgtrade.cluster import free_port
from pgtrade.migrate import migrate

FAILING_PROC = """CREATE OR REPLACE PROCEDURE ops.zz_health_job(job_id int, config jsonb) LANGUAGE plpgsql AS $$
                  BEGIN RAISE EXCEPTION 'health test job fails on purpose' USING ERRCODE = 'XX042'; END $$"""
FIXED_PROC = """CREATE OR REPLACE PROCEDURE ops.zz_health_job(job_id int, config jsonb) LANGUAGE plpgsql AS $$
                BEGIN PERFORM 1; END $$"""


def health(conn: psycopg.Connection) -> dict:
    return conn.execute("SELECT ops.health()").fetchone()[0]


def cli(url: str, *args: str):
    """pgtrade with PGTRADE_DATABASE_URL=url (CliRunner, same process)."""
    old = os.environ.get("PGTRADE_DATABASE_URL")
    os.environ["PGTRADE_DATABASE_URL"] = url
    try:
        return CliRunner().invoke(main, list(args))
    finally:
        if old is None:
            del os.environ["PGTRADE_DATABASE_URL"]
        else:
            os.environ["PGTRADE_DATABASE_URL"] = old


def job_alerts(conn: psycopg.Connection, job_id: int) -> list[tuple]:
    return conn.execute(
        "SELECT id, kind, severity, message, details FROM ops.alerts WHERE kind = 'job_failed'"
        " AND details->>'job_id' = %s ORDER BY id",
        (str(job_id),),
    ).fetchall()


def keys_anywhere(doc) -> set[str]:
    if isinstance(doc, dict):
        return set(doc) | {k for v in doc.values() for k in keys_anywhere(v)}
    if isinstance(doc, list):
        return {k for v in doc for k in keys_anywhere(v)}
    return set()


def test_a_really_failing_timescaledb_job_fails_health_raises_one_alert_and_closes_when_fixed(scratch_db):
    """A user job on a 1-second schedule that raises: TimescaleDB's scheduler runs it and it fails again and again.
    Health is 'failing' naming it (exit 2), the watcher raises exactly one alert however many failures and runs;
    fixed, the incident closes (one LOW resolved alert) and health is 'degraded' (recent failures, exit 1); gone,
    'ok' (exit 0). Breaking it again raises a new alert."""
    with psycopg.connect(scratch_db, autocommit=True) as conn:
        migrate(conn)
        conn.execute(
            "SELECT alter_job(job_id, next_start => now()) FROM timescaledb_information.jobs WHERE job_id >= 1000"
        )
        eventually(lambda: health(conn)["status"] == "ok", timeout=60, interval=0.5, what="health ok after migrate")
        result = cli(scratch_db, "health")
        assert result.exit_code == 0, result.output
        conn.execute(FAILING_PROC)
        job = conn.execute(
            "SELECT add_job('ops.zz_health_job', '1 second', initial_start => now(), fixed_schedule => false)"
        ).fetchone()[0]
        try:
            bad = eventually(
                lambda: (h := health(conn))["status"] == "failing" and h, timeout=60, interval=0.3, what="failing"
            )
            [p] = bad["problems"]
            assert (p["kind"], p["job_id"], p["proc"], p["status"]) == (
                "timescaledb",
                job,
                "ops.zz_health_job",
                "failing",
            )
            assert f"TimescaleDB job {job} (ops.zz_health_job): last run failed" in p["message"]
            assert "XX042" in p["error"] and "fails on purpose" in p["error"]
            # anonymous callers get the status and the names, never the error text
            with conn.transaction():
                conn.execute("SET LOCAL ROLE web_anon")
                anon = conn.execute("SELECT api.health()").fetchone()[0]
            assert anon["status"] == "failing" and anon["problems"][0]["job_id"] == job
            assert "error" not in keys_anywhere(anon)
            assert "fails on purpose" not in json.dumps(anon)

            out = cli(scratch_db, "health")
            assert out.exit_code == 2, out.output
            assert f"failing: timescaledb: TimescaleDB job {job} (ops.zz_health_job)" in " ".join(out.stderr.split())
            doc = cli(scratch_db, "health", "--json")
            assert doc.exit_code == 2 and json.loads(doc.stdout)["status"] == "failing"

            # the job keeps failing: the watcher, run again and again, keeps one incident and one alert
            for _ in range(3):
                before = health(conn)["timescaledb_jobs"]
                total = next(j["total_failures"] for j in before if j["job_id"] == job)
                conn.execute("SELECT ops.watch()")
                eventually(
                    lambda total=total: (
                        next(j["total_failures"] for j in health(conn)["timescaledb_jobs"] if j["job_id"] == job)
                        > total
                    ),
                    timeout=30,
                    interval=0.3,
                    what="another failure",
                )
            conn.execute("SELECT ops.watch()")
            alerts = job_alerts(conn, job)
            assert len(alerts) == 1, alerts
            _, kind, severity, message, details = alerts[0]
            assert (kind, severity) == ("job_failed", "HIGH")
            assert message.startswith(f"TimescaleDB job {job} (ops.zz_health_job) failed: ")
            assert details["failures_total"] >= 1 and "fails on purpose" in details["error"]
            incident = conn.execute(
                "SELECT checks, closed_at FROM ops.incidents WHERE subject = %s", (f"timescaledb:{job}",)
            ).fetchall()
            assert len(incident) == 1 and incident[0][0] >= 4 and incident[0][1] is None
            failures = next(j["total_failures"] for j in health(conn)["timescaledb_jobs"] if j["job_id"] == job)
            assert failures >= 4  # several real failures, one alert

            # fixed: the next runs succeed, the incident closes with one resolved alert, health is degraded
            conn.execute(FIXED_PROC)
            eventually(
                lambda: (
                    next(j for j in health(conn)["timescaledb_jobs"] if j["job_id"] == job)["last_status"] == "Success"
                ),
                timeout=30,
                interval=0.3,
                what="a successful run",
            )
            assert conn.execute("SELECT ops.watch()").fetchone()[0]["closed"] == 1
            alerts = job_alerts(conn, job)
            assert [(a[2], a[4].get("resolved")) for a in alerts] == [("HIGH", None), ("LOW", True)]
            resolved = conn.execute(
                "SELECT a.severity, a.message FROM ops.incidents i JOIN ops.alerts a ON a.id = i.resolved_alert_id"
                " WHERE i.subject = %s",
                (f"timescaledb:{job}",),
            ).fetchall()
            assert len(resolved) == 1 and resolved[0][0] == "LOW"
            assert f"job {job} no longer failing" in resolved[0][1]
            h = health(conn)
            assert h["status"] == "degraded", h["problems"]
            assert [p["kind"] for p in h["problems"]] == ["job_recent_failures"]
            out = cli(scratch_db, "health")
            assert out.exit_code == 1 and "degraded: job_recent_failures" in out.stderr

            # broken again: a new occurrence, a new incident and a new alert
            conn.execute(FAILING_PROC)
            eventually(lambda: health(conn)["status"] == "failing", timeout=30, interval=0.3, what="failing again")
            conn.execute("SELECT ops.watch()")
            assert [a[2] for a in job_alerts(conn, job)] == ["HIGH", "LOW", "HIGH"]
            assert (
                conn.execute(
                    "SELECT count(*) FROM ops.incidents WHERE subject = %s AND closed_at IS NULL",
                    (f"timescaledb:{job}",),
                ).fetchone()[0]
                == 1
            )
        finally:
            conn.execute("SELECT delete_job(%s)", (job,))
        conn.execute("SELECT ops.watch()")
        assert health(conn)["status"] == "ok"
        assert cli(scratch_db, "health").exit_code == 0


def test_health_cli_reports_an_unreachable_server_as_failing():
    url = f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"
    out = cli(url, "health", "--json")
    assert out.exit_code == 2
    doc = json.loads(out.stdout)
    assert doc["status"] == "failing" and doc["server"] == {"up": False} and doc["problems"][0]["kind"] == "server"
    assert "failing: server: cannot connect" in out.stderr


@pytest.mark.parametrize(
    ("step", "after", "at", "due"),
    [
        # an equity's minute bars: the last at Friday 15:58 New York (EST); 15:59 is due, then nothing until Monday
        ("1 minute", "2026-11-27 20:58+00", "2026-11-27 21:30+00", 1),
        ("1 minute", "2026-11-27 20:58+00", "2026-11-28 12:00+00", 1),  # Saturday
        ("1 minute", "2026-11-27 20:58+00", "2026-11-30 14:29+00", 1),  # Monday before the open
        ("1 minute", "2026-11-27 20:58+00", "2026-11-30 14:45+00", 16),  # 15:59 and 09:30-09:44
        # an equity's daily bars: Friday's bar is the last; Saturday and Sunday are never due
        ("1 day", "2026-11-27 00:00+00", "2026-11-30 12:00+00", 0),
        ("1 day", "2026-11-27 00:00+00", "2026-12-02 12:00+00", 2),
        ("1 day", "2026-11-27 00:00+00", "2026-12-03 12:00+00", 3),
    ],
)
def test_bars_due_follow_the_equity_session(db, step, after, at, due):
    instrument(db, "HLTHEQ")
    got = db.execute(
        "SELECT ops.bars_due('HLTHEQ', %s::interval, %s::timestamptz, %s::timestamptz, 100)", (step, after, at)
    ).fetchone()[0]
    assert got == due


def test_crypto_is_due_around_the_clock(db):
    instrument(db, "HLTHBTC", asset_class="crypto", session_tz="UTC", session_open=None, session_close=None,
               trades_weekends=True)  # fmt: skip
    got = db.execute(
        "SELECT ops.bars_due('HLTHBTC', '1 minute', '2026-11-28 12:00+00', '2026-11-28 12:10+00', 100)"
    ).fetchone()[0]
    assert got == 9  # Saturday: 12:01 to 12:09 closed and missing (12:10 is forming)


def _crypto(conn, sym: str) -> None:
    instrument(conn, sym, asset_class="crypto", session_tz="UTC", session_open=None, session_close=None,
               trades_weekends=True)  # fmt: skip


def test_a_fed_symbol_is_expected_fresh_and_goes_stale_when_its_bars_stop(db):
    """Only series a live feed is responsible for are expected fresh: the same bars unfed are reported, never
    stale; fed and 10 minutes old (crypto: always in session) they are stale, health fails naming the symbol;
    a bar of the current minute makes them fresh; the feed ending releases them."""
    now = db.execute("SELECT date_bin('1 minute', now(), '2000-01-03')").fetchone()[0]
    _crypto(db, "HLTHFED")
    bars(db, "HLTHFED", [(100, 101, 99, 100)] * 5, start=now - timedelta(minutes=15))
    rows = {r[0]: r for r in db.execute("SELECT symbol, expected, stale, bars_due FROM ops.data_freshness(true)")}
    assert rows["HLTHFED"][1:] == (False, None, None)  # unfed: shown, not judged
    assert not [p for p in health(db)["problems"] if p.get("symbol") == "HLTHFED"]

    feed = db.execute("SELECT ops.feed_started('test-feed', ARRAY['HLTHFED'], '1m', 1, 'test')").fetchone()[0]
    row = db.execute(
        "SELECT expected, stale, bars_due, last_ts, age FROM ops.data_freshness() WHERE symbol = 'HLTHFED'"
    ).fetchone()
    assert row[:3] == (True, True, 3) and row[3] == now - timedelta(minutes=11)
    assert row[4] == timedelta(minutes=10) + (db.execute("SELECT now()").fetchone()[0] - now)
    h = health(db)
    [p] = [p for p in h["problems"] if p.get("symbol") == "HLTHFED"]
    assert h["status"] == "failing" and p["kind"] == "stale_data" and p["status"] == "failing"
    assert p["message"].startswith("stale data: HLTHFED 1m has no new bar for 00:10:")
    assert f"feed {feed}, test-feed" in p["message"]

    bars(db, "HLTHFED", [(100, 101, 99, 100)], start=now)  # the forming bar of this minute
    assert db.execute("SELECT stale, bars_due FROM ops.data_freshness() WHERE symbol = 'HLTHFED'").fetchone() == (
        False,
        0,
    )
    assert db.execute("SELECT ops.feed_ended(%s, 'duration')", (feed,)).fetchone()[0] == 1
    assert db.execute("SELECT expected FROM ops.data_freshness(true) WHERE symbol = 'HLTHFED'").fetchone() == (False,)
    assert db.execute("SELECT ended_at IS NOT NULL, stopped_by FROM ops.feeds WHERE id = %s", (feed,)).fetchone() == (
        True,
        "duration",
    )


UNFED_DIRECT = """SELECT i.symbol, l."interval", l.ts, l.ingested_at, l.source FROM market.instruments i
CROSS JOIN LATERAL (SELECT b."interval", b.ts, b.ingested_at, b.source FROM market.bars b WHERE b.symbol = i.symbol
                    ORDER BY b.ts DESC LIMIT 1) l
WHERE i.active AND NOT EXISTS (SELECT FROM ops.fed_series fs WHERE fs.symbol = i.symbol)"""


def test_unfed_rows_are_each_instruments_newest_bar_however_it_is_found(db):
    """The unfed rows of ops.data_freshness(true) are found from each series' ML watermark (ml.newest_bar plans only
    the newest chunks), for an instrument no watermark knows (bars loaded before issue 12) over the whole
    hypertable, and where the watermark lies past every bar (the newest deleted) over the whole series: the same
    rows as the direct query over market.bars in every case; the newest of an instrument's intervals wins."""
    now = db.execute("SELECT date_bin('1 minute', now(), '2000-01-03')").fetchone()[0]
    _crypto(db, "HLTHNB")
    hour = db.execute("SELECT date_bin('1 hour', now(), '2000-01-03')").fetchone()[0]
    bars(db, "HLTHNB", [(100, 101, 99, 100)] * 3, interval="1h", start=hour - timedelta(hours=5))
    bars(db, "HLTHNB", [(100, 101, 99, 100)] * 5, start=now - timedelta(minutes=30), source="newest")

    def compare() -> None:
        got = {
            r[0]: r[1:]
            for r in db.execute(
                "SELECT symbol, interval, last_ts, last_arrival, source FROM ops.data_freshness(true)"
                " WHERE NOT expected"
            )
        }
        assert got == {r[0]: r[1:] for r in db.execute(UNFED_DIRECT)}
        assert got["HLTHNB"][0] == "1m" and got["HLTHNB"][3] == "newest"

    compare()
    assert db.execute("SELECT count(*) FROM ml.watermarks WHERE symbol = 'HLTHNB'").fetchone()[0] == 2
    db.execute("DELETE FROM market.bars WHERE symbol = 'HLTHNB' AND interval = '1m' AND ts = %s",
               (now - timedelta(minutes=26),))  # fmt: skip
    assert db.execute("SELECT ts FROM ml.watermarks WHERE symbol = 'HLTHNB' AND interval = '1m'").fetchone()[0] == (
        now - timedelta(minutes=26)
    )  # past every bar of the series now
    compare()
    db.execute("DELETE FROM ml.watermarks WHERE symbol = 'HLTHNB'")
    compare()


def test_a_simulated_feed_is_judged_by_arrival(db):
    """A feed faster than real time stamps bars in the simulated past: its series is stale only when nothing
    arrived for max(stale_wall, stale_bars x step / speed)."""
    _crypto(db, "HLTHSIM")
    bars(db, "HLTHSIM", [(100, 101, 99, 100)] * 3, start=datetime(2026, 1, 5, tzinfo=UTC))
    db.execute("SELECT ops.feed_started('replay:HLTHSIM', ARRAY['HLTHSIM'], '1m', 60, 'test')")
    assert db.execute("SELECT stale FROM ops.data_freshness() WHERE symbol = 'HLTHSIM'").fetchone() == (False,)
    db.execute("UPDATE market.bars SET ingested_at = now() - interval '3 minutes' WHERE symbol = 'HLTHSIM'")
    assert db.execute("SELECT stale FROM ops.data_freshness() WHERE symbol = 'HLTHSIM'").fetchone() == (True,)


def _stream(db_url: str, sym: str) -> subprocess.Popen:
    env = dict(os.environ, PGTRADE_DATABASE_URL=db_url)
    return subprocess.Popen(
        [sys.executable, "-c", "from pgtrade.cli import main; main()", "stream", "--source", "synthetic",
         "--symbols", sym, "--speed", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def _feed(conn, sym: str):
    return conn.execute(
        "SELECT f.id, f.ended_at, f.stopped_by, f.speed, f.source, s.symbol IS NOT NULL FROM ops.feeds f"
        " LEFT JOIN ops.fed_series s ON s.feed_id = f.id WHERE %s = ANY (f.symbols) ORDER BY f.id DESC LIMIT 1",
        (sym,),
    ).fetchone()


def test_pgtrade_stream_registers_its_series_and_releases_them_only_when_it_ends_as_asked(db_url, unique_symbol):
    """A bounded run releases its series at the end; SIGTERM (docker stop) ends it as asked too; SIGKILL leaves the
    series expected fresh (a dead feed must go stale, not be forgotten), until a new feed takes them over."""
    out = cli(db_url, "stream", "--source", "synthetic", "--symbols", unique_symbol, "--speed", "60", "--duration", "2")
    assert out.exit_code == 0, out.output
    with psycopg.connect(db_url, autocommit=True) as conn:
        fid, ended, by, speed, source, held = _feed(conn, unique_symbol)
        assert ended is not None and by == "duration" and speed == 60 and source == "synthetic" and not held

        proc = _stream(db_url, unique_symbol)
        try:
            eventually(lambda: (f := _feed(conn, unique_symbol)) and f[0] != fid and f[5], timeout=30, what="feed")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, proc.stderr.read()
        finally:
            proc.kill()
        fid2, ended, by, speed, _, held = _feed(conn, unique_symbol)
        assert ended is not None and by == "stop" and speed == 1 and not held

        proc = _stream(db_url, unique_symbol)
        try:
            eventually(lambda: (f := _feed(conn, unique_symbol)) and f[0] != fid2 and f[5], timeout=30, what="feed")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        fid3, ended, _, _, _, held = _feed(conn, unique_symbol)
        assert ended is None and held  # still expected fresh
        row = conn.execute(
            "SELECT expected, feed_id FROM ops.data_freshness() WHERE symbol = %s", (unique_symbol,)
        ).fetchone()
        assert row == (True, fid3)
        conn.execute("SELECT ops.feed_ended(%s, 'test cleanup')", (fid3,))
