"""Benchmark: scoring in the database and the live path (issue 12, section 9).

In a scratch database (migrated from db/, the bundled sample loaded), with real scikit-learn models fitted on the
bundled daily history and registered as ONNX:

1. prediction for one symbol's latest bar (ml.predict: features + every active model), p50/p99: inside the
   database (a PL/pgSQL loop timing each call with clock_timestamp) and from a client (psycopg round trips);
2. batch scoring (ml.score over each daily series' whole history, signals written) in rows/s, beside
   ml.features alone;
3. ingest of 10 symbols' live 1-minute bars (synthetic forming-bar updates, 6 per bar, one transaction per update
   round as the live feed sends them, the feed clock set) with every ML step on (anomalies of every type with an
   active pattern model, an active direction model, an auto-trading account) vs the same ingest of the same prices
   with the ML steps off (the closed-bar triggers disabled; the trading core's triggers run in both): updates/s and
   the ratio, measured in the same run, alternating;
4. bar arrival -> signal -> order committed, p50/p99: per closing transaction of the "on" run that placed an order,
   from just before the update is sent to its commit (the signal and the order are written in that transaction).

    /opt/pgtrade/venv/bin/python bench/ml_bench.py [--minutes 60] [--runs 1000] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import psycopg  # noqa: E402
from _common import machine, pct, scratch_database  # noqa: E402
from ml_support import feature_rows, register_model  # noqa: E402

from loaders.sample import load_sample  # noqa: E402
from loaders.synthetic import SyntheticMarket, calibrate_from  # noqa: E402
from pgtrade.ingest import Bar, ingest_batch  # noqa: E402

DAILY = ["SPX", "IXIC", "GOOG", "GOOGL"]


def fit_models(conn):
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y, _ = feature_rows(conn, DAILY, "1d", "2012-01-01")
    lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y)
    gb = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0).fit(X, y)
    return lr, gb


def predict_latency(conn, runs: int, symbol: str = "SPX", interval: str = "1d") -> dict:
    inside = conn.execute(
        """DO $$
           DECLARE _t timestamptz; _d float8[] := '{}';
           BEGIN
             PERFORM * FROM ml.predict('SYM', 'IV');  -- warm: the ONNX session cached in this backend
             FOR i IN 1..%s LOOP
               _t := clock_timestamp();
               PERFORM * FROM ml.predict('SYM', 'IV');
               _d := _d || extract(epoch FROM clock_timestamp() - _t)::float8 * 1000;
             END LOOP;
             PERFORM set_config('bench.inside', array_to_string(_d, ','), false);
           END $$""".replace("%s", str(runs))
        .replace("SYM", symbol)
        .replace("IV", interval)
    )
    del inside
    ms = [float(x) for x in conn.execute("SELECT current_setting('bench.inside')").fetchone()[0].split(",")]
    client = []
    q = "SELECT * FROM ml.predict(%s, %s)"
    conn.execute(q, (symbol, interval), prepare=True).fetchall()
    for _ in range(runs):
        t = time.perf_counter_ns()
        rows = conn.execute(q, (symbol, interval), prepare=True).fetchall()
        client.append((time.perf_counter_ns() - t) / 1e6)
    assert rows
    chunks = conn.execute(
        "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'bars'"
    ).fetchone()[0]
    return {
        "series": f"{symbol} {interval}",
        "bars_chunks": chunks,
        "runs": runs,
        "models": len(rows),
        "inside_ms": {"p50": round(pct(ms, 50), 3), "p99": round(pct(ms, 99), 3), "max": round(max(ms), 3)},
        "client_ms": {"p50": round(pct(client, 50), 3), "p99": round(pct(client, 99), 3), "max": round(max(client), 3)},
    }


def batch_scoring(conn, repeats: int = 3) -> dict:
    """Rows/s of: the features alone; scoring (features + the model + the signal rules, internal.scored, nothing
    written); ml.score (the same, and the signals recorded), over each daily series' whole history."""
    n = len(DAILY)
    args = (DAILY, ["1d"] * n, ["-infinity"] * n, ["infinity"] * n)
    feats, scored, recorded, rows = [], [], [], 0
    for _ in range(repeats):
        t = time.perf_counter()
        n_f = conn.execute("SELECT count(*) FROM ml.features(%s, '1d')", (DAILY,)).fetchone()[0]
        feats.append(n_f / (time.perf_counter() - t))
        t = time.perf_counter()
        n_s = conn.execute(
            "SELECT count(*) FROM internal.scored(%s, %s, %s::timestamptz[], %s::timestamptz[])", args
        ).fetchone()[0]
        scored.append(n_s / (time.perf_counter() - t))
        conn.execute("DELETE FROM ml.signals")
        conn.commit()
        t = time.perf_counter()
        rows = sum(conn.execute("SELECT ml.score(%s, '1d')", (s,)).fetchone()[0] for s in DAILY)
        conn.commit()
        recorded.append(rows / (time.perf_counter() - t))
    assert rows == n_s
    return {
        "series": DAILY,
        "feature_rows": n_f,
        "signals": rows,
        "features_rows_per_s": [round(x) for x in feats],
        "scored_rows_per_s": [round(x) for x in scored],
        "score_and_record_rows_per_s": [round(x) for x in recorded],
    }


