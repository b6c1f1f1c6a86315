"""Trading benchmarks: place_order latency and throughput, bar ingest with live orders, bar-to-stop-loss latency.

Runs in a scratch database of its own (pgtrade_trading_bench) on the server named by $PGTRADE_DATABASE_URL or
`pgtrade db url` (a superuser URL), migrated from db/, dropped at the end (--keep keeps it). Prints its figures.

    python bench/trading_bench.py [--orders 10000] [--symbols 20] [--bars-per-symbol 5000] [--parts abcd]
                                  [--json out.json]

What it measures (issue 3 §8):
(a) trading.place_order, market orders that fill at once (alternating buy/sell 1 share), one psycopg client,
    autocommit: client-side latency per call including commit, p50/p99 over --orders calls.
(b) throughput: 8 client threads placing market orders concurrently on ONE account (they serialize on the
    account row lock) and on 8 accounts, orders/s.
(c) bar ingest through pgtrade.ingest.ingest (the real path: binary COPY + market.ingest_staged + the live bar
    triggers) of S symbols x N 1-minute bars in batches of --batch bars, while 10 live accounts hold a position
    in every symbol (10 open positions per symbol, marked to market by every batch) and 50 resting orders per
    symbol (limit buys and stop sells away from the market) are matched against every batch; bars/s. The same
    volume for symbols no account trades is the baseline (the triggers exit early).
(d) bar arrival to stop-loss fill: a position with a stop-loss child; one bar crossing the stop is ingested
    through pgtrade.ingest.ingest; client-side time from the call to its commit (the fill commits with the bar),
    p50/p99 over --stops runs; beside it the same one-bar ingest of a symbol nobody trades (the ingest path's
    own share).
(e) trading.place_order alone, timed inside the server (no round trip, no commit in the figure), --orders calls
    of the same market orders as (a). Not run by default: --parts abcde (or e alone).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from _common import machine, pct, scratch_database

from pgtrade.ingest import Bar, ingest

BENCH_DB = "pgtrade_trading_bench"
RISK = json.dumps({"max_position_pct": 100000, "max_gross_leverage": 1000})
# After a bulk setup (thousands of orders in seconds) the planner's statistics still describe the empty tables
# until autovacuum's next analyze; measured that way, the OCO sibling lookup and the trigger's open-order probe
# full-scan an open-order partial index (0.5 ms each per stop-loss bar). (c) and (d) measure the steady state.
ANALYZE = "ANALYZE trading.orders, trading.positions, trading.accounts"


def ms(values: list[float]) -> dict:
    return {
        "n": len(values),
        "p50_ms": round(pct(values, 50) * 1000, 3),
        "p99_ms": round(pct(values, 99) * 1000, 3),
        "max_ms": round(max(values) * 1000, 3),
        "mean_ms": round(statistics.fmean(values) * 1000, 3),
    }


def instrument(conn: psycopg.Connection, symbol: str) -> None:
    conn.execute(
        "SELECT market.upsert_instrument(%s::text, 'bench'::text, 'stock', 'USD', NULL, 1, 'UTC', NULL, NULL, true)",
        (symbol,),
    )


def flat_bar(symbol: str, ts: datetime, price: str = "100", low: str | None = None) -> Bar:
    return Bar(symbol=symbol, interval="1m", ts=ts, open=price, high=price, low=low or price, close=price, volume=1000)


def new_account(conn: psycopg.Connection, name: str, clock: datetime | None = None) -> int:
    return conn.execute(
        "SELECT id FROM trading.create_account(%s, 1e9, 'live', %s, %s::jsonb)", (name, clock, RISK)
    ).fetchone()[0]


def place(conn: psycopg.Connection, account: int, symbol: str, side: str, qty: int = 1, **kw) -> tuple:
    return conn.execute(
        "SELECT status, reject_code FROM trading.place_order(%s, %s, %s, %s, %s, %s, %s, 'gtc', NULL, %s, NULL)",
        (
            account,
            symbol,
            side,
            qty,
            kw.get("type", "market"),
            kw.get("limit_price"),
            kw.get("stop_price"),
            kw.get("stop_loss"),
        ),
    ).fetchone()


def bench_place_order(url: str, n: int) -> dict:
    now_min = datetime.now(UTC).replace(second=0, microsecond=0)
    with psycopg.connect(url, autocommit=True) as conn:
        instrument(conn, "BPO")
        ingest(conn, [flat_bar("BPO", now_min - timedelta(minutes=2))], source="bench")
        acct = new_account(conn, "bench-latency")
        for i in range(50):  # warm up (plans, caches)
            place(conn, acct, "BPO", "buy" if i % 2 == 0 else "sell")
        lat = []
        for i in range(n):
            t = time.perf_counter()
            status, code = place(conn, acct, "BPO", "buy" if i % 2 == 0 else "sell")
            lat.append(time.perf_counter() - t)
            if status != "filled":
                raise SystemExit(f"order {i} was {status} ({code})")
    return ms(lat)


def bench_throughput(url: str, per_client: int, clients: int = 8) -> dict:
    now_min = datetime.now(UTC).replace(second=0, microsecond=0)
    out = {}
    with psycopg.connect(url, autocommit=True) as conn:
        instrument(conn, "BTP")
        ingest(conn, [flat_bar("BTP", now_min - timedelta(minutes=2))], source="bench")
        one = new_account(conn, "bench-tp-one")
        many = [new_account(conn, f"bench-tp-{i}") for i in range(clients)]
    for label, accounts in (("one_account", [one] * clients), ("eight_accounts", many)):
        barrier = threading.Barrier(clients + 1)
        errors: list[str] = []

        def worker(acct: int, barrier: threading.Barrier = barrier, errors: list[str] = errors) -> None:
            with psycopg.connect(url, autocommit=True) as c:
                barrier.wait()
                for i in range(per_client):
                    status, code = place(c, acct, "BTP", "buy" if i % 2 == 0 else "sell")
                    if status != "filled":
                        errors.append(f"{status} {code}")

        threads = [threading.Thread(target=worker, args=(a,)) for a in accounts]
        for t in threads:
            t.start()
        barrier.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        dt = time.perf_counter() - t0
        if errors:
            raise SystemExit(f"{len(errors)} orders not filled, e.g. {errors[0]}")
        out[label] = {
            "clients": clients,
            "orders": clients * per_client,
            "seconds": round(dt, 3),
            "orders_per_s": round(clients * per_client / dt),
        }
    return out


def walk(symbol: str, start: datetime, n: int, rng: random.Random) -> list[Bar]:
    price = 100.0
    out = []
    for i in range(n):
        o = price
        price = max(1.0, price * (1 + rng.gauss(0, 0.0008)))
        hi, lo = max(o, price) * (1 + abs(rng.gauss(0, 0.0003))), min(o, price) * (1 - abs(rng.gauss(0, 0.0003)))
        out.append(
            Bar(
                symbol=symbol,
                interval="1m",
                ts=start + timedelta(minutes=i),
                open=f"{o:.4f}",
                high=f"{hi:.4f}",
                low=f"{lo:.4f}",
                close=f"{price:.4f}",
                volume=rng.randint(100, 10000),
            )
        )
    return out


def bench_ingest(url: str, symbols: int, per_symbol: int, batch: int) -> dict:
    start = (datetime.now(UTC) - timedelta(minutes=per_symbol + 60)).replace(second=0, microsecond=0)
    traded = [f"BIN{i:03d}" for i in range(symbols)]
    quiet = [f"BQU{i:03d}" for i in range(symbols)]
    rng = random.Random(11)
    with psycopg.connect(url, autocommit=True) as conn:
        for s in traded + quiet:
            instrument(conn, s)
        ingest(conn, [flat_bar(s, start - timedelta(minutes=1)) for s in traded + quiet], source="bench")
        accounts = [new_account(conn, f"bench-ingest-{i}", clock=start) for i in range(10)]
        for s in traded:
            for k, a in enumerate(accounts):
                assert place(conn, a, s, "buy", 10)[0] == "filled"
                for j in range(5):  # 5 x 10 accounts = 50 resting orders per symbol
                    if j % 2 == 0:
                        r = place(conn, a, s, "buy", 1, type="limit", limit_price=str(60 - k - j))
                    else:
                        r = place(conn, a, s, "sell", 1, type="stop", stop_price=str(50 - k - j))
                    assert r[0] == "accepted", r
        conn.execute(ANALYZE)
        resting = conn.execute(
            "SELECT count(*) FROM trading.orders WHERE status = 'accepted' AND symbol LIKE 'BIN%'"
        ).fetchone()[0]
        positions = conn.execute(
            "SELECT count(*) FROM trading.positions WHERE qty <> 0 AND symbol LIKE 'BIN%'"
        ).fetchone()[0]
    out = {
        "symbols": symbols,
        "bars_per_symbol": per_symbol,
        "batch": batch,
        "open_positions": positions,
        "resting_orders": resting,
    }
    for label, syms in (("with_orders", traded), ("baseline_no_orders", quiet)):
        bars = []
        series = {s: walk(s, start, per_symbol, rng) for s in syms}
        for i in range(per_symbol):  # time-ordered across symbols, like a feed catching up
            bars.extend(series[s][i] for s in syms)
        with psycopg.connect(url) as conn:
            t0 = time.perf_counter()
            rep = ingest(conn, bars, source="bench", batch_size=batch)
            dt = time.perf_counter() - t0
        assert rep.total.inserted == len(bars), rep.as_dict()
        out[label] = {"bars": len(bars), "seconds": round(dt, 3), "bars_per_s": round(len(bars) / dt)}
    with psycopg.connect(url) as conn:
        out["fills_during_ingest"] = conn.execute(
            "SELECT count(*) FROM trading.fills WHERE symbol LIKE 'BIN%' AND bar_ts IS NOT NULL"
        ).fetchone()[0]
        out["positions_marked_to_last_bar"] = conn.execute(
            "SELECT count(*) FROM trading.positions p WHERE p.symbol LIKE 'BIN%%' AND p.qty <> 0 "
            "AND p.last_price_at = %s",
            (start + timedelta(minutes=per_symbol),),
        ).fetchone()[0]
    return out


def bench_stop_latency(url: str, runs: int) -> dict:
    base = (datetime.now(UTC) - timedelta(minutes=2 * runs + 30)).replace(second=0, microsecond=0)
    lat, quiet = [], []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(ANALYZE)
        instrument(conn, "BSL")
        instrument(conn, "BSLQ")
        acct = new_account(conn, "bench-stop", clock=base)
        for i in range(runs):
            t = base + timedelta(minutes=2 * i)
            ingest(conn, [flat_bar("BSL", t)], source="bench")
            conn.execute("SELECT trading.advance_clock(%s, %s)", (acct, t + timedelta(minutes=1)))
            assert place(conn, acct, "BSL", "buy", 1, stop_loss="95")[0] == "filled"
            # the same one-bar ingest for a symbol nobody trades: the ingest path's own share
            t0 = time.perf_counter()
            ingest(conn, [flat_bar("BSLQ", t + timedelta(minutes=1), price="100", low="90")], source="bench")
            quiet.append(time.perf_counter() - t0)
            crossing = flat_bar("BSL", t + timedelta(minutes=1), price="100", low="90")
            t0 = time.perf_counter()
            ingest(conn, [crossing], source="bench")
            lat.append(time.perf_counter() - t0)
            conn.execute("SELECT trading.advance_clock(%s, %s)", (acct, t + timedelta(minutes=2)))
        filled = conn.execute(
            "SELECT count(*) FROM trading.orders WHERE account_id = %s AND source = 'stop_loss' AND status = 'filled'",
            (acct,),
        ).fetchone()[0]
    if filled != runs:
        raise SystemExit(f"only {filled} of {runs} stop-losses filled")
    return ms(lat) | {"stop_losses_filled": filled, "baseline_one_bar_no_orders": ms(quiet)}


def bench_place_order_server(url: str, n: int) -> dict:
    """(e) The time of trading.place_order alone, inside the server: a DO block times each call with
    clock_timestamp() and commits after each order (outside the timing), so neither the round trip nor the WAL flush
    is in the figure; market orders alternating buy/sell 1 share as (a), 200 warm-up calls first."""
    now_min = datetime.now(UTC).replace(second=0, microsecond=0)
    with psycopg.connect(url, autocommit=True) as conn:
        instrument(conn, "BPOS")
        ingest(conn, [flat_bar("BPOS", now_min - timedelta(minutes=2))], source="bench")
        acct = new_account(conn, "bench-server")
        conn.execute("CREATE TABLE IF NOT EXISTS public.bench_place_order_us (i int, us float8)")
        conn.execute("TRUNCATE public.bench_place_order_us")
        conn.execute(f"""DO $$
