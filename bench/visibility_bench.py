"""The account visibility rule of the api views, four ways, on the same data in one run:

  function  the rule as shipped: api.orders filters `account_id = ANY ((SELECT api.request_accounts())::bigint[])`
  case      the rule as it was written out in each view before (a CASE over pg_has_role and
            `account_id = (SELECT api.request_account_id())`)
  set       the same ids as a set: `account_id IN (SELECT unnest(api.request_accounts()))`
  rls       row-level security the PostgREST way without giving web roles table rights: a view owner role
            (bench_api) that is not the table owner, SELECT on trading.orders, and the same
            `account_id = ANY (...)` as the table's policy

Each request runs as PostgREST runs it (SET LOCAL ROLE, request.jwt.claims) in a scratch database
(pgtrade_visibility_bench) with --accounts accounts x --orders-per-account orders. Prints p50/p99 client-side
latency per query shape and variant. Uses the server of `pgtrade db url` / $PGTRADE_DATABASE_URL.

    python bench/visibility_bench.py [--accounts 200] [--orders-per-account 5000] [--runs 30]
"""

from __future__ import annotations

import argparse
import json
import time

import psycopg
from _common import machine, pct, scratch_database
from psycopg import sql

BENCH_DB = "pgtrade_visibility_bench"

SETUP = """
SELECT trading.create_account('acct_' || g, 100000) FROM generate_series(1, {accounts}) g;
SELECT market.upsert_instrument('VISB');
INSERT INTO trading.orders (account_id, symbol, side, type, qty, tif, status, reject_code, reject_reason, source,
                            created_at, updated_at, closed_at)
SELECT a.id, 'VISB', 'buy', 'market', 1, 'day', 'rejected', 'TR008', 'bench', 'manual', now(), now(), now()
FROM trading.accounts a CROSS JOIN generate_series(1, {per}) g
WHERE a.name LIKE 'acct\\_%';
ANALYZE trading.orders;
CREATE SCHEMA bench AUTHORIZATION pgtrade_owner;
CREATE VIEW bench.orders_case WITH (security_barrier) AS
  SELECT o.* FROM trading.orders o
  WHERE CASE WHEN pg_catalog.pg_has_role(CURRENT_USER, 'pgtrade_admin', 'USAGE') THEN true
             ELSE o.account_id = (SELECT api.request_account_id()) END;
ALTER VIEW bench.orders_case OWNER TO pgtrade_owner;
CREATE VIEW bench.orders_set WITH (security_barrier) AS
  SELECT o.* FROM trading.orders o WHERE o.account_id IN (SELECT unnest(api.request_accounts()));
ALTER VIEW bench.orders_set OWNER TO pgtrade_owner;
CREATE ROLE bench_api NOLOGIN;
GRANT USAGE ON SCHEMA trading, api TO bench_api;
GRANT SELECT ON trading.orders TO bench_api;
GRANT EXECUTE ON FUNCTION api.request_accounts(), api.request_account_id(text) TO bench_api;
ALTER TABLE trading.orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY bench_visible ON trading.orders FOR SELECT TO bench_api
  USING (account_id = ANY ((SELECT api.request_accounts())::bigint[]));
CREATE VIEW bench.orders_rls AS SELECT o.* FROM trading.orders o;
ALTER VIEW bench.orders_rls OWNER TO bench_api;
GRANT USAGE ON SCHEMA bench TO trader, pgtrade_admin;
GRANT SELECT ON bench.orders_case, bench.orders_rls, bench.orders_set TO trader, pgtrade_admin;
"""

VIEWS = {
    "function": "api.orders",
    "case": "bench.orders_case",
    "rls": "bench.orders_rls",
    "set": "bench.orders_set",
}
SHAPES = {
    # GET /orders?order=id.desc&limit=100 (a trader's order blotter)
    "trader: newest 100": ("trader", "SELECT * FROM {v} ORDER BY id DESC LIMIT 100"),
    # GET /orders?symbol=eq.VISB with Prefer: count=exact, as a count
    "trader: count": ("trader", "SELECT count(*) FROM {v}"),
    "admin: count of all": ("pgtrade_admin", "SELECT count(*) FROM {v}"),
}


def timed(conn: psycopg.Connection, role: str, query: str, account: str, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
            conn.execute(
                "SELECT set_config('request.jwt.claims', %s, true)", (json.dumps({"role": role, "account": account}),)
            )
            conn.execute(query).fetchall()
        out.append(time.perf_counter() - t)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accounts", type=int, default=200)
    ap.add_argument("--orders-per-account", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    print("machine:", machine())
    with scratch_database(BENCH_DB) as url, psycopg.connect(url, autocommit=True) as conn:
        t = time.perf_counter()
        conn.execute(
            sql.SQL(SETUP).format(accounts=sql.Literal(args.accounts), per=sql.Literal(args.orders_per_account))
        )
        total = conn.execute("SELECT count(*) FROM trading.orders").fetchone()[0]
        print(f"setup: {args.accounts} accounts, {total} orders in {time.perf_counter() - t:.1f} s")
        try:
            for shape, (role, q) in SHAPES.items():
                times: dict[str, list[float]] = {name: [] for name in VIEWS}
                for view in VIEWS.values():
                    timed(conn, role, q.format(v=view), "acct_7", 3)  # warm up
                # round robin, so no variant profits from running after another (caches, hint bits, vacuum)
                for _ in range(args.runs):
                    for name, view in VIEWS.items():
                        times[name] += timed(conn, role, q.format(v=view), "acct_7", 1)
                for name, runs in times.items():
                    print(
                        f"{shape:22} {name:9} p50 {pct(runs, 50) * 1000:8.2f} ms   p99 {pct(runs, 99) * 1000:8.2f} ms"
                    )
        finally:
            conn.execute("DROP OWNED BY bench_api")
            conn.execute("DROP ROLE bench_api")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