def synthetic_rounds(symbols: list[str], minutes: int, start: datetime, cal, seed: int) -> list[list[Bar]]:
    """The forming-bar updates of ``minutes`` minutes, grouped as the feed sends them: one round of all symbols per
    update (6 per minute), each with its simulated time."""
    market = SyntheticMarket(symbols, cal, start=start, seed=seed, updates_per_minute=6)
    rounds: list[list[Bar]] = []
    times: list[float] = []
    for tick in market.ticks():
        if tick.offset > minutes * 60:
            break
        if not times or tick.offset != times[-1]:
            rounds.append([])
            times.append(tick.offset)
        rounds[-1].append(tick.bar)
    return list(zip(times, rounds, strict=True))


def rename(bars: list[Bar], prefix: str) -> list[Bar]:
    return [Bar(prefix + b.symbol, b.interval, b.ts, b.open, b.high, b.low, b.close, b.volume) for b in bars]


def ingest_run(url: str, rounds, start: datetime, prefix: str, account_id: int | None) -> dict:
    """Send the rounds, one transaction each with the feed clock; time each; for closing rounds (the minute's last
    update) count the orders the transaction placed."""
    lat, closing = [], []
    with psycopg.connect(url) as conn:
        # warm the backend as a running feed's is: the model's ONNX session loaded (once per backend), plans cached
        conn.execute("SELECT count(*) FROM ml.predict(%s, '1m')", (prefix + "S00",)).fetchone()
        conn.commit()
        t0 = time.perf_counter()
        for offset, bars in rounds:
            batch = rename(bars, prefix)
            clock = start + timedelta(seconds=offset)
            t = time.perf_counter_ns()
            ingest_batch(conn, batch, source="bench", feed_now=clock)
            conn.commit()
            dt = (time.perf_counter_ns() - t) / 1e6
            lat.append(dt)
            if offset % 60 == 0:
                closing.append((clock, dt))
        elapsed = time.perf_counter() - t0
        placed = []
        if account_id is not None:
            per_clock = dict(
                conn.execute(
                    "SELECT accepted_at, count(*) FROM trading.orders WHERE account_id = %s AND source = 'signal' "
                    "AND status <> 'rejected' GROUP BY accepted_at",
                    (account_id,),
                ).fetchall()
            )
            placed = [dt for clock, dt in closing if per_clock.get(clock)]
            signals = conn.execute("SELECT count(*) FROM ml.signals WHERE symbol LIKE %s", (prefix + "%",)).fetchone()[
                0
            ]
            orders = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE status = 'rejected'), count(*) FILTER (WHERE filled_qty > 0)"
                " FROM trading.orders WHERE account_id = %s AND source = 'signal'",
                (account_id,),
            ).fetchone()
        updates = sum(len(b) for _, b in rounds)
    out = {
        "updates": updates,
        "transactions": len(rounds),
        "elapsed_s": round(elapsed, 3),
        "updates_per_s": round(updates / elapsed, 1),
        "txn_ms": {"p50": round(pct(lat, 50), 2), "p99": round(pct(lat, 99), 2)},
        "closing_txn_ms": {
            "p50": round(pct([d for _, d in closing], 50), 2),
            "p99": round(pct([d for _, d in closing], 99), 2),
        },
    }
    if account_id is not None:
        out["signals"] = signals
        out["orders"] = {"placed": orders[0], "rejected": orders[1], "filled": orders[2]}
        out["arrival_to_order_committed_ms"] = (
            {"count": len(placed), "p50": round(pct(placed, 50), 2), "p99": round(pct(placed, 99), 2)}
            if placed
            else None
        )
    return out


# Warm-up minutes before the timed runs: more than the anomaly window (ml.anomaly_window(), 120 bars), so the
# timed bars are those of a series in its steady state, with every anomaly type scored.
WARM_MINUTES = 150


def ml_triggers(url: str, *, enabled: bool) -> None:
    verb = "ENABLE" if enabled else "DISABLE"
    with psycopg.connect(url, autocommit=True) as conn:
        for name in ("_200_ml_closed_on_insert", "_200_ml_closed_on_update"):
            conn.execute(f"ALTER TABLE market.bars {verb} TRIGGER {name}")


