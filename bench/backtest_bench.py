"""Backtest benchmark: pgtrade's engine (backtest.run, fast path) against backtesting.py on the same data.

Runs in a scratch database of its own (pgtrade_backtest_bench) on the server named by $PGTRADE_DATABASE_URL or
`pgtrade db url` (a superuser URL), migrated from db/, dropped at the end (--keep keeps it; --reuse runs again in a
kept one: the procedures are re-applied, the data is kept). Prints its figures.

    python bench/backtest_bench.py [--parts abc] [--repeat 3] [--fast 10 --slow 20]
                                   [--json out.json] [--keep] [--reuse]

What it measures (issue 13 §10), each workload with the same SMA crossover in both engines (long-only, all-in
whole shares, orders at the next bar's open, no slippage; SMA(--fast, --slow), default 10/20 for every workload
(~2,700 round trips a year on the 1-minute walk); daily: 10,000 cash and 0.2 % commission per side as in the
reference test; 1-minute: 100,000 cash per symbol and no commission (pgtrade rounds each commission to cents,
backtesting.py does not: over thousands of all-in round trips the cash drifts apart by cents until a share count
differs by one at a boundary, and from there the two runs diverge; see docs/benchmarks.md):
(a) one symbol, 10+ years of daily bars: the bundled SPX series, 1999-2018;
(b) one symbol, one year of 1-minute bars: a seeded random walk of 252 sessions x 390 minutes (98,280 bars),
    ingested through pgtrade.ingest (binary COPY; not part of any figure);
(c) ten symbols, one year of 1-minute bars each (ten such walks): ONE pgtrade run over the ten symbols, each with
    a target of 1/10 of the equity (sizing fraction 0.1, 1,000,000 cash), against ten separate backtesting.py runs
    with 100,000 cash each, their times summed.
pgtrade's figure is the client-side wall time of `SELECT backtest.run(...)` (the strategy, the engine, the
snapshots, the trades and metrics, the fingerprint: everything the run does, committed); backtesting.py's is the time of
Backtest.run() on a pandas frame already in memory (read back from the database beforehand, not timed). Both the
median of --repeat runs. bars/s = bars of the run / that time. The ratio is pgtrade's time / backtesting.py's.
Agreement: the trades (entry and exit time, price and size; in (c) time and price only, as one account holding ten
symbols sizes each by a tenth of its whole equity) of each symbol compared one by one. Beside the wall
times, CPU seconds: the server backend's (from /proc, when the server runs on this machine) and backtesting.py's
process time: on a shared machine they show what each engine used when other work took the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
from _common import machine, scratch_database, with_db

from loaders.sample import load_sample
from pgtrade.db import database_url
from pgtrade.ingest import Bar, ingest
from pgtrade.migrate import migrate

BENCH_DB = "pgtrade_backtest_bench"
COST = {"1d": (10_000, 0.002), "1m": (100_000, 0.0)}  # cash per symbol, commission per side
SESSIONS = 252
MINUTES = 390
FIRST_SESSION = datetime(2025, 1, 2, 14, 30, tzinfo=UTC)


@contextmanager
def bench_database(keep: bool, reuse: bool) -> Iterator[str]:
    """The scratch database: a fresh one (_common.scratch_database), or with --reuse a kept one, migrated again."""
    if not reuse:
        with scratch_database(BENCH_DB, keep=keep) as url:
            yield url
        return
    url = with_db(database_url(), BENCH_DB)
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
    yield url


def sessions(n: int) -> list[datetime]:
    """n weekday session opens (14:30 UTC) from FIRST_SESSION on."""
    out, d = [], FIRST_SESSION
    while len(out) < n:
        if d.weekday() < 5:
            out.append(d)
        d += timedelta(days=1)
    return out


def walk_bars(symbol: str, seed: int) -> list[Bar]:
    """A seeded random walk of 1-minute bars, 252 sessions x 390 minutes, each bar opening at the previous close,
    high/low around open and close. Prices with 8 decimals: with 4 (or cents) the two averages are sometimes
    exactly equal at a crossing, which pgtrade's exact arithmetic calls no cross and backtesting.py's float rolling
    mean breaks either way (docs/benchmarks.md, "Backtesting")."""
    rng = np.random.default_rng(seed)
    n = SESSIONS * MINUTES
    start = 50 + 100 * rng.random()
    closes = np.round(start * np.exp(np.cumsum(rng.normal(0, 0.0008, n))), 8)
    opens = np.concatenate(([round(start, 8)], closes[:-1]))
    wiggle = np.round(np.abs(rng.normal(0, 0.0004, (2, n))) * closes, 8)
    highs = np.maximum(opens, closes) + wiggle[0]
    lows = np.maximum(np.minimum(opens, closes) - wiggle[1], 0.00000001)
    vols = rng.integers(100, 10_000, n)
    times = [s + timedelta(minutes=m) for s in sessions(SESSIONS) for m in range(MINUTES)]
    return [
        Bar(
            symbol=symbol,
            interval="1m",
            ts=t,
            open=Decimal(f"{o:.8f}"),
            high=Decimal(f"{h:.8f}"),
            low=Decimal(f"{lo:.8f}"),
            close=Decimal(f"{c:.8f}"),
            volume=int(v),
        )
        for t, o, h, lo, c, v in zip(times, opens, highs, lows, closes, vols, strict=True)
    ]


def load_data(conn: psycopg.Connection, symbols_1m: list[str]) -> dict:
    """SPX daily from the bundled sample, and the 1-minute walks; only what is missing. Returns ingest seconds."""
    took = {}
    if conn.execute("SELECT count(*) FROM market.bars WHERE symbol = 'SPX'").fetchone()[0] == 0:
        t = time.perf_counter()
        load_sample(conn, symbols=["SPX"])
        conn.commit()
        took["SPX"] = round(time.perf_counter() - t, 2)
    for i, sym in enumerate(symbols_1m):
        if conn.execute("SELECT count(*) FROM market.bars WHERE symbol = %s", (sym,)).fetchone()[0] > 0:
            continue
        conn.execute(
            "SELECT market.upsert_instrument(%s::text, 'bench random walk'::text, 'stock', 'USD', NULL, 1, 'UTC',"
            " NULL, NULL, true)",
            (sym,),
        )
        conn.commit()
        bars = walk_bars(sym, seed=1000 + i)
        t = time.perf_counter()
        ingest(conn, bars, source="bench", refresh=False)
        took[sym] = round(time.perf_counter() - t, 2)
    conn.execute("ANALYZE market.bars")
    conn.commit()
    return took


def frame(conn: psycopg.Connection, symbol: str, interval: str, start: datetime, end: datetime) -> pd.DataFrame:
    rows = conn.execute(
        "SELECT ts, open::float8, high::float8, low::float8, close::float8, volume::float8 FROM market.bars"
        " WHERE symbol = %s AND interval = %s AND ts >= %s AND ts < %s ORDER BY ts",
        (symbol, interval, start, end),
    ).fetchall()
    df = pd.DataFrame(rows, columns=["ts", "Open", "High", "Low", "Close", "Volume"]).set_index("ts")
    df.index = pd.DatetimeIndex(df.index).tz_convert("UTC")
    return df


def reference_run(
    df: pd.DataFrame, fast: int, slow: int, cash: float, commission: float
) -> tuple[float, float, list[tuple], float]:
    """backtesting.py: the SMA crossover of its documentation (buy() with the default size on the cross up,
    position.close() on the cross down). Returns (wall and CPU seconds of Backtest.run(), trades, final equity)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from backtest_support import backtesting_py_sma  # tests/: the tests' reference run, the same code

    st, dt, cpu = backtesting_py_sma(df, fast, slow, cash=cash, commission=commission)
    tr = st["_trades"]
    trades = [
        (r.EntryTime, round(float(r.EntryPrice), 8), int(r.Size), r.ExitTime, round(float(r.ExitPrice), 8))
        for r in tr.itertuples()
    ]
    # an open trade (finalize_trades=False) is not in _trades: add its entry
    eq = st["_equity_curve"]
    return dt, cpu, trades, float(eq["Equity"].iloc[-1])


