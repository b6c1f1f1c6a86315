"""One self-contained HTML page per backtest run (``pgtrade backtest report RUN --out report.html``).

The page holds the equity curve against buy and hold of the same symbols, the drawdown, the trades marked on the
price chart, a monthly returns heatmap and the metrics table. Everything is read from the database (the run, its
account's snapshots and fills or round-trip trades, the bars the run saw); plotly.js is inlined, so the page opens
without a network. Also the read helpers the CLI shares (``fetch_run``, ``trade_list``).
"""

from __future__ import annotations

import html
import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import psycopg
from plotly.subplots import make_subplots
from psycopg.rows import dict_row

from .errors import PgtradeError

#: metrics shown first (when the run has them), in this order; the others follow by name
KEY_METRICS = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "trades", "win_rate", "final_equity")
#: the metrics key holding the same metrics for buy and hold of the run's symbols (docs/backtesting.md, Metrics)
BENCHMARK = "buy_and_hold"
#: the columns of a trade list shown in tables (all columns are in --json and the API)
TRADE_COLUMNS = {
    "backtest.trades": ("n", "symbol", "direction", "qty", "entry_ts", "entry_price", "exit_ts", "exit_price",
                        "net_pnl", "return_pct", "bars_held"),
    "trading.fills": ("fill_id", "symbol", "side", "qty", "price", "commission", "realized_pnl", "ts"),
}  # fmt: skip
#: the ids of the chart containers, in page order (tests/test_backtest_report.py checks each rendered)
CHART_IDS = ("chart-equity", "chart-drawdown", "chart-trades", "chart-monthly")
_WIDTH = 1100
_CONFIG = {"displaylogo": False, "responsive": False}


def fetch_run(conn: psycopg.Connection, run_id: int) -> dict:
    """The backtest.runs row ``run_id`` as a dict; a clear error when there is none."""
    row = conn.cursor(row_factory=dict_row).execute("SELECT * FROM backtest.runs WHERE id = %s", (run_id,)).fetchone()
    if row is None:
        raise PgtradeError(f"no backtest run {run_id} (pgtrade backtest list shows the runs)")
    return row


def trade_list(conn: psycopg.Connection, run: dict) -> tuple[str, list[dict]]:
    """The run's trades and where they come from: the round trips of backtest.trades when that table exists, else
    the fills of the run's account (trading.fills), one row per fill. Nothing is derived here."""
    cur = conn.cursor(row_factory=dict_row)
    if cur.execute("SELECT to_regclass('backtest.trades') IS NOT NULL AS t").fetchone()["t"]:
        cols = {
            r["attname"]
            for r in cur.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'backtest.trades'::regclass AND attnum > 0"
                " AND NOT attisdropped"
            )
        }
        order = ", ".join(c for c in ("n", "entry_ts", "symbol") if c in cols) or "1"
        rows = cur.execute(f"SELECT * FROM backtest.trades WHERE run_id = %s ORDER BY {order}", (run["id"],)).fetchall()
        return "backtest.trades", rows
    if run["account_id"] is None:
        return "trading.fills", []
    rows = cur.execute(
        """SELECT f.id AS fill_id, f.symbol, f.side, f.qty, f.price, f.ref_price, f.commission, f.slippage,
                  f.realized_pnl, f.ts
           FROM trading.fills f WHERE f.account_id = %s ORDER BY f.id""",
        (run["account_id"],),
    ).fetchall()
    return "trading.fills", rows


def metric_keys(metrics: list[dict | None]) -> list[str]:
    """The scalar metric names of one or more runs, the key ones first (nested objects such as the benchmark's
    metrics are not scalars: see ``flat_metrics``)."""
    have = {k for m in metrics for k, v in (m or {}).items() if not isinstance(v, dict)}
    return [k for k in KEY_METRICS if k in have] + sorted(have - set(KEY_METRICS))


def flat_metrics(m: dict | None) -> dict:
    """Metrics with nested objects spread out as ``outer.inner`` (e.g. ``buy_and_hold.sharpe``)."""
    out: dict = {}
    for k, v in (m or {}).items():
        if isinstance(v, dict):
            out |= {f"{k}.{k2}": v2 for k2, v2 in v.items()}
        else:
            out[k] = v
    return out


def _equity(conn: psycopg.Connection, run: dict) -> pd.DataFrame:
    rows = conn.execute(
        "SELECT ts, total_value, drawdown FROM trading.portfolio_snapshots WHERE account_id = %s ORDER BY ts",
        (run["account_id"],),
    ).fetchall()
    df = pd.DataFrame(rows, columns=["ts", "equity", "drawdown"])
    df["equity"] = df["equity"].astype(float)
    df["drawdown"] = df["drawdown"].astype(float)
    return df


