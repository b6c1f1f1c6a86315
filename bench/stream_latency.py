"""Benchmark: arrival-to-commit latency of the live feed (synthetic source) through the one ingest path.

Runs ``loaders.stream`` with the synthetic source for N symbols (default 10) at several forming-bar updates per
symbol per simulated minute, accelerated by --speed, against the database named by $PGTRADE_DATABASE_URL or
``pgtrade db url``; prints latency p50/p99/max, the update rate and the counts. Writes only bars of its own
symbols (BENCH00..BENCH09 by default, registered as synthetic instruments).

    /opt/pgtrade/venv/bin/python bench/stream_latency.py --duration 60 --speed 60 --updates-per-minute 6
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loaders.stream import StreamConfig, build  # noqa: E402
from pgtrade.db import database_url, redact  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=10, help="number of synthetic symbols")
    ap.add_argument("--prefix", default="BENCH", help="symbol prefix")
    ap.add_argument("--duration", type=float, default=60.0, help="wall seconds")
    ap.add_argument("--speed", type=float, default=60.0, help="simulated seconds per wall second")
    ap.add_argument("--updates-per-minute", type=int, default=6, help="updates per symbol per simulated minute")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    url = database_url()
    symbols = tuple(f"{args.prefix}{i:02d}" for i in range(args.symbols))
    cfg = StreamConfig(
        source="synthetic",
        symbols=symbols,
        speed=args.speed,
        duration=args.duration,
        seed=args.seed,
        updates_per_minute=args.updates_per_minute,
    )
    stream = build(cfg, url=url)
    stats = stream.run()
    s = stats.summary()
    s["config"] = {
        "database": redact(url),
        "symbols": len(symbols),
        "speed": args.speed,
        "updates_per_minute": args.updates_per_minute,
        "duration_s": args.duration,
        "target_updates_per_s": round(len(symbols) * args.updates_per_minute * args.speed / 60, 1),
        "calibration": stream.calibration.source,
    }
    if args.json:
        print(json.dumps(s, indent=2, default=str))
        return 0
    lat = s["latency_ms"]
    print(f"database        {s['config']['database']}")
    print(
        f"symbols         {len(symbols)} x {args.updates_per_minute} updates/simulated minute, speed {args.speed}x "
        f"(target {s['config']['target_updates_per_s']} updates/s)"
    )
    print(f"calibrated on   {stream.calibration.source}")
    print(
        f"updates         {s['updates']} in {s['elapsed_s']} s = {s['updates_per_s']} updates/s "
        f"({s['distinct_bars']} distinct bars, {s['batches']} commits, {s['coalesced']} coalesced)"
    )
    print(
        f"written         inserted {s['inserted']}, updated {s['updated']}, unchanged {s['unchanged']}, "
        f"rejected {s['rejected']}; reconnects {s['reconnects']}"
    )
    print(
        f"latency (ms)    p50 {lat['p50']}  p99 {lat['p99']}  max {lat['max']}  (arrival -> commit, n={lat['count']})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
