"""Market-data benchmarks: ingest, storage and compression, range reads, rollups.

Runs in a scratch database of its own on the server named by $PGTRADE_DATABASE_URL or `pgtrade db url`
(a superuser URL), migrated from db/, and drops it at the end. Prints its figures.

    python bench/market_bench.py [--bars-per-symbol 100000] [--symbols 10] [--runs 100] [--json out.json]

What it measures (issue 2 §7, issue 8):
- ingest of N 1-minute bars for S symbols through the real ingest path (pgtrade.ingest.ingest: binary COPY into
  the staging table + market.ingest_staged) into the hypertable, and a full re-load of the same bars;
- the same rows into a plain table with the same primary key and upsert (reference);
- bytes per bar before and after compression;
- range reads, p50/p99 over --runs: one symbol's year of minute bars (uncompressed and compressed chunks),
  20 years of daily bars (the bundled SPX series), a year of hourly bars from the continuous aggregate vs
  resampled from raw minute bars. Client time includes fetching every row into Python; server time is the
  execution time PostgreSQL reports (EXPLAIN ANALYZE, no row transfer).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import psycopg.sql
from _common import machine, pct, scratch_database

from loaders.sample import load_sample, register_instrument
from pgtrade.ingest import _COPY, _TYPES, Bar, _row, ingest, refresh_rollups

BENCH_DB = "pgtrade_bench"
START = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


def session_minutes(n: int) -> list[datetime]:
    """n 1-minute bar stamps over US regular sessions (14:30-21:00 UTC, weekdays): 390 a day, ~98k a year."""
    out, day = [], START
    while len(out) < n:
        if day.weekday() < 5:
            out.extend(day + timedelta(minutes=m) for m in range(390))
        day += timedelta(days=1)
    return out[:n]


def make_bars(symbols: list[str], per_symbol: int, seed: int = 7) -> list[Bar]:
    rng = random.Random(seed)
    stamps = session_minutes(per_symbol)
    bars = []
    for sym in symbols:
        price = 100.0
        for ts in stamps:
            o = price
            c = max(1.0, o * (1 + rng.gauss(0, 0.0008)))
            h = max(o, c) * (1 + abs(rng.gauss(0, 0.0003)))
            low = min(o, c) * (1 - abs(rng.gauss(0, 0.0003)))
            bars.append(
                Bar(
                    symbol=sym,
                    interval="1m",
                    ts=ts,
                    open=Decimal(f"{o:.4f}"),
                    high=Decimal(f"{h:.4f}"),
                    low=Decimal(f"{low:.4f}"),
                    close=Decimal(f"{c:.4f}"),
                    volume=rng.randint(100, 50_000),
                )
            )
            price = c
    return bars


def timed_runs(fn, runs: int) -> dict:
    fn()  # warm the cache and the plan
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return {
        "p50_ms": round(statistics.median(samples), 2),
        "p99_ms": round(pct(samples, 99), 2),
        "max_ms": round(max(samples), 2),
    }


def server_ms(conn: psycopg.Connection, sql: str, params: tuple, runs: int) -> dict:
    """Planning plus execution time as PostgreSQL reports it (EXPLAIN ANALYZE, no rows sent), p50/p99."""
    samples = []
    for i in range(runs + 1):
        plan = conn.execute("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) " + sql, params).fetchone()[0]
        if i:
            samples.append(plan[0]["Execution Time"] + plan[0]["Planning Time"])
    return {"p50_ms": round(statistics.median(samples), 2), "p99_ms": round(pct(samples, 99), 2)}


def wire_ms(conn: psycopg.Connection, sql: str, params: tuple, runs: int) -> dict:
    """Execution plus transfer of every row to the client (COPY ... TO STDOUT, bytes not parsed), p50/p99."""
    query = psycopg.sql.SQL("COPY ({}) TO STDOUT").format(
        psycopg.sql.SQL(sql).format(*[psycopg.sql.Literal(p) for p in params])
    )

    def run():
        with conn.cursor().copy(query) as cp:
            for _ in cp:
                pass

    return {k: v for k, v in timed_runs(run, runs).items() if k != "max_ms"}


def relation_bytes(conn: psycopg.Connection, symbols_like: str) -> tuple[int, int]:
    """(bytes before compression, bytes after) of the chunks holding the bench bars."""
    row = conn.execute(
        """SELECT coalesce(sum(before_compression_total_bytes), 0), coalesce(sum(after_compression_total_bytes), 0)
           FROM chunk_compression_stats('market.bars') WHERE compression_status = 'Compressed'"""
    ).fetchone()
    return int(row[0]), int(row[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", type=int, default=10)
    ap.add_argument("--bars-per-symbol", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2, help="connections the ingest pipelines over")
    ap.add_argument("--only-ingest", action="store_true", help="stop after the ingest figures")
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = ap.parse_args()

    results: dict = {"machine": machine()}
    with scratch_database(BENCH_DB, keep=args.keep) as url:
        symbols = [f"BENCH{i:02d}" for i in range(args.symbols)]
        with psycopg.connect(url) as conn:
            for sym in symbols:
                register_instrument(conn, symbol=sym, name="benchmark series", asset_class="stock")
            conn.commit()
            load_sample(conn, symbols=["SPX"])
            bars = make_bars(symbols, args.bars_per_symbol)
            n = len(bars)
            print(f"generated {n:,} bars for {len(symbols)} symbols", file=sys.stderr)

            t0 = time.perf_counter()
            rep = ingest(conn, bars, source="bench", workers=args.workers)
            first = time.perf_counter() - t0
            assert rep.total.inserted == n, rep.total
            t0 = time.perf_counter()
            rep2 = ingest(conn, bars, source="bench", workers=args.workers)
            again = time.perf_counter() - t0
            assert rep2.total.unchanged == n, rep2.total
            results["ingest_hypertable"] = {
                "bars": n,
                "workers": args.workers,
                "seconds": round(first, 2),
                "bars_per_s": round(n / first),
            }
            results["reload_hypertable"] = {
                "bars": n,
                "workers": args.workers,
                "seconds": round(again, 2),
                "bars_per_s": round(n / again),
                "changed": rep2.total.inserted + rep2.total.updated,
            }

            if args.only_ingest:
                print(json.dumps(results, indent=2, default=float))
                return
            # Reference: the same COPY and upsert into a plain table with the same primary key and checks.
            conn.execute("CREATE TABLE public.bars_plain (LIKE market.bars INCLUDING ALL)")
            conn.commit()
            t0 = time.perf_counter()
            for start in range(0, n, 200_000):
                with conn.transaction(), conn.cursor() as cur:
                    cur.execute("SELECT market.ingest_begin()")
                    with cur.copy(_COPY) as cp:
                        cp.set_types(_TYPES)
                        for b in bars[start : start + 200_000]:
                            cp.write_row(_row(b))
                    cur.execute(
                        """INSERT INTO public.bars_plain AS b (symbol, interval, ts, open, high, low, close, volume,
                                                              source)
                           SELECT upper(btrim(s.symbol)), s.interval, s.ts, s.open, s.high, s.low, s.close,
                                  s.volume, 'bench'
                           FROM pg_temp.bars_staging s JOIN market.intervals iv ON iv.code = s.interval
                           JOIN market.instruments i ON i.symbol = upper(btrim(s.symbol))
                           WHERE market.bar_problem(iv.step, s.ts, s.open, s.high, s.low, s.close, s.volume)
                                 IS NULL
                           ON CONFLICT (symbol, interval, ts) DO UPDATE
                             SET open = excluded.open, high = excluded.high, low = excluded.low,
                                 close = excluded.close, volume = excluded.volume
                             WHERE (b.open, b.high, b.low, b.close, b.volume) IS DISTINCT FROM
                                   (excluded.open, excluded.high, excluded.low, excluded.close, excluded.volume)"""
                    )
            plain = time.perf_counter() - t0
            results["ingest_plain_reference"] = {"bars": n, "seconds": round(plain, 2), "bars_per_s": round(n / plain)}
            del bars

            refresh_rollups(conn, START, START + timedelta(days=400))
            conn.execute("ANALYZE market.bars")
            conn.commit()
            year = (START, START + timedelta(days=365))
            sym = symbols[0]
            minute_rows = conn.execute(
                "SELECT count(*) FROM market.bars_between(%s, '1m', %s, %s)", (sym, *year)
            ).fetchone()[0]

            def read(interval, lo, hi, s=sym):
                return lambda: conn.execute(
                    "SELECT * FROM market.bars_between(%s, %s, %s, %s)", (s, interval, lo, hi)
                ).fetchall()

            q = "SELECT * FROM market.bars_between(%s, %s, %s, %s)"
            results["range_year_1m_uncompressed"] = {
                "rows": minute_rows,
                "client": timed_runs(read("1m", *year), args.runs),
                "server": server_ms(conn, q, (sym, "1m", *year), args.runs),
                "wire": wire_ms(conn, q.replace("%s", "{}"), (sym, "1m", *year), args.runs),
            }
            spx = (datetime(1999, 1, 1, tzinfo=UTC), datetime(2019, 1, 1, tzinfo=UTC))
            results["range_20y_1d"] = {
                "rows": conn.execute("SELECT count(*) FROM market.bars_between('SPX', '1d', %s, %s)", spx).fetchone()[
                    0
                ],
                "client": timed_runs(read("1d", *spx, s="SPX"), args.runs),
                "server": server_ms(conn, q, ("SPX", "1d", *spx), args.runs),
                "wire": wire_ms(conn, q.replace("%s", "{}"), ("SPX", "1d", *spx), args.runs),
            }
            results["range_year_1h_cagg"] = {
                "rows": conn.execute(
                    "SELECT count(*) FROM market.bars_between(%s, '1h', %s, %s)", (sym, *year)
                ).fetchone()[0],
                "client": timed_runs(read("1h", *year), args.runs),
                "server": server_ms(conn, q, (sym, "1h", *year), args.runs),
            }
            rq = "SELECT * FROM market.resample(%s, %s, %s, %s)"
            results["range_year_1h_from_raw"] = {
                "rows": conn.execute("SELECT count(*) FROM market.resample(%s, '1h', %s, %s)", (sym, *year)).fetchone()[
                    0
                ],
                "client": timed_runs(lambda: conn.execute(rq, (sym, "1h", *year)).fetchall(), args.runs),
                "server": server_ms(conn, rq, (sym, "1h", *year), args.runs),
            }

            # storage of the minute-bar chunks (the bundled daily history lives in chunks of its own, 1999-2018)
            chunk_sizes = """SELECT sum(s.total_bytes) FROM chunks_detailed_size('market.bars') s
                             JOIN timescaledb_information.chunks c ON c.chunk_schema = s.chunk_schema
                                                                  AND c.chunk_name = s.chunk_name
                             WHERE c.range_end > %s"""
            before = conn.execute(chunk_sizes, (START,)).fetchone()[0]
            rows_total = conn.execute("SELECT count(*) FROM market.bars WHERE ts >= %s", (START,)).fetchone()[0]
            conn.commit()
        with psycopg.connect(url, autocommit=True) as ac:
            for (chunk,) in ac.execute("SELECT show_chunks('market.bars')").fetchall():
                ac.execute("SELECT compress_chunk(%s::regclass, if_not_compressed => true)", (chunk,))
            ac.execute("ANALYZE market.bars")
        with psycopg.connect(url) as conn:
            after = conn.execute(chunk_sizes, (START,)).fetchone()[0]
            results["storage"] = {
                "rows": rows_total,
                "bytes_before": int(before),
                "bytes_after": int(after),
                "bytes_per_bar_before": round(before / rows_total, 1),
                "bytes_per_bar_after": round(after / rows_total, 1),
                "ratio": round(before / after, 2),
            }
            results["range_year_1m_compressed"] = {
                "rows": conn.execute(
                    "SELECT count(*) FROM market.bars_between(%s, '1m', %s, %s)", (sym, *year)
                ).fetchone()[0],
                "client": timed_runs(lambda: conn.execute(q, (sym, "1m", *year)).fetchall(), args.runs),
                "server": server_ms(conn, q, (sym, "1m", *year), args.runs),
                "wire": wire_ms(conn, q.replace("%s", "{}"), (sym, "1m", *year), args.runs),
            }
    print(json.dumps(results, indent=2, default=float))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
