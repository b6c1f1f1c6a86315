"""What health and the watcher cost as history grows: the newest bar of every instrument, and pg_cron's run history.

    python bench/health_bench.py [--calls 7] [--json out.json]

1. Freshness: a scratch database of its own (migrated from db/) with the bundled history loaded
   (`load_sample`, 244 chunks), uncompressed and then with every chunk compressed: the newest bar per instrument
   as one query over every chunk (what `ops.data_freshness(true)` ran before issue 14's last change) beside
   `ops.data_freshness(true)` (`ml.newest_bar`: searched from each series' ML watermark) and `api.health()`.
2. Job history, in the database pg_cron serves (`pgtrade db url` / $PGTRADE_DATABASE_URL, a superuser URL),
   inside a transaction that is rolled back: fake finished runs of pgtrade's every-minute jobs, none, a week's
   (the default `job_history_keep`) and four months' worth, and `ops.cron_jobs()`, `api.health()`, `ops.watch()`
   with each.
Each figure: the median of --calls - 1 calls after a first one (the first one too), milliseconds, client-side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import psycopg
from _common import database_url, machine, scratch_database

from loaders.sample import load_sample

NEWEST_EVERY_CHUNK = """SELECT count(*) FROM market.instruments i CROSS JOIN LATERAL (
  SELECT b."interval", b.ts, b.ingested_at, b.source FROM market.bars b WHERE b.symbol = i.symbol
  ORDER BY b.ts DESC LIMIT 1) l"""

FAKE_RUNS = """INSERT INTO cron.job_run_details (jobid, job_pid, database, username, command, status, return_message,
                                                  start_time, end_time)
SELECT j.jobid, 1, current_database(), j.username, j.command,
       CASE WHEN g %% 500 = 0 THEN 'failed' ELSE 'succeeded' END, '1 row',
       now() - g * interval '1 minute', now() - g * interval '1 minute' + interval '1 second'
FROM generate_series(1, %s) g, (SELECT jobid, username, command FROM cron.job
                                WHERE schedule = '* * * * *' AND jobname LIKE 'pgtrade-%%') j"""


def timed(conn: psycopg.Connection, query: str, calls: int) -> dict:
    took = []
    for _ in range(calls):
        t0 = time.perf_counter()
        conn.execute(query).fetchall()
        took.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": round(statistics.median(took[1:]), 1), "first_ms": round(took[0], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=7)
    ap.add_argument("--json")
    args = ap.parse_args()
    report: dict = {"machine": machine(), "freshness": {}, "job_history": {}}
    with scratch_database("pgtrade_health_bench") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            load_sample(conn)
            report["freshness"]["chunks"] = conn.execute(
                "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'bars'"
            ).fetchone()[0]
        for state in ("uncompressed", "compressed"):
            if state == "compressed":
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("SELECT count(compress_chunk(c, true)) FROM show_chunks('market.bars') c")
            with psycopg.connect(url) as conn:
                report["freshness"][state] = {
                    "newest_bar_over_every_chunk": timed(conn, NEWEST_EVERY_CHUNK, args.calls),
                    "data_freshness_with_unfed": timed(conn, "SELECT * FROM ops.data_freshness(true)", args.calls),
                    "api_health": timed(conn, "SELECT api.health()", args.calls),
                }
    with psycopg.connect(database_url()) as conn:
        for label, minutes in (("none added", 0), ("a week", 7 * 1440), ("four months", 120 * 1440)):
            conn.execute(FAKE_RUNS, (minutes,))
            runs = conn.execute("SELECT count(*) FROM cron.job_run_details").fetchone()[0]
            report["job_history"][label] = {
                "runs": runs,
                "cron_jobs": timed(conn, "SELECT * FROM ops.cron_jobs()", args.calls),
                "api_health": timed(conn, "SELECT api.health()", args.calls),
                "watch": timed(conn, "SELECT ops.watch()", args.calls),
            }
            conn.rollback()
    print(json.dumps(report, indent=2, default=str))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2, default=str)


if __name__ == "__main__":
    main()