def backend_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) of a server backend, when the server runs on this machine (/proc)."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def pgtrade_run(url: str, symbols: list[str], interval: str, start, end, params: dict):
    """(wall seconds, backend CPU seconds or None, run id) of one backtest.run, autocommit."""
    with psycopg.connect(url, autocommit=True) as conn:
        pid = conn.info.backend_pid
        c0 = backend_cpu(pid)
        t = time.perf_counter()
        r = conn.execute(
            "SELECT id, status, error FROM backtest.run('sma_crossover', %s, %s, %s, %s, %s::jsonb, 'fast')",
            (symbols, interval, start, end, json.dumps(params)),
        ).fetchone()
        dt = time.perf_counter() - t
        c1 = backend_cpu(pid)
    if r[1] != "done":
        raise SystemExit(f"run {r[0]} failed: {r[2]}")
    return dt, (c1 - c0 if c0 is not None and c1 is not None else None), r[0]


def pgtrade_trades(conn: psycopg.Connection, run_id: int, symbol: str) -> tuple[list[tuple], dict]:
    """The run's round trips of `symbol` in backtesting.py's shape (entry and exit fills paired in order); the open
    position's entry last with no exit."""
    fills = conn.execute(
        "SELECT f.side, f.qty, f.price, f.ts FROM trading.fills f JOIN backtest.runs r ON r.account_id = f.account_id"
        " WHERE r.id = %s AND f.symbol = %s ORDER BY f.id",
        (run_id, symbol),
    ).fetchall()
    trades, open_ = [], None
    for side, qty, price, ts in fills:
        if side == "buy":
            open_ = (pd.Timestamp(ts).tz_convert("UTC"), round(float(price), 8), int(qty))
        else:
            trades.append((*open_, pd.Timestamp(ts).tz_convert("UTC"), round(float(price), 8)))
            open_ = None
    info = conn.execute(
        "SELECT r.bars, r.fills, s.total_value FROM backtest.runs r"
        " JOIN trading.portfolio_snapshots s ON s.account_id = r.account_id"
        " WHERE r.id = %s ORDER BY s.ts DESC LIMIT 1",
        (run_id,),
    ).fetchone()
    return trades, {"bars": info[0], "fills": info[1], "final_equity": float(info[2]), "open": open_}


