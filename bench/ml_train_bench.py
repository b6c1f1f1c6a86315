"""Training and export time per model kind, inside the database (ml.train: PL/Python in a backend) and in a client
(the same ml code), and what training costs a backend in memory and CPU.

Usage: python bench/ml_train_bench.py [--runs 3] [--json out.json]
Works in a scratch database (pgtrade_bench_ml) on the server of ``pgtrade db url`` / $PGTRADE_DATABASE_URL, with the
bundled sample loaded. Windows: SPX daily 1999-2018 (about 5,000 bars) alone, and pooled with IXIC and GOOG. Each
server run is in a fresh connection (a new backend): the first ml.train of a backend also imports scikit-learn,
skl2onnx and the ml package; a second run in the same backend shows the warm cost.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import psycopg
from _common import machine, scratch_database

SERIES = {"SPX": ["SPX"], "SPX+IXIC+GOOG": ["SPX", "IXIC", "GOOG"]}
KINDS = ["logreg", "gbm", "rf", "isolation_forest"]


def rss_kb(pid: int) -> int:
    """Resident memory of a backend (this machine's /proc; the bench runs beside the server)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def server_run(url: str, kind: str, symbols: list[str]) -> dict:
    with psycopg.connect(url, autocommit=True) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        rss0 = rss_kb(pid)
        out = {}
        for label in ("cold", "warm"):
            t0 = time.perf_counter()
            res = conn.execute(
                "SELECT decision, metrics FROM ml.train(%s, %s, %s, '1d')",
                (f"bench-{kind.replace('_', '-')}", kind, symbols),
            ).fetchone()
            wall = time.perf_counter() - t0
            assert res[0] != "failed", res
            m = res[1]
            out[label] = {
                "wall_s": wall,
                "fit_s": m["fit_seconds"],
                "export_s": m["export_seconds"],
                "cpu_s": m["cpu_seconds"],
                "n_train": m["n_train"],
                "onnx_bytes": m["onnx_bytes"],
                "rss_kb": rss_kb(pid),
                "maxrss_kb": m["maxrss_kb_after"],
            }
        out["rss_before_kb"] = rss0
        return out


def client_run(url: str, kind: str, symbols: list[str]) -> dict:
    from ml import data, train

    with psycopg.connect(url) as conn:
        n = conn.execute("SELECT cardinality(ml.feature_names())").fetchone()[0]
        sql = data.TRAINING_SQL
        for i in range(4, 0, -1):
            sql = sql.replace(f"${i}", "%s")
        ds = data.from_rows(conn.execute(sql, (symbols, "1d", "-infinity", "infinity")).fetchall(), n)
    t0 = time.perf_counter()
    est, res = train.fit_evaluate(kind, ds, {})
    fit = time.perf_counter() - t0
    _, _, _, export_s = train.export(est, kind, n)
    return {"fit_evaluate_s": fit, "export_s": export_s}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results = {"machine": machine(), "runs": args.runs, "rows": []}
    with scratch_database("pgtrade_bench_ml") as url:
        from loaders.sample import load_sample

        with psycopg.connect(url) as conn:
            load_sample(conn, symbols=["SPX", "IXIC", "GOOG"])
            conn.commit()
        print(f"{'series':<14} {'kind':<17} {'rows':>6} {'cold wall':>9} {'warm fit':>8} {'warm exp':>8} "
              f"{'client fit':>10} {'client exp':>10} {'RSS before':>10} {'RSS after':>9} {'onnx KB':>7}")  # fmt: skip
        for series, symbols in SERIES.items():
            for kind in KINDS:
                srv = [server_run(url, kind, symbols) for _ in range(args.runs)]
                cli = [client_run(url, kind, symbols) for _ in range(args.runs)]

                def med(xs):
                    return statistics.median(xs)

                row = {
                    "series": series,
                    "kind": kind,
                    "n_train": srv[0]["warm"]["n_train"],
                    "server_cold_wall_s": med([r["cold"]["wall_s"] for r in srv]),
                    "server_warm_wall_s": med([r["warm"]["wall_s"] for r in srv]),
                    "server_warm_fit_s": med([r["warm"]["fit_s"] for r in srv]),
                    "server_warm_export_s": med([r["warm"]["export_s"] for r in srv]),
                    "server_warm_cpu_s": med([r["warm"]["cpu_s"] for r in srv]),
                    "client_fit_evaluate_s": med([r["fit_evaluate_s"] for r in cli]),
                    "client_export_s": med([r["export_s"] for r in cli]),
                    "backend_rss_before_kb": med([r["rss_before_kb"] for r in srv]),
                    "backend_rss_after_kb": med([r["warm"]["rss_kb"] for r in srv]),
                    "backend_maxrss_kb": max(r["warm"]["maxrss_kb"] for r in srv),
                    "onnx_bytes": srv[0]["warm"]["onnx_bytes"],
                }
                results["rows"].append(row)
                print(f"{series:<14} {kind:<17} {row['n_train']:>6} {row['server_cold_wall_s']:>8.2f}s "
                      f"{row['server_warm_fit_s']:>7.2f}s {row['server_warm_export_s']:>7.2f}s "
                      f"{row['client_fit_evaluate_s']:>9.2f}s {row['client_export_s']:>9.2f}s "
                      f"{row['backend_rss_before_kb'] / 1024:>8.0f}MB {row['backend_rss_after_kb'] / 1024:>7.0f}MB "
                      f"{row['onnx_bytes'] / 1024:>7.0f}", flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
