"""Loading at the speed of COPY: the ingest path and `pgtrade load csv` beside a raw COPY of the same rows.

Runs in a scratch database of its own (migrated from db/) on the server named by $PGTRADE_DATABASE_URL or
`pgtrade db url` (a superuser URL), and drops it at the end. Prints its figures (and --json writes them).

    python bench/load_bench.py [--bars 200000] [--repeat 3] [--json out.json]

Each round makes three loads of N 1-minute bars (one symbol, US session minutes, ~2 years each), each over a time
range of its own (so no load re-materializes another's rollup buckets), and times each beside a raw COPY of the
same rows into a bare hypertable with market.bars' columns, primary key and 30-day chunks (no triggers, no
validation), made just before it:
1. `pgtrade load csv FILE --symbol S --interval 1m --json` run as a user runs it (a subprocess, so Python's start
   is in the figure), rollups up to date at the end; raw: the file's bytes by `COPY ... FROM STDIN (FORMAT csv,
   HEADER)` (what psql's \\copy sends);
2. the same kind of load in-process, split into the ingest path (`loaders.csv_loader.load_csv(refresh=False)`)
   and the rollup refresh (`CALL market.refresh_rollups`); raw as in 1;
3. the ingest path over ready-made rows (`pgtrade.ingest.ingest(bars, workers=2)`, what
   `bench/market_bench.py --only-ingest` measures), its time without and with the rollup refresh it ends with
   (forced: these new bars go the direct COPY way); raw: the same bars as Python tuples, binary COPY.
A ratio is the raw COPY's seconds over the pgtrade path's seconds (= rows/s over rows/s), same round.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
from _common import ROOT, machine, scratch_database

import pgtrade.ingest
from loaders.sample import load_sample, register_instrument
from pgtrade.ingest import Bar, ingest

BENCH_DB = "pgtrade_bench_load"
START = datetime(1970, 1, 5, 14, 30, tzinfo=UTC)  # minute bars before the bundled daily history (1999-)
BARE = """CREATE TABLE public.{name} (
            symbol text NOT NULL DEFAULT '{symbol}', interval text NOT NULL DEFAULT '1m', ts timestamptz NOT NULL,
            open numeric NOT NULL, high numeric NOT NULL, low numeric NOT NULL, close numeric NOT NULL,
            volume numeric NOT NULL DEFAULT 0, source text NOT NULL DEFAULT 'raw',
            ingested_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (symbol, interval, ts));
          SELECT create_hypertable('public.{name}', 'ts', chunk_time_interval => interval '30 days')"""


def session_minutes(start: datetime, n: int) -> list[datetime]:
    """n 1-minute stamps over US regular sessions (14:30-21:00 UTC, weekdays) from ``start``: 390 a day."""
    out, day = [], start
    while len(out) < n:
        if day.weekday() < 5:
            out.extend(day + timedelta(minutes=m) for m in range(390))
        day += timedelta(days=1)
    return out[:n]


def make_rows(start: datetime, n: int, seed: int) -> list[tuple[datetime, str, str, str, str, int]]:
    rng = random.Random(seed)
    price, rows = 100.0, []
    for ts in session_minutes(start, n):
        o = price
        c = max(1.0, o * (1 + rng.gauss(0, 0.0008)))
        h = max(o, c) * (1 + abs(rng.gauss(0, 0.0003)))
        low = min(o, c) * (1 - abs(rng.gauss(0, 0.0003)))
        rows.append((ts, f"{o:.4f}", f"{h:.4f}", f"{low:.4f}", f"{c:.4f}", rng.randint(100, 50_000)))
        price = c
    return rows


def write_csv(path: Path, rows) -> None:
    with open(path, "w") as fh:
        fh.write("timestamp,open,high,low,close,volume\n")
        for ts, o, h, low, c, v in rows:
            fh.write(f"{ts:%Y-%m-%dT%H:%M:%SZ},{o},{h},{low},{c},{v}\n")


def bare_table(conn: psycopg.Connection, name: str, symbol: str) -> None:
    for stmt in BARE.format(name=name, symbol=symbol).split(";"):
        conn.execute(stmt)
    conn.execute("CHECKPOINT")


def raw_copy_csv(conn: psycopg.Connection, table: str, path: Path) -> float:
    t0 = time.perf_counter()
    sql = f"COPY public.{table} (ts, open, high, low, close, volume) FROM STDIN (FORMAT csv, HEADER)"
    with conn.transaction(), conn.cursor().copy(sql) as cp, open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            cp.write(chunk)
    took = time.perf_counter() - t0
    conn.execute("CHECKPOINT")
    return took


def figure(n: int, seconds: float, raw: float | None = None) -> dict:
    out = {"seconds": round(seconds, 3), "rows_per_s": round(n / seconds)}
    if raw is not None:
        out["ratio_to_raw_copy"] = round(raw / seconds, 3)
    return out


def one_round(url: str, i: int, n: int, tmp: Path) -> dict:
    from loaders.csv_loader import load_csv

    starts = [START + timedelta(days=365 * 3 * (3 * i + k)) for k in range(3)]
    out: dict = {"round": i, "rows": n, "ranges_start": [s.date().isoformat() for s in starts]}
    with psycopg.connect(url, autocommit=True) as conn:
        for k in range(3):
            register_instrument(conn, symbol=f"LOAD{i}K{k}", name="load benchmark", asset_class="stock")

        # 1. pgtrade load csv, as a user runs it, beside a raw COPY of the same file
        path = tmp / f"cli{i}.csv"
        write_csv(path, make_rows(starts[0], n, seed=i))
        bare_table(conn, f"bare_cli{i}", f"LOAD{i}K0")
        raw = raw_copy_csv(conn, f"bare_cli{i}", path)
        env = dict(os.environ, PGTRADE_DATABASE_URL=url)
        cmd = [sys.executable, "-m", "pgtrade.cli", "load", "csv", str(path), "--symbol", f"LOAD{i}K0"]
        t0 = time.perf_counter()
        res = subprocess.run([*cmd, "--interval", "1m", "--json"], env=env, capture_output=True, text=True, cwd=ROOT)
        whole = time.perf_counter() - t0
        if res.returncode:
            raise SystemExit(f"pgtrade load csv failed: {res.stdout}{res.stderr}")
        total = json.loads(res.stdout)["total"]
        assert total == {"inserted": n, "updated": 0, "unchanged": 0, "rejected": 0}, total
        out["raw_copy_csv_1"] = figure(n, raw)
        out["pgtrade_load_csv"] = figure(n, whole, raw)
        conn.execute("CHECKPOINT")

        # 2. the same kind of load in-process: the ingest path, then the rollup refresh
        path = tmp / f"inproc{i}.csv"
        write_csv(path, make_rows(starts[1], n, seed=100 + i))
        bare_table(conn, f"bare_inproc{i}", f"LOAD{i}K1")
        raw = raw_copy_csv(conn, f"bare_inproc{i}", path)
    with psycopg.connect(url) as conn:
        t0 = time.perf_counter()
        rep = load_csv(conn, path, symbol=f"LOAD{i}K1", interval="1m", source="bench:csv", refresh=False)
        t_ingest = time.perf_counter() - t0
        assert rep.total.inserted == n, rep.total
        conn.autocommit = True
        t0 = time.perf_counter()
        conn.execute("CALL market.refresh_rollups(%s, %s)", rep.minute_span)
        t_refresh = time.perf_counter() - t0
        five = conn.execute("SELECT count(*) FROM market.bars_5m WHERE symbol = %s", (f"LOAD{i}K1",)).fetchone()[0]
        conn.execute("CHECKPOINT")
    out["raw_copy_csv_2"] = figure(n, raw)
    out["csv_ingest_path"] = figure(n, t_ingest, raw)
    out["refresh_rollups"] = {"seconds": round(t_refresh, 3), "rows_5m": five}
    out["csv_ingest_plus_refresh"] = figure(n, t_ingest + t_refresh, raw)

    # 3. the ingest path over ready-made rows, beside a binary COPY of the same rows
    bars = [
        Bar(f"LOAD{i}K2", "1m", ts, Decimal(o), Decimal(h), Decimal(lo), Decimal(c), v)
        for ts, o, h, lo, c, v in make_rows(starts[2], n, seed=200 + i)
    ]
    with psycopg.connect(url, autocommit=True) as conn:
        bare_table(conn, f"bare_rows{i}", f"LOAD{i}K2")
        t0 = time.perf_counter()
        sql = f"COPY public.bare_rows{i} (ts, open, high, low, close, volume) FROM STDIN (FORMAT BINARY)"
        with conn.transaction(), conn.cursor().copy(sql) as cp:
            cp.set_types(["timestamptz", "numeric", "numeric", "numeric", "numeric", "numeric"])
            for b in bars:
                cp.write_row((b.ts, b.open, b.high, b.low, b.close, b.volume))
        raw = time.perf_counter() - t0
        conn.execute("CHECKPOINT")
    spent: list[float] = []

    def timed_refresh(*args, **kwargs):
        t = time.perf_counter()
        try:
            return refresh(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - t)

    refresh, pgtrade.ingest.refresh_rollups = pgtrade.ingest.refresh_rollups, timed_refresh
    try:
        with psycopg.connect(url) as conn:
            t0 = time.perf_counter()
            rep = ingest(conn, bars, source="bench:rows", workers=2)
            t_rows = time.perf_counter() - t0
            assert rep.total.inserted == n, rep.total
            assert rep.needs_forced_refresh  # the bars went the direct way
            five = conn.execute("SELECT count(*) FROM market.bars_5m WHERE symbol = %s", (f"LOAD{i}K2",)).fetchone()[0]
    finally:
        pgtrade.ingest.refresh_rollups = refresh
    out["raw_copy_rows"] = figure(n, raw)
    out["ingest_path_rows"] = figure(n, t_rows - sum(spent), raw)
    out["ingest_path_rows_refresh"] = {"seconds": round(sum(spent), 3), "rows_5m": five}
    out["ingest_path_rows_plus_refresh"] = figure(n, t_rows, raw)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bars", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--db", default=BENCH_DB, help="name of the scratch database")
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = ap.parse_args()

    results: dict = {"machine": machine(), "rounds": []}
    with tempfile.TemporaryDirectory() as tmp, scratch_database(args.db, keep=args.keep) as url:
        with psycopg.connect(url) as conn:
            load_sample(conn, symbols=["SPX"])  # 20 years of daily bars in the same hypertable, as in real use
        for i in range(args.repeat):
            r = one_round(url, i, args.bars, Path(tmp))
            results["rounds"].append(r)
            print(json.dumps(r), file=sys.stderr)
    keys = (
        "pgtrade_load_csv",
        "csv_ingest_path",
        "csv_ingest_plus_refresh",
        "ingest_path_rows",
        "ingest_path_rows_plus_refresh",
    )
    results["median_ratio_to_raw_copy"] = {
        k: statistics.median(r[k]["ratio_to_raw_copy"] for r in results["rounds"]) for k in keys
    }
    results["loadavg_at_end"] = os.getloadavg()
    print(json.dumps(results, indent=2, default=str))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
