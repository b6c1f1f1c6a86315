"""Schedules: pg_cron runs pgtrade's own jobs (for real, in the test database, which is the cluster's
cron.database_name); TimescaleDB's job scheduler runs the storage policies (for real too); api.health() reports a
job whose last run failed."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from waiting import eventually

from pgtrade.migrate import migrate

EXPECTED_CRON = {
    "pgtrade-market-retention": ("17 3 * * *", "SELECT * FROM market.apply_retention()"),
    "pgtrade-trading-snapshots": ("* * * * *", "SELECT trading.snapshot_live_portfolios()"),
    "pgtrade-trading-expire-day-orders": ("* * * * *", "SELECT trading.expire_orders()"),
    "pgtrade-ml-closed-bars": ("* * * * *", "SELECT ml.process_closed_bars()"),
    "pgtrade-ml-retrain": ("30 2 * * *", "SELECT ml.retrain_all()"),
    "pgtrade-ops-watch": ("* * * * *", "SELECT ops.watch()"),
    "pgtrade-cron-history": ("47 3 * * *", "SELECT ops.purge_cron_history()"),
}


def test_pgtrade_jobs_are_scheduled_in_pg_cron(db):
    assert db.execute("SELECT current_setting('cron.database_name') = current_database()").fetchone()[0]
    jobs = {
        name: (schedule, command)
        for name, schedule, command in db.execute(
            "SELECT jobname, schedule, command FROM cron.job WHERE jobname LIKE 'pgtrade-%'"
        ).fetchall()
    }
    assert jobs == EXPECTED_CRON


def test_cron_history_older_than_job_history_keep_is_purged(db):
    """ops.purge_cron_history (the daily job pgtrade-cron-history, as pgtrade_jobs) deletes pgtrade's finished runs
    older than ops.health_settings.job_history_keep and nothing else: not a newer run, not a run in progress, not
    another role's run. job_history_keep may not be shorter than the failure window health counts failures in."""
    keep = db.execute("SELECT job_history_keep FROM ops.health_settings").fetchone()[0]
    job = db.execute("SELECT jobid FROM cron.job WHERE jobname = 'pgtrade-ops-watch'").fetchone()[0]
    old = datetime.now(UTC) - keep - timedelta(hours=1)
    recent = datetime.now(UTC) - timedelta(hours=1)
    runs = {
        "old": ("pgtrade_jobs", "succeeded", old),
        "old failed": ("pgtrade_jobs", "failed", old),
        "recent": ("pgtrade_jobs", "failed", recent),
        "old, in progress": ("pgtrade_jobs", "running", old),
        "old, another role's": ("postgres", "succeeded", old),
    }
    ids = {}
    for name, (user, status, t) in runs.items():
        ids[name] = db.execute(
            """INSERT INTO cron.job_run_details (jobid, database, username, command, status, return_message,
                                                 start_time, end_time)
               VALUES (%s, current_database(), %s, 'SELECT ops.watch()', %s, %s, %s, %s) RETURNING runid""",
            (job, user, status, name, t, None if status == "running" else t + timedelta(seconds=1)),
        ).fetchone()[0]
    db.execute("SET ROLE pgtrade_jobs")
    assert db.execute("SELECT ops.purge_cron_history()").fetchone()[0] == 2
    db.execute("RESET ROLE")
    left = {
        r[0]
        for r in db.execute(
            "SELECT return_message FROM cron.job_run_details WHERE runid = ANY(%s)", (list(ids.values()),)
        )
    }
    assert left == {"recent", "old, in progress", "old, another role's"}
    with pytest.raises(psycopg.errors.CheckViolation), db.transaction():
        db.execute("UPDATE ops.health_settings SET job_history_keep = failure_window - interval '1 second'")


FINISHED = """SELECT d.runid, d.status, d.return_message FROM cron.job_run_details d JOIN cron.job j USING (jobid)
              WHERE j.jobname = %s AND d.runid > %s AND d.status IN ('succeeded', 'failed')
              ORDER BY d.runid DESC LIMIT 1"""


def cron_diagnosis(conn: psycopg.Connection, since_runid: int) -> str:
    """What pg_cron did since the test began, for a failure message: every run (a run that could not start has
    no start_time), and the background workers alive now (the pool is max_worker_processes)."""
    runs = conn.execute(
        """SELECT d.runid, j.jobname, d.status, d.start_time, d.end_time, left(d.return_message, 200)
           FROM cron.job_run_details d LEFT JOIN cron.job j USING (jobid) WHERE d.runid > %s ORDER BY d.runid""",
        (since_runid,),
    ).fetchall()
    workers = conn.execute(
        "SELECT backend_type, count(*) FROM pg_stat_activity WHERE backend_type NOT IN ('client backend',"
        " 'checkpointer', 'background writer', 'walwriter', 'autovacuum launcher', 'autovacuum worker')"
        " GROUP BY 1 ORDER BY 1"
    ).fetchall()
    limits = conn.execute(
        "SELECT string_agg(name || '=' || setting, ' ' ORDER BY name) FROM pg_settings WHERE name IN"
        " ('max_worker_processes', 'max_parallel_workers', 'timescaledb.max_background_workers',"
        " 'cron.max_running_jobs')"
    ).fetchone()[0]
    return f"runs since: {runs}; background workers now: {workers}; {limits}"