def _bars(conn: psycopg.Connection, run: dict) -> pd.DataFrame:
    """The bars the run saw (backtest.bars), with each bar's close time (the snapshots' time axis)."""
    rows = conn.execute(
        """SELECT b.symbol, b.ts, b.ts + iv.step AS close_ts, b.close
           FROM backtest.runs r CROSS JOIN LATERAL backtest.bars(r) b JOIN market.intervals iv ON iv.code = b.interval
           WHERE r.id = %s ORDER BY b.symbol, b.ts""",
        (run["id"],),
    ).fetchall()
    df = pd.DataFrame(rows, columns=["symbol", "ts", "close_ts", "close"])
    df["close"] = df["close"].astype(float)
    return df


def buy_and_hold(bars: pd.DataFrame, cash: float) -> pd.Series:
    """Buy and hold of the run's symbols: ``cash`` split equally among them at each one's first close in the range,
    valued at every bar close (a symbol's last close carried forward; before its first bar its share is cash), no
    costs. Indexed by bar close time."""
    if bars.empty:
        return pd.Series(dtype=float)
    wide = bars.pivot(index="close_ts", columns="symbol", values="close").sort_index().ffill()
    growth = (wide / wide.apply(lambda s: s.dropna().iloc[0])).fillna(1.0)
    return cash * growth.mean(axis=1)


def monthly_returns(equity: pd.DataFrame, cash: float) -> pd.DataFrame:
    """Return of each calendar month (UTC) from the equity curve: last equity of the month over the last of the
    month before (the first month: over the initial cash) minus 1. Rows are years, columns months 1-12."""
    if equity.empty:
        return pd.DataFrame()
    s = equity.set_index(pd.DatetimeIndex(equity["ts"]).tz_convert("UTC"))["equity"]
    month_end = s.groupby([s.index.year, s.index.month]).last()
    prev = month_end.shift(1)
    prev.iloc[0] = cash
    ret = month_end / prev - 1
    ret.index.names = ["year", "month"]
    return ret.unstack("month").reindex(columns=range(1, 13))


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float | Decimal):
        return f"{float(v):,.6g}" if abs(float(v)) < 1e6 else f"{float(v):,.2f}"
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, dict | list):
        return json.dumps(v, default=str)
    return str(v)


def _table(rows: list[tuple], cls: str, head: tuple[str, ...] = ()) -> str:
    top = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>" if head else ""
    body = "".join(
        f"<tr><th>{html.escape(r[0])}</th>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r[1:]) + "</tr>"
        for r in rows
    )
    return f'<table class="{cls}">{top}{body}</table>'


def metrics_rows(metrics: dict | None) -> tuple[tuple[str, ...], list[tuple]]:
    """(header, rows) of a run's metrics table: metric, the run's value and, when the metrics hold the benchmark's,
    buy and hold's value of the same metric."""
    m = metrics or {}
    bench = m.get(BENCHMARK) if isinstance(m.get(BENCHMARK), dict) else None
    if bench is None:
        return ("metric", "value"), [(k, m.get(k)) for k in metric_keys([m])]
    return ("metric", "strategy", "buy and hold"), [(k, m.get(k), bench.get(k)) for k in metric_keys([m])]


def _figures(run: dict, equity: pd.DataFrame, bars: pd.DataFrame, trades: tuple[str, list[dict]]) -> list[go.Figure]:
    cash = float(run["params"]["cash"])
    bh = buy_and_hold(bars, cash)
    eq = go.Figure(
        [
            go.Scatter(
                x=equity["ts"],
                y=equity["equity"],
                name=f"{run['strategy']} (run {run['id']})",
                line={"color": "#1f77b4", "width": 2},
            ),
            go.Scatter(
                x=bh.index,
                y=bh.values,
                name=f"buy and hold {', '.join(run['symbols'])}",
                line={"color": "#ff7f0e", "width": 1.5},
            ),
        ]  # fmt: skip
    )
    eq.update_layout(title="Equity against buy and hold", yaxis_title="equity", height=420, width=_WIDTH)

    dd = go.Figure(
        go.Scatter(
            x=equity["ts"], y=-100 * equity["drawdown"], fill="tozeroy", name="drawdown", line={"color": "#d62728"}
        )  # fmt: skip
    )
    dd.update_layout(title="Drawdown (% below the running peak)", yaxis_title="%", height=300, width=_WIDTH)

    symbols = list(run["symbols"])
    px = make_subplots(rows=len(symbols), cols=1, shared_xaxes=True, subplot_titles=symbols, vertical_spacing=0.08)
    source, rows = trades
    for i, sym in enumerate(symbols, start=1):
        b = bars[bars["symbol"] == sym]
        px.add_trace(go.Scatter(x=b["ts"], y=b["close"], name=f"{sym} close", line={"color": "#7f7f7f", "width": 1}),
                     row=i, col=1)  # fmt: skip
        for label, xs, ys, marker in _markers(source, [r for r in rows if r["symbol"] == sym]):
            if xs:
                px.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name=f"{sym} {label}", marker=marker),
                             row=i, col=1)  # fmt: skip
    px.update_layout(title=f"Trades on the price ({source}; fills at the bar's open)", width=_WIDTH,
                     height=160 + 260 * len(symbols))  # fmt: skip

    m = monthly_returns(equity, cash)
    hm = go.Figure(
        go.Heatmap(
            z=(100 * m).round(2).values.tolist(),
            x=["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"],
            y=[str(y) for y in m.index],
            colorscale="RdYlGn",
            zmid=0,
            texttemplate="%{z:.1f}",
            colorbar={"title": "%"},
            hoverongaps=False,
        )
    )
    hm.update_layout(title="Monthly returns (%)", width=_WIDTH, height=220 + 30 * max(len(m), 2),
                     yaxis={"autorange": "reversed", "type": "category"})  # fmt: skip
    return [eq, dd, px, hm]