def live_path(url: str, minutes: int, rounds_each: int) -> dict:
    with psycopg.connect(url) as conn:
        cal = calibrate_from(conn, "SPX")
        symbols = [f"S{i:02d}" for i in range(10)]
        start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(
            minutes=2 * (minutes + WARM_MINUTES) * rounds_each + WARM_MINUTES + 5
        )
        warm = synthetic_rounds(symbols, WARM_MINUTES, start, cal, seed=1)
        from loaders.sample import register_instrument

        for prefix in ("OFF", "ON"):
            for s in symbols:
                register_instrument(conn, symbol=prefix + s, name="ml bench", asset_class="crypto")
        conn.commit()
        # a model of the ON symbols, fitted on the warm-up minutes' features (toy skill; the cost is what counts)
        for prefix in ("OFF", "ON"):
            for offset, bars in warm:
                ingest_batch(conn, rename(bars, prefix), source="bench", feed_now=start + timedelta(seconds=offset))
            conn.commit()
        from sklearn.linear_model import LogisticRegression

        on_syms = ["ON" + s for s in symbols]
        X, y, _ = feature_rows(conn, on_syms, "1m")
        model = LogisticRegression(max_iter=2000).fit(X, y) if len(set(y)) > 1 else None
        assert model is not None, "warm-up gave one class only"
        register_model(
            conn, model, name="bench_live", symbols=on_syms, interval="1m", buy_threshold=0.5, sell_threshold=0.5
        )
        # and a pattern model, so every anomaly type runs (price, gap and volume need none)
        from sklearn.ensemble import IsolationForest

        register_model(
            conn,
            IsolationForest(n_estimators=100, random_state=0).fit(X),
            name="bench_pattern",
            symbols=on_syms,
            interval="1m",
            task="anomaly",
        )
        aid = conn.execute(
            "SELECT id FROM trading.create_account('ml bench', 1000000, 'live', NULL,"
            ' \'{"max_position_pct": 5, "allow_short": true, "commission_rate": 0, "commission_min": 0}\')'
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO trading.auto_trading (account_id, enabled, models, min_confidence) "
            "VALUES (%s, true, '{bench_live}', 0)",
            (aid,),
        )
        conn.commit()
    results = {"off": [], "on": []}
    t = start + timedelta(minutes=WARM_MINUTES)
    for _ in range(rounds_each):
        rounds = synthetic_rounds(symbols, minutes, t, cal, seed=2 + len(results["on"]))
        for mode in ("off", "on"):
            # off: no ML step at all (the closed-bar triggers disabled: no anomalies, signals or orders), the
            # trading core's triggers as always
            ml_triggers(url, enabled=mode == "on")
            results[mode].append(ingest_run(url, rounds, t, mode.upper(), aid if mode == "on" else None))
        t += timedelta(minutes=minutes)
    off = sum(r["updates_per_s"] for r in results["off"]) / len(results["off"])
    on = sum(r["updates_per_s"] for r in results["on"]) / len(results["on"])
    return {"minutes_per_run": minutes, "runs": results, "ratio_on_off": round(on / off, 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000, help="predictions timed")
    ap.add_argument("--minutes", type=int, default=30, help="simulated minutes per ingest run")
    ap.add_argument("--rounds", type=int, default=2, help="alternating off/on ingest runs")
    ap.add_argument("--keep", action="store_true", help="keep the scratch database")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    out: dict = {"machine": machine(), "started": datetime.now(UTC).isoformat(timespec="seconds")}
    with scratch_database("pgtrade_bench_ml", keep=args.keep) as url:
        with psycopg.connect(url) as conn:
            load_sample(conn)
            conn.commit()
            t = time.perf_counter()
            lr, gb = fit_models(conn)
            out["fit_s"] = round(time.perf_counter() - t, 2)
            register_model(conn, lr, name="bench_lr", symbols=DAILY, interval="1d")
            conn.commit()
            out["predict_one_model"] = predict_latency(conn, args.runs)
            register_model(conn, gb, name="bench_gb", symbols=DAILY, interval="1d")
            conn.commit()
            out["predict_two_models"] = predict_latency(conn, args.runs)
            conn.execute("UPDATE ml.models SET status = 'retired' WHERE name = 'bench_gb'")
            conn.commit()
            out["batch_one_model"] = batch_scoring(conn)
        out["live"] = live_path(url, args.minutes, args.rounds)
        with psycopg.connect(url) as conn:
            out["predict_live_1m"] = predict_latency(conn, args.runs, "ONS00", "1m")
    out["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    print(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
