"""Backtest grid benchmark: runs per second of a 100-run parameter grid against the number of connections.

Runs in a scratch database of its own (pgtrade_backtest_grid_bench) on the server named by $PGTRADE_DATABASE_URL or
`pgtrade db url` (a superuser URL), migrated from db/, with the bundled sample series loaded; dropped at the end
(--keep keeps it). Prints its figures.

    python bench/backtest_grid_bench.py [--symbol SPX] [--jobs 1,2,4,8] [--repeat 1] [--json out.json]

What it measures (issue 13 §6): one grid of sma_crossover over the whole daily series of --symbol, fast in
5, 10, ..., 50 and slow in 60, 80, ..., 240 (10 x 10 = 100 points, each a full backtest.run on its own account),
run by pgtrade/backtest_parallel.py (the code `pgtrade backtest grid --jobs N` runs) with N connections for each N of
--jobs: wall time from grid_begin to grid_finish, runs per second, and the speed-up over one connection. The same
grid through backtest.grid in one SQL call (one connection, one transaction) is the sequential reference. Every
configuration must give the same metrics per point (checked).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, scratch_database  # noqa: E402

from loaders.sample import load_sample  # noqa: E402
from pgtrade import backtest_parallel  # noqa: E402

GRID = {"fast": list(range(5, 55, 5)), "slow": list(range(60, 260, 20))}
PARAMS = {"cash": 100000, "commission": 0.001}


def _run_ms(url: str, parent: int) -> float:
    """Mean server time of one run of the grid (backtest.runs.elapsed_ms): how much each run slowed under sharing."""
    with psycopg.connect(url) as conn:
        return float(
            conn.execute("SELECT avg(elapsed_ms) FROM backtest.runs WHERE parent_id = %s", (parent,)).fetchone()[0]
        )


def _metrics(conn, parent: int) -> dict:
    rows = conn.execute(
        "SELECT params->>'fast', params->>'slow', metrics FROM backtest.runs WHERE parent_id = %s", (parent,)
    ).fetchall()
    return {(f, s): m for f, s, m in rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbol", default="SPX")
    ap.add_argument("--jobs", default="1,2,4,8", help="Connection counts to measure, comma-separated.")
    ap.add_argument("--repeat", type=int, default=1, help="Runs of each configuration (the best is reported).")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    jobs_list = [int(j) for j in args.jobs.split(",")]
    out: dict = {"machine": machine(), "symbol": args.symbol, "grid": GRID, "params": PARAMS, "results": []}
    with scratch_database("pgtrade_backtest_grid_bench", keep=args.keep) as url:
        with psycopg.connect(url) as conn:
            load_sample(conn, symbols=[args.symbol])
            conn.commit()
            start, end, bars = conn.execute(
                "SELECT min(ts), max(ts) + interval '1 day', count(*) FROM market.bars"
                " WHERE symbol = %s AND interval = '1d'",
                (args.symbol,),
            ).fetchone()
        out |= {"start": str(start), "end": str(end), "bars": bars}
        print(f"{args.symbol} 1d: {bars} bars {start:%Y-%m-%d}..{end:%Y-%m-%d}; grid of {10 * 10} runs", flush=True)
        reference = None
        # warm-up: one small grid so the first measured configuration does not pay for cold caches
        backtest_parallel.grid(
            url,
            strategy="sma_crossover",
            symbols=[args.symbol],
            interval="1d",
            start=str(start),
            end=str(end),
            params=PARAMS,
            grid={"fast": [5, 10], "slow": [60]},
            objective="total_return",
            jobs=2,
        )
        with psycopg.connect(url) as conn:
            best = None
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                parent = conn.execute(
                    "SELECT (backtest.grid('sma_crossover', %s, '1d', %s, %s, %s::jsonb, %s::jsonb,"
                    " 'total_return')).id",
                    ([args.symbol], start, end, json.dumps(PARAMS), json.dumps(GRID)),
                ).fetchone()[0]
                conn.commit()
                seconds = time.perf_counter() - t0
                if best is None or seconds < best:
                    best, best_parent = seconds, parent
            reference = _metrics(conn, parent)
            assert len(reference) == 100
        row = {
            "mode": "backtest.grid (SQL, sequential)",
            "jobs": 1,
            "seconds": round(best, 3),
            "runs_per_second": round(100 / best, 2),
            "mean_run_ms": round(_run_ms(url, best_parent), 1),
            "loadavg_after": os.getloadavg(),
        }
        out["results"].append(row)
        print(
            f"{row['mode']:<34} jobs {row['jobs']}: {row['seconds']:7.2f} s  {row['runs_per_second']:6.2f} runs/s",
            flush=True,
        )
        base = None
        for jobs in jobs_list:
            best = None
            for _ in range(args.repeat):
                batch = backtest_parallel.grid(
                    url,
                    strategy="sma_crossover",
                    symbols=[args.symbol],
                    interval="1d",
                    start=str(start),
                    end=str(end),
                    params=PARAMS,
                    grid=GRID,
                    objective="total_return",
                    jobs=jobs,
                )
                if best is None or batch.seconds < best:
                    best, best_parent = batch.seconds, batch.run_id
                with psycopg.connect(url) as conn:
                    assert _metrics(conn, batch.run_id) == reference, "a parallel grid gave other results"
            base = base or best
            row = {
                "mode": "backtest_parallel (pgtrade backtest grid)",
                "jobs": jobs,
                "seconds": round(best, 3),
                "runs_per_second": round(100 / best, 2),
                "speedup_vs_1": round(base / best, 2),
                "mean_run_ms": round(_run_ms(url, best_parent), 1),
                "loadavg_after": os.getloadavg(),
            }
            out["results"].append(row)
            print(
                f"{'pgtrade backtest grid':<34} jobs {jobs}: {row['seconds']:7.2f} s  {row['runs_per_second']:6.2f}"
                f" runs/s  x{row['speedup_vs_1']:.2f}  mean run {row['mean_run_ms']:.0f} ms",
                flush=True,
            )
    print(json.dumps(out["machine"]))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