DECLARE _t timestamptz; _o trading.orders;
BEGIN
  FOR i IN 1..{int(n) + 200} LOOP
    _t := clock_timestamp();
    _o := trading.place_order({int(acct)}, 'BPOS', CASE WHEN i % 2 = 1 THEN 'buy' ELSE 'sell' END, 1);
    IF i > 200 THEN
      INSERT INTO public.bench_place_order_us VALUES (i, extract(epoch FROM clock_timestamp() - _t) * 1e6);
    END IF;
    IF _o.status <> 'filled' THEN
      RAISE EXCEPTION 'order % was % (%)', i, _o.status, _o.reject_code;
    END IF;
    COMMIT;
  END LOOP;
END $$""")
        us = [r[0] for r in conn.execute("SELECT us FROM public.bench_place_order_us ORDER BY i")]
        conn.execute("DROP TABLE public.bench_place_order_us")
    return ms([u / 1e6 for u in us])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orders", type=int, default=10_000)
    ap.add_argument("--per-client", type=int, default=1_000)
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--bars-per-symbol", type=int, default=5_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--stops", type=int, default=200)
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--keep", action="store_true", help="keep the scratch database")
    ap.add_argument("--parts", default="abcd", help="which measurements to run, e.g. ae (default abcd)")
    args = ap.parse_args()

    res: dict = {"machine": machine()}
    with scratch_database(BENCH_DB, keep=args.keep) as url:
        if "a" in args.parts:
            res["place_order_latency"] = bench_place_order(url, args.orders)
            print("(a) place_order, market, 1 client:", res["place_order_latency"], flush=True)
        if "b" in args.parts:
            res["place_order_throughput"] = bench_throughput(url, args.per_client)
            print("(b) throughput, 8 clients:", res["place_order_throughput"], flush=True)
        if "c" in args.parts:
            res["ingest_with_orders"] = bench_ingest(url, args.symbols, args.bars_per_symbol, args.batch)
            print("(c) bar ingest:", res["ingest_with_orders"], flush=True)
        if "d" in args.parts:
            res["bar_to_stop_loss_fill"] = bench_stop_latency(url, args.stops)
            print("(d) bar arrival -> stop-loss fill committed:", res["bar_to_stop_loss_fill"], flush=True)
        if "e" in args.parts:
            res["place_order_server_side"] = bench_place_order_server(url, args.orders)
            print("(e) place_order alone, server-side:", res["place_order_server_side"], flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(res, indent=2, default=str))
    print(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
