"""Scaling figures for docs/scaling.md: compression, continuous aggregates, retention and a streaming replica's lag.

Starts a primary of its own (pgtrade.cluster.Cluster in a temporary directory, migrated from db/) and a streaming
replica of it (pgtrade.replica.Replica), loads --symbols x --days of US-session 1-minute bars (the generator of
bench/market_bench.py) and prints what it measured as JSON. Nothing else is touched; both servers are destroyed at
the end.

    python bench/scaling_bench.py [--symbols 5] [--days 365] [--runs 30] [--json out.json]

What it measures:
- reference, in the same run: a raw binary COPY of the same rows into a plain table without index or trigger
  (bars/s); every other rate is also given as a fraction of it, so the ratios carry to other machines;
- ingest through the real ingest path (pgtrade.ingest.ingest, 2 connections) into the hypertable and its WAL bytes
  per bar: the first symbol as shipped (the ML closed-bar trigger scores and checks every closed bar), the others
  with that trigger disabled; then the continuous aggregates' materialization of the range
  (market.refresh_rollups);
- compression (compress_chunk on every chunk): time, bytes before and after (chunks_detailed_size over the bench's
  chunks, and hypertable_compression_stats), and the WAL it writes;
- range reads, server time (EXPLAIN ANALYZE: planning + execution, no transfer) p50/p99 over --runs, uncompressed
  and compressed: one symbol, a month and a year of minute bars (market.bars_between);
- rollups: a year of hourly bars of one symbol and a year of daily bars of every symbol, from the continuous
  aggregates vs computed from the raw minute bars (time_bucket over market.bars), uncompressed and compressed;
- retention, in transactions rolled back: the oldest 30 days of minute bars deleted row by row
  (market.apply_retention's DELETE) vs dropped as whole chunks (drop_chunks), on compressed chunks;
- the replica: replay lag (bytes behind and pg_stat_replication.replay_lag, sampled every 50 ms) and the time until
  a row committed on the primary is visible on the replica (a probe row committed every 100 ms, polled on the
  replica every 5 ms), idle, during each ingest and during the compression; the same reads on the replica.

TimescaleDB's policies on market.bars and the rollups are paused while it runs (alter_job scheduled => false), so
a policy firing mid-measurement cannot compress or refresh behind the bench's back.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # cluster_support

from _common import pct  # noqa: E402
from cluster_support import throwaway_cluster  # noqa: E402
from market_bench import START, make_bars, server_ms

from loaders.sample import register_instrument
from pgtrade.cluster import free_port
from pgtrade.ingest import _COPY, _TYPES, _row, ingest, refresh_rollups
from pgtrade.replica import Replica

DB = "pgtrade_scaling"


class ReplicaWatch:
    """While running: the replica's lag as the primary reports it (every 50 ms) and the delay until each probe row
    committed on the primary (every 100 ms) is visible on the replica (polled every 5 ms)."""

    def __init__(self, primary_url: str, replica_url: str, app: str):
        self.primary_url, self.replica_url, self.app = primary_url, replica_url, app
        self.lag_bytes: list[int] = []
        self.lag_ms: list[float] = []
        self.visible_ms: list[float] = []
        self._stop = threading.Event()
        self._committed: dict[int, float] = {}
        self._threads: list[threading.Thread] = []

    def __enter__(self):
        self._threads = [threading.Thread(target=f, daemon=True) for f in (self._sample, self._probe, self._watch)]
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        time.sleep(0.3)  # let the last probe arrive
        self._stop.set()
        for t in self._threads:
            t.join()
        return False

    def _sample(self):
        with psycopg.connect(self.primary_url, autocommit=True) as c:
            while not self._stop.is_set():
                row = c.execute(
                    """SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint,
                              extract(epoch FROM replay_lag) * 1000
                       FROM pg_stat_replication WHERE application_name = %s""",
                    (self.app,),
                ).fetchone()
                if row and row[0] is not None:
                    self.lag_bytes.append(int(row[0]))
                    if row[1] is not None:
                        self.lag_ms.append(float(row[1]))
                time.sleep(0.05)

    def _probe(self):
        with psycopg.connect(self.primary_url, autocommit=True) as c:
            i = int(c.execute("SELECT coalesce(max(id), 0) FROM public.scaling_probe").fetchone()[0])
            while not self._stop.is_set():
                i += 1
                c.execute("INSERT INTO public.scaling_probe (id) VALUES (%s)", (i,))
                self._committed[i] = time.monotonic()
                time.sleep(0.1)

    def _watch(self):
        with psycopg.connect(self.replica_url, autocommit=True) as c:
            seen = int(c.execute("SELECT coalesce(max(id), 0) FROM public.scaling_probe").fetchone()[0])
            while not self._stop.is_set():
                top = int(c.execute("SELECT coalesce(max(id), 0) FROM public.scaling_probe").fetchone()[0])
                now = time.monotonic()
                for i in range(seen + 1, top + 1):
                    if i in self._committed:
                        self.visible_ms.append((now - self._committed[i]) * 1000)
                seen = max(seen, top)
                time.sleep(0.005)

    def summary(self) -> dict:
        def stats(xs, nd=1):
            if not xs:
                return None
            return {
                "n": len(xs),
                "p50": round(statistics.median(xs), nd),
                "p99": round(pct(xs, 99), nd),
                "max": round(max(xs), nd),
            }

        return {
            "replay_lag_bytes": stats(self.lag_bytes, 0),
            "replay_lag_ms": stats(self.lag_ms),
            "commit_to_visible_ms": stats(self.visible_ms),
        }


def wal_bytes(conn: psycopg.Connection, since: str) -> int:
    return int(conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (since,)).fetchone()[0])


def lsn(conn: psycopg.Connection) -> str:
    return conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]


def caught_up(primary_url: str, replica_url: str, timeout: float = 600) -> float:
    with psycopg.connect(primary_url, autocommit=True) as p:
        target = lsn(p)
    t0 = time.monotonic()
    with psycopg.connect(replica_url, autocommit=True) as r:
        while not r.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)).fetchone()[0]:
            if time.monotonic() - t0 > timeout:
                raise SystemExit(f"the replica did not catch up in {timeout} s")
            time.sleep(0.01)
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", type=int, default=5)
    ap.add_argument("--days", type=int, default=365, help="calendar days of US-session minute bars per symbol")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()

    per_symbol = 390 * sum(1 for d in range(args.days) if (START + timedelta(days=d)).weekday() < 5)
    symbols = [f"SCALE{i:02d}" for i in range(args.symbols)]
    results: dict = {
        "machine": {"cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg()},
        "data": {"symbols": len(symbols), "bars_per_symbol": per_symbol, "bars": per_symbol * len(symbols)},
    }
    with throwaway_cluster("scaling", DB) as primary:
        replica = Replica(primary=primary, home=primary.home.parent / "replica", port=free_port())
        try:
            purl, rurl = primary.url(), replica.url
            with psycopg.connect(purl, autocommit=True) as c:
                results["machine"]["server"] = c.execute("SHOW server_version").fetchone()[0]
                c.execute(
                    """SELECT alter_job(j.job_id, scheduled => false) FROM timescaledb_information.jobs j
                       WHERE j.hypertable_schema = 'market' OR j.proc_name = 'policy_refresh_continuous_aggregate'"""
                )
                c.execute(
                    "CREATE TABLE public.scaling_probe (id int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())"
                )
                for sym in symbols:
                    register_instrument(c, symbol=sym, name="scaling benchmark series", asset_class="stock")
            replica.create()
            replica.start()
            replica.wait_streaming()
            rurl = replica.url()
            app = replica.application_name
            print(f"primary and replica up; generating {results['data']['bars']:,} bars", file=sys.stderr)
            bars = make_bars(symbols, per_symbol)
            n = len(bars)

            with ReplicaWatch(purl, rurl, app) as idle:
                time.sleep(3)
            results["replica_idle"] = idle.summary()

            # reference: raw COPY of the same rows into a plain table (no index, no trigger)
            with psycopg.connect(purl) as c:
                c.execute(
                    """CREATE TABLE public.copy_reference (symbol text, interval text, ts timestamptz, open numeric,
                         high numeric, low numeric, close numeric, volume numeric, raw text, problem text)"""
                )
                c.commit()
                t0 = time.perf_counter()
                with c.cursor() as cur, cur.copy(_COPY.replace("pg_temp.bars_staging", "public.copy_reference")) as cp:
                    cp.set_types(_TYPES)
                    for b in bars:
                        cp.write_row(_row(b))
                c.commit()
                copy_s = time.perf_counter() - t0
                c.execute("DROP TABLE public.copy_reference")
                c.commit()
            copy_rate = n / copy_s
            results["reference_raw_copy"] = {"bars": n, "seconds": round(copy_s, 2), "bars_per_s": round(copy_rate)}
            caught_up(purl, rurl)

            # ingest through the real path, with the replica watched: the first symbol as shipped (the ML closed-bar
            # trigger on: anomaly detection and scoring of every closed bar), the others with that trigger disabled (the
            # validation, bar-revision and live-trading triggers still run)
            first = [b for b in bars if b.symbol == symbols[0]]
            rest = [b for b in bars if b.symbol != symbols[0]]
            del bars
            results["ingest"] = {}
            ml_trigger = (
                "ALTER TABLE market.bars {} TRIGGER _200_ml_closed_on_insert, {} TRIGGER _200_ml_closed_on_update"
            )
            for label, part, ml_on in (("ml_on", first, True), ("ml_off", rest, False)):
                if not part:
                    continue
                with psycopg.connect(purl, autocommit=True) as c:
                    if not ml_on:
                        c.execute(ml_trigger.format("DISABLE", "DISABLE"))
                    lsn0 = lsn(c)
                with ReplicaWatch(purl, rurl, app) as watch, psycopg.connect(purl) as c:
                    t0 = time.perf_counter()
                    rep = ingest(c, part, source="scaling", workers=2, refresh=False)
                    ingest_s = time.perf_counter() - t0
                    assert rep.total.inserted == len(part), rep.total
                    catch = caught_up(purl, rurl)
                with psycopg.connect(purl, autocommit=True) as c:
                    ingest_wal = wal_bytes(c, lsn0)
                    if not ml_on:
                        c.execute(ml_trigger.format("ENABLE", "ENABLE"))
                results["ingest"][label] = {
                    "bars": len(part),
                    "seconds": round(ingest_s, 2),
                    "bars_per_s": round(len(part) / ingest_s),
                    "of_raw_copy": round((len(part) / ingest_s) / copy_rate, 3),
                    "wal_bytes_per_bar": round(ingest_wal / len(part), 1),
                }
                results[f"replica_during_ingest_{label}"] = watch.summary() | {"caught_up_after_s": round(catch, 3)}
            del first, rest

            with psycopg.connect(purl, autocommit=True) as c:
                lsn0 = lsn(c)
                t0 = time.perf_counter()
                refresh_rollups(c, START, START + timedelta(days=args.days + 1), force=True)
                refresh_s = time.perf_counter() - t0
                results["rollup_materialization"] = {
                    "seconds": round(refresh_s, 2),
                    "minute_bars_per_s": round(n / refresh_s),
                    "of_raw_copy": round((n / refresh_s) / copy_rate, 3),
                    "wal_bytes": wal_bytes(c, lsn0),
                    "rows": {
                        v: c.execute(f"SELECT count(*) FROM market.{v}").fetchone()[0]
                        for v in ("bars_5m", "bars_1h", "bars_1d")
                    },
                }
                c.execute("ANALYZE market.bars")

            sym = symbols[0]
            month = (START, START + timedelta(days=30))
            year = (START, START + timedelta(days=args.days))
            range_q = "SELECT * FROM market.bars_between(%s, '1m', %s, %s)"
            hourly_cagg = "SELECT * FROM market.bars_1h WHERE symbol = %s AND ts >= %s AND ts < %s"
            hourly_raw = """SELECT symbol, time_bucket('1 hour', ts) AS ts, first(open, ts), max(high), min(low),
                                   last(close, ts), sum(volume), count(*)
                            FROM market.bars WHERE symbol = %s AND interval = '1m' AND ts >= %s AND ts < %s
                            GROUP BY 1, 2"""
            daily_cagg = "SELECT * FROM market.bars_1d WHERE ts >= %s AND ts < %s"
            daily_raw = """SELECT symbol, time_bucket('1 day', ts) AS ts, first(open, ts), max(high), min(low),
                                  last(close, ts), sum(volume), count(*)
                           FROM market.bars WHERE interval = '1m' AND ts >= %s AND ts < %s GROUP BY 1, 2"""

            def reads(url: str) -> dict:
                with psycopg.connect(url, autocommit=True) as c:
                    c.execute("SET jit = off")
                    return {
                        "range_month_1m": server_ms(c, range_q, (sym, *month), args.runs)
                        | {"rows": c.execute(f"SELECT count(*) FROM ({range_q}) x", (sym, *month)).fetchone()[0]},
                        "range_year_1m": server_ms(c, range_q, (sym, *year), args.runs)
                        | {"rows": c.execute(f"SELECT count(*) FROM ({range_q}) x", (sym, *year)).fetchone()[0]},
                        "hourly_year_one_symbol_cagg": server_ms(c, hourly_cagg, (sym, *year), args.runs),
                        "hourly_year_one_symbol_from_raw": server_ms(
                            c, hourly_raw, (sym, *year), max(3, args.runs // 3)
                        ),
                        "daily_year_all_symbols_cagg": server_ms(c, daily_cagg, year, args.runs),
                        "daily_year_all_symbols_from_raw": server_ms(c, daily_raw, year, max(3, args.runs // 10)),
                    }

            results["reads_uncompressed"] = reads(purl)

            chunk_bytes = """SELECT sum(s.total_bytes)::bigint FROM chunks_detailed_size('market.bars') s
                             JOIN timescaledb_information.chunks c ON c.chunk_schema = s.chunk_schema
                                                                  AND c.chunk_name = s.chunk_name
                             WHERE c.range_end > %s"""
            with psycopg.connect(purl, autocommit=True) as c:
                before = c.execute(chunk_bytes, (START,)).fetchone()[0]
                chunks = [r[0] for r in c.execute("SELECT show_chunks('market.bars')").fetchall()]
                lsn0 = lsn(c)
            with ReplicaWatch(purl, rurl, app) as during_compress, psycopg.connect(purl, autocommit=True) as c:
                t0 = time.perf_counter()
                for ch in chunks:
                    c.execute("SELECT compress_chunk(%s::regclass, if_not_compressed => true)", (ch,))
                compress_s = time.perf_counter() - t0
                catch = caught_up(purl, rurl)
            with psycopg.connect(purl, autocommit=True) as c:
                compress_wal = wal_bytes(c, lsn0)
                c.execute("ANALYZE market.bars")
                after = c.execute(chunk_bytes, (START,)).fetchone()[0]
                stats = c.execute(
                    """SELECT total_chunks, number_compressed_chunks, before_compression_total_bytes,
                              after_compression_total_bytes FROM hypertable_compression_stats('market.bars')"""
                ).fetchone()
            results["compression"] = {
                "chunks": len(chunks),
                "seconds": round(compress_s, 2),
                "bars_per_s": round(n / compress_s),
                "of_raw_copy": round((n / compress_s) / copy_rate, 3),
                "bytes_before": int(before),
                "bytes_after": int(after),
                "bytes_per_bar_before": round(before / n, 1),
                "bytes_per_bar_after": round(after / n, 1),
                "ratio": round(before / after, 2),
                "wal_bytes": compress_wal,
                "hypertable_compression_stats": {
                    "total_chunks": stats[0],
                    "compressed_chunks": stats[1],
                    "before_bytes": int(stats[2]),
                    "after_bytes": int(stats[3]),
                    "ratio": round(stats[2] / stats[3], 2),
                },
            }
            results["replica_during_compression"] = during_compress.summary() | {"caught_up_after_s": round(catch, 3)}
            results["reads_compressed"] = reads(purl)
            caught_up(purl, rurl)
            results["reads_compressed_on_replica"] = reads(rurl)

            # retention on compressed chunks: row by row (market.apply_retention's DELETE) vs whole chunks; rolled back
            cutoff = START + timedelta(days=30)
            with psycopg.connect(purl) as c:
                c.execute("SELECT set_config('pgtrade.bar_revisions', 'off', true)")
                t0 = time.perf_counter()
                deleted = c.execute(
                    "DELETE FROM market.bars b WHERE b.interval = '1m' AND b.ts < %s", (cutoff,)
                ).rowcount
                delete_s = time.perf_counter() - t0
                c.rollback()
                in_chunks = c.execute(
                    """SELECT count(*) FROM market.bars b WHERE b.ts < (
                         SELECT max(range_end) FROM timescaledb_information.chunks
                         WHERE hypertable_schema = 'market' AND hypertable_name = 'bars' AND range_end <= %s)""",
                    (cutoff,),
                ).fetchone()[0]
                t0 = time.perf_counter()
                dropped = c.execute(
                    "SELECT count(*) FROM drop_chunks('market.bars', older_than => %s)", (cutoff,)
                ).fetchone()
                drop_s = time.perf_counter() - t0
                c.rollback()
            results["retention_oldest_30_days"] = {
                "delete_rows": deleted,
                "delete_s": round(delete_s, 3),
                "drop_chunks": dropped[0],
                "drop_chunks_s": round(drop_s, 3),
                "drop_chunks_rows": in_chunks,
                "note": "drop_chunks removes only chunks wholly older than the cutoff (30-day chunks)",
            }
        finally:
            replica.destroy()
    results["machine"]["loadavg_at_end"] = os.getloadavg()
    print(json.dumps(results, indent=2, default=float))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
