"""Benchmark: what recording bar revisions (db/triggers/market_bar_revisions.sql) costs the live ingest path.

In a scratch database of its own (pgtrade_revisions_bench, migrated from db/, dropped at the end), on the server
of $PGTRADE_DATABASE_URL or `pgtrade db url`: ten symbols with a session of closed 1-minute bars, then through the
one ingest path (pgtrade.ingest.ingest_batch, the staging path the live feed takes; one transaction per batch of
ten bars, one per symbol, with a simulated feed clock, pgtrade.feed_now, 30 s into the newest minute):
  forming:  --n batches updating each symbol's still-forming newest bar (the live feed's common case: no revision);
  closed:   --n batches correcting one closed bar of each symbol (ten revisions per batch);
  append:   one batch of --bulk new closed bars appended above ten series of their own (a load of newer history:
            no revision, but the insert trigger looks at every row); each round and phase appends to other series.
Each workload runs without the revision triggers (dropped: "before") and with them (re-created from the file:
"after"), alternating --rounds times; the figure is the median time per batch (per load for append) over the
rounds' batches, client-side wall time including the commit. Beside it, the time spent inside the revision
trigger functions themselves (pg_stat_user_functions with track_functions = pl: total_time over calls), which
the noise of the rest of the ingest transaction (the ML and trading steps on the same bars) does not blur.

    python bench/bar_revisions_bench.py [--n 200] [--rounds 3] [--bulk 10000] [--json out.json] [--keep]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
from _common import ROOT, machine, pct, scratch_database

from pgtrade.ingest import Bar, ingest, ingest_batch

BENCH_DB = "pgtrade_revisions_bench"
SYMBOLS = [f"REV{i:02d}" for i in range(10)]
T0 = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)  # the newest (forming) minute
FEED_NOW = T0 + timedelta(seconds=30)
HISTORY = 390
TRIGGERS = ["_050_revisions_on_update", "_050_revisions_on_insert", "_050_revisions_on_delete"]


def bar(symbol: str, ts: datetime, px: Decimal) -> Bar:
    return Bar(symbol, "1m", ts, px, px + Decimal("0.05"), px - Decimal("0.05"), px, 100)


def set_triggers(conn: psycopg.Connection, on: bool) -> None:
    """Drop the revision triggers, or create them again from their file."""
    if on:
        conn.execute((ROOT / "db/triggers/market_bar_revisions.sql").read_text())
    else:
        for t in TRIGGERS:
            conn.execute(f"DROP TRIGGER IF EXISTS {t} ON market.bars")
    conn.commit()


def trigger_ms(conn: psycopg.Connection) -> dict[str, tuple[int, float]]:
    """Calls and total milliseconds so far of each revision trigger function (this database)."""
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.commit()
    return {
        r[0]: (r[1], r[2])
        for r in conn.execute(
            "SELECT funcname, calls, total_time FROM pg_stat_user_functions"
            " WHERE schemaname = 'market' AND funcname LIKE 'tg_bars__record_revisions%'"
        ).fetchall()
    }


def spent(a: dict, b: dict) -> float:
    return sum(b[k][1] - a.get(k, (0, 0.0))[1] for k in b)


def timed_batches(conn: psycopg.Connection, batches: list[list[Bar]]) -> list[float]:
    out = []
    for b in batches:
        t = time.perf_counter()
        ingest_batch(conn, b, source="bench:revisions", feed_now=FEED_NOW)
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="batches per workload and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bulk", type=int, default=10_000, help="bars per symbol of the append load")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    times: dict[str, dict[str, list[float]]] = {w: {"before": [], "after": []} for w in ("forming", "closed", "append")}
    revisions: dict[str, int] = {}
    inside: dict[str, list[float]] = {"forming": [], "closed": [], "append": []}
    with scratch_database(BENCH_DB, keep=args.keep) as url, psycopg.connect(url) as conn:
        conn.execute("SET track_functions = 'pl'")
        conn.commit()
        history = [
            bar(s, T0 - timedelta(minutes=HISTORY - i), Decimal(100) + Decimal(i) / 100)
            for s in SYMBOLS
            for i in range(HISTORY)
        ]
        appended = {(r, p): [f"APP{r}{p}{i}" for i in range(len(SYMBOLS))] for r in range(args.rounds) for p in (0, 1)}
        history += [
            bar(s, T0 - timedelta(minutes=10 - i), Decimal(50))
            for ss in appended.values()
            for s in ss
            for i in range(10)
        ]
        ingest(conn, history, source="bench:revisions", auto_register=True, refresh=False)
        conn.commit()
        step = 0
        for rnd in range(args.rounds):
            for phase in ("before", "after"):
                set_triggers(conn, phase == "after")
                n0 = conn.execute("SELECT count(*) FROM market.bar_revisions").fetchone()[0]
                s0 = trigger_ms(conn)
                forming = [
                    [bar(s, T0, Decimal(100) + Decimal(step + k) / 1000) for s in SYMBOLS] for k in range(args.n)
                ]
                times["forming"][phase] += timed_batches(conn, forming)
                n1 = conn.execute("SELECT count(*) FROM market.bar_revisions").fetchone()[0]
                s1 = trigger_ms(conn)
                closed = [
                    [
                        bar(s, T0 - timedelta(minutes=1 + k % (HISTORY - 1)), Decimal(90) + Decimal(step + k) / 1000)
                        for s in SYMBOLS
                    ]
                    for k in range(args.n)
                ]
                times["closed"][phase] += timed_batches(conn, closed)
                n2 = conn.execute("SELECT count(*) FROM market.bar_revisions").fetchone()[0]
                s2 = trigger_ms(conn)
                # newer history appended above series of this round and phase's own
                load = [
                    bar(s, T0 + timedelta(minutes=i), Decimal(100) + Decimal(i % 500) / 100)
                    for s in appended[(rnd, int(phase == "after"))]
                    for i in range(args.bulk // len(SYMBOLS))
                ]
                t = time.perf_counter()
                ingest_batch(conn, load, source="bench:revisions", feed_now=None)
                times["append"][phase].append((time.perf_counter() - t) * 1000)
                n3 = conn.execute("SELECT count(*) FROM market.bar_revisions").fetchone()[0]
                s3 = trigger_ms(conn)
                if phase == "after":
                    inside["forming"].append(spent(s0, s1) / args.n)
                    inside["closed"].append(spent(s1, s2) / args.n)
                    inside["append"].append(spent(s2, s3))
                revisions[f"round {rnd} {phase}"] = {"forming": n1 - n0, "closed": n2 - n1, "append": n3 - n2}
                step += args.n
        set_triggers(conn, True)
    summary = {
        w: {
            p: {"median_ms": round(statistics.median(v), 2), "p90_ms": round(pct(v, 90), 2), "count": len(v)}
            for p, v in d.items()
        }
        for w, d in times.items()
    }
    for w, d in summary.items():
        d["overhead_ms"] = round(d["after"]["median_ms"] - d["before"]["median_ms"], 2)
        d["in_trigger_ms"] = round(statistics.median(inside[w]), 3)
    out = {
        "machine": machine(),
        "config": {"n": args.n, "rounds": args.rounds, "symbols": len(SYMBOLS), "bulk": args.bulk},
        "summary": summary,
        "revisions_written": revisions,
    }
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))
    for w, d in summary.items():
        per = "load" if w == "append" else "batch of 10 bars"
        print(
            f"{w:8s} per {per:17s} before {d['before']['median_ms']:8.2f} ms  after {d['after']['median_ms']:8.2f} ms"
            f"  (p90 {d['before']['p90_ms']:.2f} / {d['after']['p90_ms']:.2f})  overhead {d['overhead_ms']:+.2f} ms"
            f"  inside the trigger functions {d['in_trigger_ms']:.3f} ms"
        )
    print("revisions written:", json.dumps(revisions))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