def _markers(source: str, rows: list[dict]):
    """(label, x, y, marker) groups for the trades of one symbol."""
    up = {"symbol": "triangle-up", "size": 10, "color": "#2ca02c", "line": {"width": 1, "color": "#000"}}
    down = {"symbol": "triangle-down", "size": 10, "color": "#d62728", "line": {"width": 1, "color": "#000"}}
    if source == "trading.fills":
        for side, marker in (("buy", up), ("sell", down)):
            sel = [r for r in rows if r["side"] == side]
            yield side, [r["ts"] for r in sel], [float(r["price"]) for r in sel], marker
        return
    longs = [r for r in rows if str(r.get("direction", "long")).lower() in ("long", "1", "buy")]
    shorts = [r for r in rows if r not in longs]
    yield "long entry", [r["entry_ts"] for r in longs], [float(r["entry_price"]) for r in longs], up
    yield "short entry", [r["entry_ts"] for r in shorts], [float(r["entry_price"]) for r in shorts], down
    done = [r for r in rows if r.get("exit_ts") is not None]
    x = {"symbol": "x", "size": 9, "color": "#000"}
    yield "exit", [r["exit_ts"] for r in done], [float(r["exit_price"]) for r in done], x


_CSS = """
body { font-family: system-ui, sans-serif; margin: 16px; color: #222; background: #fff; }
h1 { font-size: 20px; margin: 0 0 8px 0; }
.chart { margin: 8px 0 16px 0; }
table { border-collapse: collapse; margin: 8px 16px 16px 0; font-size: 13px; display: inline-table;
        vertical-align: top; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
td { text-align: right; font-variant-numeric: tabular-nums; }
"""


def render(conn: psycopg.Connection, run_id: int) -> str:
    """The report page of run ``run_id`` as one HTML string (plotly.js inlined, no network needed)."""
    run = fetch_run(conn, run_id)
    if run["status"] != "done":
        raise PgtradeError(f"run {run_id} is {run['status']}: {run['error'] or 'no result yet'}; nothing to report")
    if run["account_id"] is None:
        raise PgtradeError(f"run {run_id} ({run['purpose']}) has no account of its own; report its child runs")
    equity = _equity(conn, run)
    bars = _bars(conn, run)
    trades = trade_list(conn, run)
    figs = _figures(run, equity, bars, trades)
    charts = "\n".join(
        f'<div class="chart">{f.to_html(full_html=False, include_plotlyjs=(i == 0), div_id=cid, config=_CONFIG)}</div>'
        for i, (f, cid) in enumerate(zip(figs, CHART_IDS, strict=True))
    )
    m_head, m_rows = metrics_rows(run["metrics"])
    params = sorted(run["params"].items())
    about = [
        ("strategy", run["strategy"]),
        ("symbols", ", ".join(run["symbols"])),
        ("interval", run["interval"]),
        ("range", f"[{run['start_ts'].isoformat()}, {run['end_ts'].isoformat()})"),
        ("mode", run["mode"]),
        ("bars", run["bars"]),
        ("decisions", run["decisions"]),
        ("orders", run["orders"]),
        ("fills", run["fills"]),
        ("elapsed ms", run["elapsed_ms"]),
        ("params hash", run["params_hash"]),
        ("schema version", run["schema_version"]),
        ("code hash", run["code_hash"]),
        ("data hash", run["data_hash"]),
        ("data version", run["data_version"]),
    ]
    title = f"Backtest run {run['id']}: {run['strategy']} on {', '.join(run['symbols'])} {run['interval']}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
{charts}
<h2>Metrics</h2>
{_table(m_rows, "metrics", m_head)}
{_table([(k, v) for k, v in params], "params")}
{_table(about, "run")}
<p>Trades: {len(trades[1])} rows of {html.escape(trades[0])}. Generated by pgtrade backtest report.</p>
</body></html>
"""


def write_report(conn: psycopg.Connection, run_id: int, out: Path) -> int:
    """Write the report of ``run_id`` to ``out``; its size in bytes."""
    text = render(conn, run_id)
    out.write_text(text, encoding="utf-8")
    return len(text.encode("utf-8"))
