"""Schedules: pg_cron runs pgtrade's own jobs (for real, in the test database, which is the cluster's
cron.database_name); TimescaleDB's job scheduler holds the storage policies."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import psycopg

EXPECTED_CRON = {
    "pgtrade-market-retention": ("17 3 * * *", "SELECT * FROM market.apply_retention()"),
    "pgtrade-trading-snapshots": ("* * * * *", "SELECT trading.snapshot_live_portfolios()"),
    "pgtrade-trading-expire-day-orders": ("* * * * *", "SELECT trading.expire_orders()"),
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


def test_pg_cron_really_runs_the_snapshot_job(db_url):
    """Bounded wait (pg_cron 1.4 runs at most once a minute) for the every-minute job to run and write a snapshot
    of the default live account."""
    started = datetime.now(UTC)
    deadline = time.monotonic() + 130
    with psycopg.connect(db_url, autocommit=True) as conn:
        while True:
            run = conn.execute(
                """SELECT d.status, d.return_message FROM cron.job_run_details d JOIN cron.job j USING (jobid)
                   WHERE j.jobname = 'pgtrade-trading-snapshots' AND d.start_time >= %s
                     AND d.status IN ('succeeded', 'failed')
                   ORDER BY d.runid DESC LIMIT 1""",
                (started,),
            ).fetchone()
            if run or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert run is not None, "pg_cron did not run pgtrade-trading-snapshots within 130 s"
        assert run[0] == "succeeded", run
        snapshot = conn.execute(
            """SELECT count(*) FROM trading.portfolio_snapshots s JOIN trading.accounts a ON a.id = s.account_id
               WHERE a.name = 'default' AND s.ts >= %s""",
            (started,),
        ).fetchone()[0]
        assert snapshot >= 1


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