def wait_for_run(conn: psycopg.Connection, job: str, since_runid: int, timeout: float) -> tuple:
    """The newest finished run of ``job`` after ``since_runid`` (bounded wait; the failure lists what pg_cron did)."""
    deadline = time.monotonic() + timeout
    while (run := conn.execute(FINISHED, (job, since_runid)).fetchone()) is None:
        if time.monotonic() > deadline:
            diagnosis = cron_diagnosis(conn, since_runid)
            raise AssertionError(f"pg_cron finished no run of {job} in {timeout:g} s: {diagnosis}")
        time.sleep(0.5)
    return run


def test_pg_cron_really_runs_the_snapshot_job(db_url):
    """pg_cron 1.4 runs at most once a minute: a bounded wait (two minute boundaries and a margin) for the
    every-minute snapshot job, scheduled by the migration, to run and write a snapshot of the default live account.
    Nothing here touches cron.job first: a change to it would make pg_cron reload its job list and hide a launcher
    that missed the migration's jobs (pgtrade/pg_cron.py).

    New runs are told by runid, not by time: a run that pg_cron could not start (e.g. no free background worker)
    is recorded 'failed' with no start_time, and must show up here as that failure, not as a silent timeout."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        since = conn.execute("SELECT coalesce(max(runid), 0) FROM cron.job_run_details").fetchone()[0]
        started = conn.execute("SELECT now()").fetchone()[0]
        run = wait_for_run(conn, "pgtrade-trading-snapshots", since, 130)
        assert run[1] == "succeeded", cron_diagnosis(conn, since)
        snapshot = conn.execute(
            """SELECT count(*) FROM trading.portfolio_snapshots s JOIN trading.accounts a ON a.id = s.account_id
               WHERE a.name = 'default' AND s.ts >= %s""",
            (started,),
        ).fetchone()[0]
        assert snapshot >= 1


def test_health_names_a_failing_pg_cron_job(db_url):
    """A job of pgtrade's (scheduled as pgtrade_jobs, like db/jobs) that raises runs at the next minute boundary
    (bounded wait) and api.health() must name it as failing; once it is unscheduled, health no longer mentions it."""
    failing = f"pgtrade-test-failing-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        since = conn.execute("SELECT coalesce(max(runid), 0) FROM cron.job_run_details").fetchone()[0]
        with conn.transaction():
            conn.execute("SET LOCAL ROLE pgtrade_jobs")
            conn.execute("SELECT cron.schedule(%s, '* * * * *', 'SELECT 1/0')", (failing,))
        try:
            run = wait_for_run(conn, failing, since, 130)
            assert run[1] == "failed" and "division by zero" in run[2], run
            health = conn.execute("SELECT api.health()").fetchone()[0]
            assert health["status"] == "failing"
            named = [p for p in health["problems"] if p["kind"] == "pg_cron" and p["job"] == failing]
            assert named and named[0]["last_status"] == "failed", health["problems"]
        finally:
            with conn.transaction():
                conn.execute("SET LOCAL ROLE pgtrade_jobs")  # unschedule(name) finds the job of the current role
                conn.execute("SELECT cron.unschedule(%s)", (failing,))
        health = conn.execute("SELECT api.health()").fetchone()[0]
        assert not [p for p in health["problems"] if p.get("job") == failing]


def test_timescaledb_scheduler_itself_runs_the_policies_to_success(db_url):
    """Not run_job: each market policy is made due now, and TimescaleDB's own scheduler must run it and record
    'Success' for a run that started after this test did (bounded wait)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        jobs = dict(
            conn.execute(
                """SELECT job_id, hypertable_name || ':' || proc_name FROM timescaledb_information.jobs
                   WHERE hypertable_schema = 'market' AND scheduled"""
            ).fetchall()
        )
        assert sorted(jobs.values()) == [
            "bars:policy_compression",
            "bars_1d:policy_refresh_continuous_aggregate",
            "bars_1h:policy_refresh_continuous_aggregate",
            "bars_5m:policy_refresh_continuous_aggregate",
        ]
        started = conn.execute("SELECT now()").fetchone()[0]
        for job_id in jobs:
            conn.execute("SELECT alter_job(%s, next_start => now())", (job_id,))
        stats_q = """SELECT job_id, last_run_status, last_run_started_at, last_successful_finish, total_failures
                     FROM timescaledb_information.job_stats WHERE job_id = ANY(%s) ORDER BY job_id"""

        def all_succeeded():
            stats = conn.execute(stats_q, (list(jobs),)).fetchall()
            done = [s for s in stats if s[2] is not None and s[2] >= started and s[1] is not None and s[3] is not None]
            return stats if len(done) == len(jobs) else None

        try:
            stats = eventually(all_succeeded, timeout=120, interval=0.5, what="the scheduler to run the 4 policies")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {conn.execute(stats_q, (list(jobs),)).fetchall()}") from None
        assert [(jobs[s[0]], s[1]) for s in stats] == [(jobs[s[0]], "Success") for s in stats]
        assert all(s[3] >= started for s in stats)


