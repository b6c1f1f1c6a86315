"""API load: N concurrent clients calling the `api` functions as PostgREST does, with a live feed, straight to the
server and through pgbouncer (transaction pooling); throughput and p50/p99 latency per kind of request, beside a
reference measured in the same run on the same path: a `SELECT 1` request through the same harness (same
transaction, role switch, claims and role settings), so the ratio does not depend on the machine.

Starts a throwaway cluster of its own for each path (pgtrade's settings, max_connections 150; the default 100 is
too few for 100 clients plus the feed and the jobs), migrated from db/, and destroys it at the end. Needs Debian's
pgbouncer (/usr/sbin/pgbouncer) for the pooled path. The harness, the mix and the checks are tests/load_support.py's
(tests/test_load.py runs a shorter version with every check); this prints the figures and the checks' verdicts.

    python bench/api_load_bench.py [--clients 100] [--seconds 60] [--paths direct,pgbouncer] [--pool-size N]
                                   [--reference-seconds 10] [--processes 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import load_support as ls  # noqa: E402


def measure(path: str, args: argparse.Namespace) -> dict:
    cfg = ls.LoadConfig(
        clients=args.clients,
        accounts=args.accounts,
        seconds=args.seconds,
        processes=args.processes,
        reference_seconds=args.reference_seconds,
        prepare_threshold=None if path == "pgbouncer" else 5,
    )
    with ls.own_cluster() as url:
        client_url = ls.authenticator_url(url, ls.set_authenticator_password(url))
        load_before = os.getloadavg()
        t = time.perf_counter()
        if path == "pgbouncer":
            with ls.pgbouncer(url, client_url, pool_size=args.pool_size) as pooled:
                result = ls.run_load(url, pooled, cfg, pooled=True)
        else:
            result = ls.run_load(url, client_url, cfg)
        wall = time.perf_counter() - t
        load_after = os.getloadavg()
        checked = ls.verify(url, result, tolerate=frozenset({"57014"}))
    out = result.summary()
    pool = args.pool_size or ls.pgbouncer_pool_size()
    out["path"] = path if path == "direct" else f"pgbouncer (transaction pooling, {pool} server connections)"
    out["checks"] = checked
    out["loadavg_before"] = [round(x, 2) for x in load_before]
    out["loadavg_after"] = [round(x, 2) for x in load_after]
    out["wall_s"] = round(wall, 1)
    return out


def table(r: dict) -> str:
    lines = [
        f"== {r['path']}: {r['clients']} clients, {r['seconds']} s; load average before {r['loadavg_before']},"
        f" after {r['loadavg_after']}",
        f"{'kind':<12}{'n':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}",
    ]
    rows = [("ALL", r["overall"]), ("reads", r["reads"]), ("writes", r["writes"]), *r["per_kind"].items()]
    if "reference_select1" in r:
        rows.append(("SELECT 1 ref", r["reference_select1"]))
    for name, s in rows:
        lines.append(
            f"{name:<12}{s['n']:>8}{s['rps']:>9.1f}{s['p50_ms'] or 0:>9.1f}{s['p99_ms'] or 0:>9.1f}"
            f"{s.get('max_ms') or 0:>9.1f}"
        )
    if r.get("ratio_to_reference") is not None:
        lines.append(f"throughput / SELECT 1 reference: {r['ratio_to_reference']}")
    lines.append(f"statuses {r['statuses']}; risk rejections {r['reject_codes']}")
    c = r["checks"]
    lines.append(
        f"checks: {len(c['problems'])} problems; errors {c['errors']}; orders acknowledged {c['orders_acknowledged']}"
        f" = stored {c['orders_stored']}; fills {c['fills']} ({c['fills_by_bars']} by bars); cancels"
        f" {c['cancels_acknowledged']}; accounts checked {c['accounts_checked']}"
    )
    lines += [f"  problem: {p}" for p in c["problems"][:10]]
    f = r["feed"]
    lines.append(f"feed: {f['updates']} updates in {f['batches']} commits, latency {f['latency_ms']}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--accounts", type=int, default=40)
    ap.add_argument("--paths", default="direct,pgbouncer")
    ap.add_argument("--pool-size", type=int, help="server connections (default: docker/pgbouncer/pgbouncer.ini's)")
    ap.add_argument("--reference-seconds", type=float, default=10.0)
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "runs": [],
    }
    for path in args.paths.split(","):
        r = measure(path.strip(), args)
        print(table(r), flush=True)
        results["runs"].append(r)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
