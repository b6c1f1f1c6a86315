"""Anomaly detection, measured: injection study (recall and precision per severity), the real S&P 500 days flagged,
and what detection costs on the bulk and the live ingest path. The figures of docs/ml-anomalies.md come from here.

Runs in a scratch database of its own (pgtrade_anomaly_eval) on the server named by $PGTRADE_DATABASE_URL or
`pgtrade db url` (a superuser URL), migrated from db/, with the bundled SPX and GOOG daily history loaded through
the ingest path; dropped at the end (--keep keeps it). Prints markdown; --json writes the figures too.

    python bench/anomaly_eval.py [--seed 12] [--spacing 15] [--runs 50] [--json out.json]

(1) Injection: for each of SPX and GOOG 1d and each kind, a copy of the real series under a scratch symbol with
    events injected on random days (at least --spacing bars apart, after the 120-bar window), each of a size drawn
    from the kind's list, loaded through pgtrade.ingest (so the statement trigger detects, as for any bulk load):
      spike  the close of day t moves up by m (and every later bar with it: a level shift, one abnormal return)
      drop   the same, down
      gap    day t opens m away from the previous close (the whole bar and every later bar shift by m)
      volume day t's volume is multiplied by k
    Recall at severity S: injected events of a size whose bar carries an anomaly of the kind's type (price, price,
    gap, volume) at S or above. Precision at S: of the bars of the copy flagged with that type at S or above, the
    share that are injected days. The real series carries real anomalies (crashes are not injected), so precision
    is also reported against the untouched series' own flags: "real" is how many of the copy's other flags are
    days the untouched series flags too.
(2) The SPX days flagged HIGH or CRITICAL (price), with the close-to-close return.
(3) Cost: the rolling-median options on SPX (internal.window_stats, numpy, as the detector runs it; a window
    array_agg with percentile_cont sorts; LATERAL percentile_cont); ml.detect_anomalies
    over the whole SPX history; the bulk load of SPX's 5,031 bars and the ingest of one new SPX bar through
    pgtrade.ingest with detection on and off (off: the series' ML watermark set past every bar inside the
    measured transaction, which is rolled back), interleaved, medians / p50 / p99; the detector alone on one bar;
    `load_sample` of all six bundled series (25,770 bars) into fresh databases, detection on and off.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from datetime import timedelta

import psycopg
from _common import machine, pct, scratch_database

from loaders.sample import load_sample
from pgtrade.ingest import Bar, ingest

SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
KINDS = {
    "spike": ("price", [0.02, 0.03, 0.05, 0.08]),
    "drop": ("price", [-0.02, -0.03, -0.05, -0.08]),
    "gap": ("gap", [0.01, -0.01, 0.02, -0.02, 0.04, -0.04]),
    "volume": ("volume", [2.0, 3.0, 5.0, 10.0]),
}
# Detection off for a series, inside the measured transaction: its ML watermark already past every bar, so the
# closed-bar trigger hands nothing on (no DDL, which would also throw away cached plans).
SKIP_SERIES = """INSERT INTO ml.watermarks (symbol, interval, ts) VALUES (%s, '1d', 'infinity')
                 ON CONFLICT (symbol, interval) DO UPDATE SET ts = 'infinity'"""


def series(conn, symbol: str) -> list[list]:
    return [
        [ts, float(o), float(h), float(lo), float(c), float(v)]
        for ts, o, h, lo, c, v in conn.execute(
            "SELECT ts, open, high, low, close, volume FROM market.bars WHERE symbol = %s AND interval = '1d'"
            " ORDER BY ts",
            (symbol,),
        ).fetchall()
    ]


def inject(rows: list[list], kind: str, days: list[int], sizes: dict[int, float]) -> list[list]:
    out = [r[:] for r in rows]
    for t in sorted(days):
        m = sizes[t]
        if kind in ("spike", "drop"):
            f = 1 + m
            out[t][4] *= f
            out[t][2] = max(out[t][2], out[t][4])
            out[t][3] = min(out[t][3], out[t][4])
            for r in out[t + 1 :]:
                r[1:5] = [x * f for x in r[1:5]]
        elif kind == "gap":
            f = 1 + m
            for r in out[t:]:
                r[1:5] = [x * f for x in r[1:5]]
        else:
            out[t][5] *= m
    return out


def bars(symbol: str, rows: list[list]) -> list[Bar]:
    return [
        Bar(
            symbol=symbol,
            interval="1d",
            ts=ts,
            open=f"{o:.6f}",
            high=f"{h:.6f}",
            low=f"{lo:.6f}",
            close=f"{c:.6f}",
            volume=f"{v:.0f}",
        )
        for ts, o, h, lo, c, v in rows
    ]


def register(conn, symbol: str) -> None:
    conn.execute("SELECT market.upsert_instrument(%s::text, %s::text, 'index')", (symbol, f"anomaly eval {symbol}"))


def flags(conn, symbol: str, type_: str) -> dict:
    """{ts: severity} of the anomalies of this type."""
    return dict(conn.execute("SELECT ts, severity FROM ml.anomalies WHERE symbol = %s AND type = %s", (symbol, type_)))


def at_least(sev: str | None, floor: str) -> bool:
    return sev is not None and SEVERITIES.index(sev) >= SEVERITIES.index(floor)


def injection_study(conn, base: str, rng: random.Random, spacing: int) -> list[dict]:
    rows = series(conn, base)
    window = conn.execute("SELECT ml.anomaly_window()").fetchone()[0]
    results = []
    for kind, (type_, sizes) in KINDS.items():
        days, t = [], window + 1 + rng.randrange(spacing)
        while t < len(rows) - 1:
            days.append(t)
            t += spacing + rng.randrange(spacing)
        size = {d: rng.choice(sizes) for d in days}
        symbol = f"EV_{base}_{kind}".upper()
        register(conn, symbol)
        ingest(conn, bars(symbol, inject(rows, kind, days, size)), source="anomaly-eval")
        got = flags(conn, symbol, type_)
        real = flags(conn, base, type_)
        injected_ts = {rows[d][0]: d for d in days}
        for s in sizes:
            ev = [d for d in days if size[d] == s]
            results.append(
                {
                    "series": base,
                    "kind": kind,
                    "type": type_,
                    "size": s,
                    "events": len(ev),
                    **{f"recall_{f}": sum(at_least(got.get(rows[d][0]), f) for d in ev) / len(ev) for f in SEVERITIES},
                }
            )
        for f in SEVERITIES:
            flagged = [ts for ts, sev in got.items() if at_least(sev, f)]
            hits = sum(ts in injected_ts for ts in flagged)
            others = [ts for ts in flagged if ts not in injected_ts]
            results.append(
                {
                    "series": base,
                    "kind": kind,
                    "type": type_,
                    "precision_at": f,
                    "flagged": len(flagged),
                    "injected_flagged": hits,
                    "precision": hits / len(flagged) if flagged else None,
                    "other_flags": len(others),
                    "other_flags_real": sum(at_least(real.get(ts), "LOW") for ts in others),
                    "untouched_flags": sum(at_least(sev, f) for sev in real.values()),
                }
            )
    return results


def spx_days(conn) -> list[tuple]:
    return conn.execute(
        """SELECT ts::date, severity, round(score::numeric, 1), round(100 * (details->>'return')::numeric, 2)
           FROM ml.anomalies WHERE symbol = 'SPX' AND type = 'price' AND severity IN ('HIGH', 'CRITICAL')
           ORDER BY ts"""
    ).fetchall()


def pattern_calibration(conn) -> list[dict]:
    """An IsolationForest (200 trees, seed 0) fit on the first half of each series' complete ml.features rows,
    scored on the second half: the share of days at each pattern threshold and the top days (score = minus
    sklearn's decision_function, which the ONNX model reproduces; tests/test_ml_anomalies.py holds them equal)."""
    import numpy as np
    from sklearn.ensemble import IsolationForest

    th = conn.execute(
        "SELECT low, medium, high, critical FROM ml.anomaly_thresholds WHERE symbol = '*' AND type = 'pattern'"
    ).fetchone()
    out = []
    for sym in ("SPX", "GOOG"):
        rows = conn.execute("SELECT ts, x FROM ml.features(%s, '1d') WHERE complete ORDER BY ts", ([sym],)).fetchall()
        x = np.array([r[1] for r in rows], dtype=np.float32)
        half = len(x) // 2
        forest = IsolationForest(n_estimators=200, random_state=0).fit(x[:half])
        score = -forest.decision_function(x[half:])
        top = np.argsort(-score)[:8]
        out.append(
            {
                "series": sym,
                "fit": f"{rows[0][0]:%Y-%m-%d}..{rows[half - 1][0]:%Y-%m-%d}",
                "scored": f"{rows[half][0]:%Y-%m-%d}..{rows[-1][0]:%Y-%m-%d}",
                "days": len(score),
                **{f"share_{sev}": float((score >= t).mean()) for sev, t in zip(SEVERITIES, th, strict=True)},
                "top": [f"{rows[half + i][0]:%Y-%m-%d} {score[i]:.3f}" for i in top],
            }
        )
    return out


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def costs(url: str, runs: int) -> dict:
    out: dict = {}
    with psycopg.connect(url) as conn:
        n = conn.execute("SELECT ml.anomaly_window()").fetchone()[0]
        rets = (
            "WITH r AS (SELECT ts, ln(close::float8 / lag(close::float8) OVER (ORDER BY ts)) AS r FROM market.bars"
            " WHERE symbol = 'SPX' AND interval = '1d')"
        )
        # the statistics as the detector computes them: internal.window_stats over the series' arrays (numpy; r's
        # median and sigma, and here r's median twice more in the places of the gap's and the volume's)
        numpy_q = (
            f"{rets} SELECT cardinality(w.r_med) FROM (SELECT array_agg(r ORDER BY ts) AS a FROM r) x,"
            f" internal.window_stats(x.a, x.a, x.a, 1, {n}) w"
        )
        # what the detector ran in SQL until issue 14: a window array_agg and two percentile_cont sorts per bar
        window_q = f"""{rets} SELECT count(s.mad) FROM (SELECT array_agg(r) OVER
              (ORDER BY ts ROWS BETWEEN {n} PRECEDING AND 1 PRECEDING) AS prev FROM r) a, LATERAL (
              WITH v AS (SELECT e FROM unnest(a.prev) e WHERE e IS NOT NULL),
                   m AS (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY e) AS med FROM v)
              SELECT (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY abs(v.e - m.med)) FROM v) AS mad
              FROM m) s"""
        lateral_q = f"""{rets} SELECT count(m.med) FROM r, LATERAL (
              WITH p AS (SELECT ln(b.close::float8 / lag(b.close::float8) OVER (ORDER BY b.ts)) AS pr
                         FROM (SELECT * FROM market.bars b WHERE b.symbol = 'SPX' AND b.interval = '1d'
                               AND b.ts < r.ts ORDER BY b.ts DESC LIMIT {n + 1}) b),
                   m AS (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY pr) AS med FROM p)
              SELECT m.med, (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY abs(pr - m.med)) FROM p) AS mad
              FROM m) m"""
        conn.execute(numpy_q).fetchone()  # numpy imported in this backend before the timed runs
        out["median_numpy_s"] = statistics.median(timed(lambda: conn.execute(numpy_q).fetchone()) for _ in range(3))
        out["median_window_s"] = statistics.median(timed(lambda: conn.execute(window_q).fetchone()) for _ in range(3))
        out["median_lateral_s"] = timed(lambda: conn.execute(lateral_q).fetchone())
        conn.rollback()
        out["detect_spx_history_s"] = statistics.median(
            timed(lambda: conn.execute("SELECT ml.detect_anomalies('SPX', '1d')").fetchone()) for _ in range(3)
        )
        conn.rollback()

        spx = series(conn, "SPX")
        bulk = {"on": [], "off": []}
        for _ in range(3):
            for arm in ("on", "off"):
                register(conn, "EV_BULK")
                if arm == "off":
                    conn.execute(SKIP_SERIES, ("EV_BULK",))
                items = bars("EV_BULK", spx)
                bulk[arm].append(timed(lambda items=items: ingest(conn, items, source="anomaly-eval")))
                conn.rollback()
        out["bulk_load_spx_on_s"] = statistics.median(bulk["on"])
        out["bulk_load_spx_off_s"] = statistics.median(bulk["off"])
        out["bulk_bars"] = len(spx)

        last = spx[-1]
        new_bar = [Bar("SPX", "1d", last[0] + timedelta(days=2), *(f"{x:.6f}" for x in last[1:5]), f"{last[5]:.0f}")]
        live = {"on": [], "off": []}
        for _ in range(runs):
            for arm in ("on", "off"):
                conn.execute("SELECT 1")  # inside a transaction: ingest commits nothing, the rollback undoes it
                if arm == "off":
                    conn.execute(SKIP_SERIES, ("SPX",))
                live[arm].append(timed(lambda: ingest(conn, new_bar, source="anomaly-eval")) * 1000)
                conn.rollback()
        for arm in ("on", "off"):
            out[f"live_bar_{arm}_p50_ms"] = pct(live[arm], 50)
            out[f"live_bar_{arm}_p99_ms"] = pct(live[arm], 99)
        # the detector alone on SPX's last bar (its 120-bar window), called from the client
        call = "SELECT internal.detect_anomalies('{SPX}', '{1d}', %s, %s)"
        args = ([spx[-2][0]], [spx[-1][0]])
        one = [timed(lambda: conn.execute(call, args).fetchone()) * 1000 for _ in range(runs)]
        conn.rollback()
        out["detect_one_bar_p50_ms"] = pct(one, 50)
        out["detect_one_bar_p99_ms"] = pct(one, 99)
    return out


def sample_load(reps: int = 2) -> dict:
    """`load_sample` of every bundled series into a fresh database, detection on / off (off: every series' ML
    watermark set past its bars before the load), interleaved; medians."""
    from loaders.sample import manifest

    took: dict = {"on": [], "off": []}
    for _ in range(reps):
        for arm in ("on", "off"):
            with scratch_database("pgtrade_anomaly_eval_load") as url, psycopg.connect(url) as conn:
                if arm == "off":
                    for s in manifest():
                        conn.execute("INSERT INTO ml.watermarks VALUES (%s, %s, 'infinity')", (s.symbol, s.interval))
                    conn.commit()
                took[arm].append(timed(lambda conn=conn: (load_sample(conn), conn.commit())))
    return {
        "load_sample_all_on_s": statistics.median(took["on"]),
        "load_sample_all_off_s": statistics.median(took["off"]),
    }


def fmt(x) -> str:
    return "-" if x is None else f"{x:.2f}" if isinstance(x, float) else str(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--spacing", type=int, default=15, help="Least bars between injected events.")
    ap.add_argument("--runs", type=int, default=50, help="One-bar ingests per arm for the live cost.")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    report: dict = {"machine": machine(), "seed": args.seed, "spacing": args.spacing}
    with scratch_database("pgtrade_anomaly_eval", keep=args.keep) as url:
        with psycopg.connect(url) as conn:
            load_sample(conn, symbols=["SPX", "GOOG"])
            conn.commit()
            report["injection"] = [
                r for base in ("SPX", "GOOG") for r in injection_study(conn, base, rng, args.spacing)
            ]
            days = spx_days(conn)
            scored = conn.execute(
                """SELECT count(*) FROM market.bars WHERE symbol = 'SPX' AND interval = '1d'
                   AND ts > (SELECT ts FROM market.bars WHERE symbol = 'SPX' AND interval = '1d'
                             ORDER BY ts OFFSET ml.anomaly_window() LIMIT 1)"""
            ).fetchone()[0]
            report["spx"] = {"scored_days": scored, "high_or_critical": [list(map(str, d)) for d in days]}
            report["pattern"] = pattern_calibration(conn)
            report["thresholds"] = conn.execute(
                "SELECT type, low, medium, high, critical FROM ml.anomaly_thresholds WHERE symbol = '*' ORDER BY type"
            ).fetchall()
        report["costs"] = costs(url, args.runs)
    report["costs"] |= sample_load()

    print(f"machine: {report['machine']}\n")
    print("## Recall (share of injected events flagged at the severity or above)\n")
    print("| series | kind | size | events | LOW | MEDIUM | HIGH | CRITICAL |")
    print("|---|---|---|---|---|---|---|---|")
    for r in report["injection"]:
        if "size" in r:
            size = f"x{r['size']:g}" if r["kind"] == "volume" else f"{100 * r['size']:+g} %"
            rec = " | ".join(f"{r[f'recall_{f}']:.2f}" for f in SEVERITIES)
            print(f"| {r['series']} | {r['kind']} | {size} | {r['events']} | {rec} |")
    print("\n## Precision (share of the copy's flags of the type, at the severity or above, on injected days)\n")
    print("| series | kind | type | at | flagged | injected | precision | other flags (of them flagged untouched) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in report["injection"]:
        if "precision_at" in r:
            print(
                f"| {r['series']} | {r['kind']} | {r['type']} | {r['precision_at']} | {r['flagged']} |"
                f" {r['injected_flagged']} | {fmt(r['precision'])} | {r['other_flags']} ({r['other_flags_real']}) |"
            )
    days = report["spx"]["high_or_critical"]
    n = report["spx"]["scored_days"]
    print(f"\n## SPX 1d: {len(days)} of {n} scored days HIGH or CRITICAL ({100 * len(days) / n:.2f} %)\n")
    print(", ".join(f"{d} {'C' if s == 'CRITICAL' else 'H'} {r}%" for d, s, _, r in days))
    print("\n## Pattern scores of an IsolationForest (share of out-of-sample days at each threshold)\n")
    print("| series | fit on | scored | days | LOW | MEDIUM | HIGH | CRITICAL | top days |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in report["pattern"]:
        shares = " | ".join(f"{100 * r[f'share_{f}']:.1f} %" for f in SEVERITIES)
        print(f"| {r['series']} | {r['fit']} | {r['scored']} | {r['days']} | {shares} | {', '.join(r['top'])} |")
    print("\n## Cost\n")
    for k, v in report["costs"].items():
        print(f"- {k}: {v:.4g}" if isinstance(v, float) else f"- {k}: {v}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2, default=str)


if __name__ == "__main__":
    main()