def test_health_is_ok_only_while_every_job_succeeds(scratch_db):
    """On a database of its own (so no other test's job can make it fail): ok once the policies' first runs
    succeeded, 'failing' naming the job while a TimescaleDB job's last run failed for real, ok again once that job
    is gone."""
    with psycopg.connect(scratch_db, autocommit=True) as conn:
        migrate(conn)

        def health() -> dict:
            return conn.execute("SELECT api.health()").fetchone()[0]

        # the policies ran when the migration created them (and a run may have met the migration's locks): run them
        # again now, so the wait below is for runs of the finished database
        conn.execute(
            "SELECT alter_job(job_id, next_start => now()) FROM timescaledb_information.jobs WHERE job_id >= 1000"
        )

        def all_ok() -> dict | None:
            h = health()
            ran = all(j["last_status"] == "Success" for j in h["timescaledb_jobs"])
            return h if ran and h["status"] == "ok" else None

        ok = eventually(all_ok, timeout=60, interval=0.5, what="the policies to succeed and status ok")
        assert ok["problems"] == [] and ok["pg_cron"] is None  # pg_cron serves the test database, not this one
        assert len(ok["timescaledb_jobs"]) == 4
        conn.execute(
            """CREATE PROCEDURE ops.zz_failing_job(job_id int, config jsonb) LANGUAGE plpgsql AS $$
               BEGIN RAISE EXCEPTION 'this job fails on purpose'; END $$"""
        )
        job = conn.execute(
            "SELECT add_job('ops.zz_failing_job', '1 hour', initial_start => now(), fixed_schedule => false)"
        ).fetchone()[0]
        try:
            bad = eventually(
                lambda: health()["status"] == "failing" and health(), timeout=60, what="the failing job in health"
            )
            assert [(p["kind"], p["job_id"], p["proc"], p["last_status"]) for p in bad["problems"]] == [
                ("timescaledb", job, "ops.zz_failing_job", "Failed")
            ]
        finally:
            conn.execute("SELECT delete_job(%s)", (job,))
        assert health()["status"] == "ok" and health()["problems"] == []


def test_timescaledb_policies_exist_and_do_their_work_when_run(db_url, unique_symbol):
    with psycopg.connect(db_url, autocommit=True) as conn:
        jobs = dict(
            conn.execute(
                """SELECT hypertable_name || ':' || proc_name, job_id FROM timescaledb_information.jobs
               WHERE hypertable_schema = 'market' AND scheduled"""
            ).fetchall()
        )
        assert set(jobs) == {
            "bars:policy_compression",
            "bars_5m:policy_refresh_continuous_aggregate",
            "bars_1h:policy_refresh_continuous_aggregate",
            "bars_1d:policy_refresh_continuous_aggregate",
        }
        # bars of 2001 sit in a chunk far older than the policy's 60 days: one run compresses it
        old = datetime(2001, 6, 4, tzinfo=UTC)
        conn.execute("SELECT market.upsert_instrument(%s::text)", (unique_symbol,))
        conn.execute(
            "INSERT INTO market.bars (symbol, interval, ts, open, high, low, close, volume, source) "
            "VALUES (%s, '1d', %s, 1, 1, 1, 1, 1, 'test')",
            (unique_symbol, old),
        )
        chunk = """SELECT is_compressed FROM timescaledb_information.chunks
                   WHERE hypertable_name = 'bars' AND range_start <= %s AND range_end > %s"""
        # the scheduler's own first run of the policy may have compressed that chunk already: start uncompressed
        conn.execute(
            "SELECT decompress_chunk(c, if_compressed => true) FROM show_chunks('market.bars', "
            "newer_than => %s::timestamptz, older_than => %s::timestamptz) c",
            (old - timedelta(days=40), old + timedelta(days=40)),
        )
        assert conn.execute(chunk, (old, old)).fetchone()[0] is False
        conn.execute("CALL run_job(%s)", (jobs["bars:policy_compression"],))
        assert conn.execute(chunk, (old, old)).fetchone()[0] is True
        assert conn.execute("SELECT close FROM market.bars WHERE symbol = %s", (unique_symbol,)).fetchone()[0] == 1
