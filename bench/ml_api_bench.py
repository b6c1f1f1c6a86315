"""Reads of the ML api views on large tables, as PostgREST runs them (SET LOCAL ROLE, request.jwt.claims), in a
scratch database (pgtrade_ml_api_bench): --signals signals over 200 series of one registered model and --alerts
alerts (1 in 100 belonging to the trader's account, the rest market-wide), analyzed. Prints p50/p95 client-side
latency of each request. Uses the server of `pgtrade db url` / $PGTRADE_DATABASE_URL.

    python bench/ml_api_bench.py [--signals 1000000] [--alerts 1000000] [--runs 30]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import psycopg
from _common import ROOT, machine, pct, scratch_database

sys.path.insert(0, str(ROOT / "tests"))
from ml_support import register_model  # noqa: E402

BENCH_DB = "pgtrade_ml_api_bench"
T0 = "2024-01-01 00:00:00+00"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--signals", type=int, default=1_000_000)
    ap.add_argument("--alerts", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    print(json.dumps(machine()))
    with scratch_database(BENCH_DB) as url, psycopg.connect(url, autocommit=True) as c:
        from sklearn.linear_model import LogisticRegression

        n = len(c.execute("SELECT ml.feature_names()").fetchone()[0])
        X = np.random.default_rng(1).normal(size=(200, n)).astype(np.float32)
        with c.transaction():
            model = register_model(
                c, LogisticRegression().fit(X, (X[:, 0] > 0).astype(int)), name="bench", symbols=["S0"], interval="1m"
            )
        acct = c.execute("SELECT id FROM trading.create_account('bench_trader', 100000)").fetchone()[0]
        c.execute(
            "INSERT INTO ml.signals (model_id, symbol, interval, ts, probability, confidence, signal, close,"
            " created_at) SELECT %s, 'S' || (g %% 200), '1m', %s::timestamptz + (g / 200) * interval '1 minute',"
            "        0.5, 0, 'HOLD', 1, %s::timestamptz + g * interval '10 ms' FROM generate_series(1, %s) g",
            (model, T0, T0, args.signals),
        )
        c.execute(
            "INSERT INTO ops.alerts (kind, severity, message, account_id, raised_at)"
            " SELECT 'anomaly', 'HIGH', 'bench', CASE WHEN g %% 100 = 0 THEN %s END,"
            "        %s::timestamptz + g * interval '10 ms' FROM generate_series(1, %s) g",
            (acct, T0, args.alerts),
        )
        c.execute("ANALYZE ml.signals, ops.alerts")
        last = c.execute("SELECT max(id) FROM ops.alerts").fetchone()[0]
        sig_since = f"'{T0}'::timestamptz + {(args.signals - 100) / 100} * interval '1 s'"
        alert_since = f"'{T0}'::timestamptz + {(args.alerts - 1000) / 100} * interval '1 s'"
        trader = ("trader", {"role": "trader", "account": "bench_trader"})
        admin = ("pgtrade_admin", {"role": "pgtrade_admin"})
        anon = ("web_anon", {"role": "web_anon"})
        cases = [
            (anon, "one series' newest 100 signals",
             "SELECT * FROM api.signals WHERE symbol = 'S7' AND interval = '1m' ORDER BY ts DESC LIMIT 100"),
            (anon, "signals since a created_at",
             f"SELECT * FROM api.signals WHERE created_at > {sig_since} ORDER BY created_at"),
            (trader, "alerts since a raised_at", f"SELECT * FROM api.alerts WHERE raised_at > {alert_since}"),
            (trader, "alerts after an id", f"SELECT * FROM api.alerts WHERE id > {last - 100} ORDER BY id"),
            (admin, "alerts after an id", f"SELECT * FROM api.alerts WHERE id > {last - 100} ORDER BY id"),
            (trader, "newest 100 alerts, no filter", "SELECT * FROM api.alerts ORDER BY id DESC LIMIT 100"),
            (admin, "newest 100 alerts, no filter", "SELECT * FROM api.alerts ORDER BY id DESC LIMIT 100"),
        ]  # fmt: skip
        for (role, claims), what, query in cases:
            times, rows = [], 0
            for _ in range(args.runs):
                with c.transaction():
                    c.execute(f"SET LOCAL ROLE {role}")
                    c.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
                    t = time.perf_counter()
                    rows = len(c.execute(query).fetchall())
                    times.append((time.perf_counter() - t) * 1000)
            print(f"{role:14s} {what:32s} rows={rows:5d} p50={pct(times, 50):8.2f} ms p95={pct(times, 95):8.2f} ms")


if __name__ == "__main__":
    main()