def workload(url: str, name: str, symbols: list[str], interval: str, start, end, fast: int, slow: int, repeat: int):
    n = len(symbols)
    cash, commission = COST[interval]
    params = {"cash": cash * n, "commission": commission, "fast": fast, "slow": slow}
    if n > 1:
        params |= {"sizing": "fraction", "fraction": 1 / n}
    with psycopg.connect(url) as conn:
        frames = {s: frame(conn, s, interval, start, end) for s in symbols}
    bars = sum(len(f) for f in frames.values())
    pg_times, pg_cpu, ref_times, ref_cpu, run_id = [], [], [], [], None
    for _ in range(repeat):
        dt, cpu, run_id = pgtrade_run(url, symbols, interval, start, end, params)
        pg_times.append(dt)
        pg_cpu.append(cpu)
        tot, tot_cpu, ref = 0.0, 0.0, {}
        for s in symbols:
            dt, cpu, trades, final = reference_run(frames[s], fast, slow, cash, commission)
            tot += dt
            tot_cpu += cpu
            ref[s] = (trades, final)
        ref_times.append(tot)
        ref_cpu.append(tot_cpu)
    agree, mismatch, ours_n, ref_n = True, None, 0, 0
    with psycopg.connect(url) as conn:
        for s in symbols:
            ours, info = pgtrade_trades(conn, run_id, s)
            ours_n += len(ours)
            ref_n += len(ref[s][0])
            if n > 1:  # one account (a tenth of its equity per symbol) against ten accounts: sizes differ by design
                ours = [(a, b, d, e) for a, b, _, d, e in ours]
                ref[s] = ([(a, b, d, e) for a, b, _, d, e in ref[s][0]], ref[s][1])
            if ours != ref[s][0]:
                agree = False
                diff = next(
                    (i for i, (a, b) in enumerate(zip(ours, ref[s][0], strict=False)) if a != b),
                    min(len(ours), len(ref[s][0])),
                )
                mismatch = mismatch or {
                    "symbol": s,
                    "index": diff,
                    "pgtrade": [str(x) for x in ours[diff : diff + 1]],
                    "backtesting.py": [str(x) for x in ref[s][0][diff : diff + 1]],
                }
        if n == 1:
            final_ours, final_ref = info["final_equity"], ref[symbols[0]][1]
        else:
            final_ours = conn.execute(
                "SELECT s.total_value::float8 FROM backtest.runs r JOIN trading.portfolio_snapshots s"
                " ON s.account_id = r.account_id WHERE r.id = %s ORDER BY s.ts DESC LIMIT 1",
                (run_id,),
            ).fetchone()[0]
            final_ref = sum(v[1] for v in ref.values())
    pg, rf = statistics.median(pg_times), statistics.median(ref_times)
    pgc = statistics.median(pg_cpu) if None not in pg_cpu else None
    rfc = statistics.median(ref_cpu)
    return {
        "workload": name,
        "symbols": n,
        "bars": bars,
        "params": params,
        "pgtrade_s": round(pg, 3),
        "pgtrade_bars_per_s": round(bars / pg),
        "pgtrade_runs_s": [round(x, 3) for x in pg_times],
        "backtesting_py_s": round(rf, 3),
        "backtesting_py_bars_per_s": round(bars / rf),
        "backtesting_py_runs_s": [round(x, 3) for x in ref_times],
        "ratio": round(pg / rf, 3),
        "pgtrade_backend_cpu_s": pgc and round(pgc, 2),
        "backtesting_py_cpu_s": round(rfc, 2),
        "cpu_ratio": pgc and round(pgc / rfc, 3),
        "load_after": os.getloadavg(),
        "trades_pgtrade": ours_n,
        "trades_backtesting_py": ref_n,
        "trades_agree": agree,
        "first_mismatch": mismatch,
        "final_equity_pgtrade": round(final_ours, 2),
        "final_equity_backtesting_py": round(final_ref, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="abc")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--fast", type=int, default=10)
    ap.add_argument("--slow", type=int, default=20)
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--keep", action="store_true", help="keep the scratch database")
    ap.add_argument("--reuse", action="store_true", help="use a kept scratch database (procedures re-applied)")
    args = ap.parse_args()

    import backtesting

    res: dict = {"machine": machine(), "backtesting_py": backtesting.__version__, "results": []}
    syms = [f"BW{i:02d}" for i in range(10 if "c" in args.parts else 1)]
    day0, day_end = sessions(1)[0], sessions(SESSIONS)[-1] + timedelta(days=1)
    with bench_database(args.keep, args.reuse) as url:
        with psycopg.connect(url) as conn:
            res["ingest_s"] = load_data(conn, syms if "b" in args.parts or "c" in args.parts else [])
        if "a" in args.parts:
            a = workload(
                url, "a: SPX 1d 1999-2018", ["SPX"], "1d", datetime(1999, 1, 1, tzinfo=UTC),
                datetime(2019, 1, 1, tzinfo=UTC), args.fast, args.slow, args.repeat,
            )  # fmt: skip
            res["results"].append(a)
            print(json.dumps(a, default=str), flush=True)
        if "b" in args.parts:
            b = workload(url, "b: 1 symbol 1m, 1 year", syms[:1], "1m", day0, day_end, args.fast, args.slow,
                         args.repeat)  # fmt: skip
            res["results"].append(b)
            print(json.dumps(b, default=str), flush=True)
        if "c" in args.parts:
            c = workload(url, "c: 10 symbols 1m, 1 year", syms, "1m", day0, day_end, args.fast, args.slow,
                         args.repeat)  # fmt: skip
            res["results"].append(c)
            print(json.dumps(c, default=str), flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(res, indent=2, default=str))
    print(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
