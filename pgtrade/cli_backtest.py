"""pgtrade backtest: run, inspect, compare and report backtests (docs/backtesting.md)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import click
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from rich.table import Table

from .cli import console, emit_json, err_console, user_errors
from .cli import main as cli
from .db import connect
from .errors import PgtradeError


@cli.group()
def backtest() -> None:
    """Backtests: the live trading procedures replayed on history (docs/backtesting.md)."""


_JSON = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _rep():
    """pgtrade.backtest_report (the read helpers and the report), imported by the commands that use it: pandas and
    plotly would add 0.3 s to every pgtrade command's start."""
    from . import backtest_report

    return backtest_report


def _symbols(value: str) -> list[str]:
    syms = [s.strip().upper() for s in value.split(",") if s.strip()]
    if not syms:
        raise click.BadParameter("give one symbol or several, comma-separated")
    return syms


def _param(values: tuple[str, ...]) -> dict:
    """--param k=v ...: each value as JSON when it parses (10, 0.5, true, null, "x"), else as a string."""
    out: dict = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise PgtradeError(f"--param takes key=value (e.g. --param fast=10), got {item!r}")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def _number(name: str, text: str) -> int | float:
    """An option's number as the JSON number it spells (10000 stays an integer: the parameters hash sees the
    same value as --param cash=10000 or a psql caller's 10000)."""
    try:
        value = json.loads(text.strip())
    except json.JSONDecodeError:
        value = None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PgtradeError(f"--{name.removesuffix('_bps')} must be a number, got {text!r}")
    return value


def _pct(v) -> str:
    return "" if v is None else f"{100 * float(v):.2f}%"


def _num(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool) or not isinstance(v, int | float | Decimal):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:,.2f}" if abs(v) >= 1000 else f"{v:.6g}"


def _range(run: dict) -> str:
    return f"{run['start_ts']:%Y-%m-%d}..{run['end_ts']:%Y-%m-%d}"


def _plain(v):
    """JSON-ready: numeric columns as JSON numbers (exact decimals print as they are stored), times as ISO text."""
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, datetime):
        return v.isoformat()
    return v


def _run_json(conn, run: dict) -> dict:
    """The run, its metrics and its trade list (backtest.trades)."""
    source, trades = _rep().trade_list(conn, run)
    return _plain({"run": run, "metrics": run["metrics"], "trades_source": source, "trades": trades})


def _fail(run: dict) -> None:
    err_console.print(f"[red]backtest run {run['id']} failed:[/red] {run['error']}", highlight=False, soft_wrap=True)
    sys.exit(1)


@backtest.command("run")
@click.option("--strategy", required=True, help="A registered strategy (pgtrade backtest strategies).")
@click.option("--symbols", required=True, help="One symbol or several, comma-separated.")
@click.option("--start", required=True, help="First bar time (inclusive), e.g. 2004-01-01.")
@click.option("--end", required=True, help="End of the range (exclusive), e.g. 2014-01-01.")
@click.option("--interval", default="1d", show_default=True)
@click.option("--cash", default=None, help="Initial cash (default: the engine's, 100000).")
@click.option("--commission", default=None, help="Commission rate per side (0.002 = 0.2 %).")
@click.option("--slippage", default=None, help="Slippage in basis points of the fill price.")
@click.option("--param", "params", multiple=True, help="A strategy or engine parameter, key=value (repeatable).")
@click.option("--mode", type=click.Choice(["auto", "fast", "exact"]), default="auto", show_default=True)
@_JSON
@user_errors
def bt_run(strategy, symbols, start, end, interval, cash, commission, slippage, params, mode, as_json) -> None:
    """Run a backtest in the database (backtest.run) and print its result; exit 1 when the run failed."""
    p = _param(params)
    for key, value in (("cash", cash), ("commission", commission), ("slippage_bps", slippage)):
        if value is not None:
            if key in p:
                raise PgtradeError(f"{key} given twice (as an option and as --param)")
            p[key] = _number(key, value)
    request = (strategy, _symbols(symbols), interval, start, end)
    with connect(autocommit=True) as conn, conn.cursor(row_factory=dict_row) as cur:
        with console.status(f"backtesting {strategy} on {symbols} {interval} in the database"):
            # committed as running first: if the server or this process dies during the run, the run is marked
            # failed (backtest.fail_interrupted_runs), never lost or left half-written
            begun = cur.execute(
                "SELECT id FROM backtest.run_begin(%s, %s, %s, %s::timestamptz, %s::timestamptz, %s)",
                (*request, Jsonb(p)),
                prepare=False,
            ).fetchone()["id"]
            try:
                with conn.transaction():  # a failed run is kept, with its error
                    run = cur.execute(
                        "SELECT * FROM backtest.run(%s, %s, %s, %s::timestamptz, %s::timestamptz, %s, %s)",
                        (*request, Jsonb(p), mode),
                        prepare=False,
                    ).fetchone()
            except psycopg.Error:
                if not conn.broken:  # a refused request (e.g. BT004) was never a run
                    cur.execute("SELECT backtest.run_discard(%s)", (begun,))
                raise
        if as_json:
            emit_json(_run_json(conn, run))
        elif run["status"] == "done":
            _print_run(conn, run, trades=False)
    if run["status"] != "done":
        _fail(run)


_LIST = """SELECT r.id, r.strategy, r.symbols, r."interval", r.start_ts, r.end_ts, r.mode, r.purpose, r.status,
                  r.error, r.metrics, r.elapsed_ms, r.created_at
           FROM backtest.runs r
           WHERE (%(strategy)s::text IS NULL OR r.strategy = %(strategy)s) AND (%(all)s OR r.purpose = 'single')
           ORDER BY r.id DESC LIMIT %(limit)s"""


@backtest.command("list")
@click.option("--limit", default=20, show_default=True)
@click.option("--strategy", default=None, help="Only this strategy's runs.")
@click.option("--all", "all_", is_flag=True, help="Also the runs of grids, walk-forwards and look-ahead checks.")
@_JSON
@user_errors
def bt_list(limit, strategy, all_, as_json) -> None:
    """The most recent runs: strategy, symbols, range, status, total return and Sharpe (when computed)."""
    with connect() as conn:
        rows = (
            conn.cursor(row_factory=dict_row)
            .execute(_LIST, {"strategy": strategy, "all": all_, "limit": limit})
            .fetchall()
        )
    if as_json:
        emit_json(_plain(rows))
        return
    t = Table(title="backtest runs")
    for c in ("id", "strategy", "symbols", "interval", "range", "mode", "status", "total return", "sharpe", "ms"):
        t.add_column(c, justify="right" if c in {"id", "total return", "sharpe", "ms"} else "left")
    for r in rows:
        m = r["metrics"] or {}
        t.add_row(
            str(r["id"]), r["strategy"], ",".join(r["symbols"]), r["interval"], _range(r), r["mode"],
            r["status"] if r["purpose"] == "single" else f"{r['status']} ({r['purpose']})",
            _pct(m.get("total_return")), _num(m.get("sharpe")), f"{float(r['elapsed_ms'] or 0):,.0f}",
        )  # fmt: skip
    console.print(t)


def _print_run(conn, run: dict, *, trades: bool) -> None:
    console.print(
        f"run {run['id']}: {run['strategy']} on {','.join(run['symbols'])} {run['interval']} {_range(run)} "
        f"[bold]{run['status']}[/bold] ({run['mode']}, {_count(run['bars'])} bars, {_count(run['fills'])} fills, "
        f"{_count(run['elapsed_ms'])} ms)",
        highlight=False,
    )
    head, rows = _rep().metrics_rows(run["metrics"])
    t = Table(title="metrics")
    for i, h in enumerate(head):
        t.add_column(h, justify="right" if i else "left")
    for k, *vals in rows:
        t.add_row(k, *[_num(v) for v in vals])
    console.print(t)
    if trades:
        source, rows = _rep().trade_list(conn, run)
        tt = Table(title=f"trades ({source}, {len(rows)} rows; every column with --json)")
        cols = [c for c in _rep().TRADE_COLUMNS[source] if not rows or c in rows[0]]
        for c in cols:
            tt.add_column(c, justify="left" if c in ("symbol", "direction", "side") else "right")
        for r in rows:
            tt.add_row(*[_cell(r[c]) for c in cols])
        console.print(tt)


def _count(v) -> str:
    return "-" if v is None else f"{float(v):,.0f}"


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d" if (v.hour, v.minute, v.second) == (0, 0, 0) else "%Y-%m-%d %H:%M")
    if isinstance(v, Decimal):  # at most 6 decimals (prices with the feed's digits, fractions like return_pct)
        return f"{(round(v, 6) if v.as_tuple().exponent < -6 else v).normalize():f}"
    return str(v)


@backtest.command("show")
@click.argument("run_id", type=int)
@_JSON
@user_errors
def bt_show(run_id, as_json) -> None:
    """A run: parameters, hashes, metrics and trades (or its error when it failed)."""
    with connect() as conn:
        run = _rep().fetch_run(conn, run_id)
        if as_json:
            emit_json(_run_json(conn, run))
            return
        if run["status"] != "done":
            console.print(
                f"run {run['id']}: {run['strategy']} on {','.join(run['symbols'])} {run['interval']} {_range(run)} "
                f"[bold]{run['status']}[/bold]",
                highlight=False,
            )
            if run["status"] == "failed":
                _fail(run)
            return
        p = Table(title="parameters and hashes")
        p.add_column("")
        p.add_column("value")
        for k, v in sorted(run["params"].items()):
            p.add_row(k, json.dumps(v))
        for k in ("params_hash", "schema_version", "code_hash", "data_hash", "data_version", "account_id", "purpose"):
            p.add_row(k, _cell(run[k]))
        console.print(p)
        _print_run(conn, run, trades=True)


@backtest.command("rerun")
@click.argument("run_id", type=int)
@_JSON
@user_errors
def bt_rerun(run_id, as_json) -> None:
    """Re-run a stored run on the bars as they were when it ran (backtest.rerun) and say whether it agrees.
    Exit status 1 when the rerun failed or differs from the original."""
    with connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM backtest.rerun(%s)", (run_id,)).fetchone()
        conn.commit()
    if as_json:
        emit_json(_plain(row))
    else:
        verdict = "identical to" if row["identical"] else "DIFFERENT from"
        console.print(f"rerun {row['rerun_id']} of run {row['original_id']}: {row['status']}, {verdict} the original",
                      highlight=False)  # fmt: skip
        for key in ("same_data", "same_fills", "same_metrics", "same_code", "same_schema"):
            console.print(f"  {key}: {row[key]}", highlight=False)
        for note in row["notes"] or []:
            console.print(f"  note: {note}", highlight=False, soft_wrap=True)
    if not row["identical"]:
        sys.exit(1)


@backtest.command("compare")
@click.argument("run_ids", nargs=-1, type=int, required=True)
@_JSON
@user_errors
def bt_compare(run_ids, as_json) -> None:
    """Metrics of two or more runs side by side."""
    if len(run_ids) < 2:
        raise PgtradeError("compare takes two or more run ids")
    with connect() as conn:
        runs = [_rep().fetch_run(conn, i) for i in run_ids]
    if as_json:
        emit_json(_plain([{k: r[k] for k in ("id", "strategy", "symbols", "interval", "start_ts", "end_ts", "params",
                                       "status", "error", "metrics")} for r in runs]))  # fmt: skip
        return
    t = Table(title="backtest runs compared")
    t.add_column("")
    for r in runs:
        t.add_column(f"run {r['id']}", justify="right")
    t.add_row("strategy", *[r["strategy"] for r in runs])
    t.add_row("symbols", *[",".join(r["symbols"]) for r in runs])
    t.add_row("interval", *[r["interval"] for r in runs])
    t.add_row("range", *[_range(r) for r in runs])
    t.add_row("status", *[r["status"] for r in runs])
    keys = sorted({k for r in runs for k in r["params"]})
    for k in keys:
        vals = [json.dumps(r["params"].get(k)) for r in runs]
        if len(set(vals)) > 1:  # only the parameters that differ
            t.add_row(f"param {k}", *vals)
    flat = [_rep().flat_metrics(r["metrics"]) for r in runs]
    keys = _rep().metric_keys(flat)
    keys = [k for k in keys if "." not in k] + [k for k in keys if "." in k]  # the benchmark's after the run's own
    for k in keys:
        t.add_row(k, *[_num(f.get(k)) for f in flat])
    console.print(t)


@backtest.command("report")
@click.argument("run_id", type=int)
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, writable=True, path_type=Path))
@user_errors
def bt_report(run_id, out: Path) -> None:
    """Write a self-contained HTML report of a run (equity vs buy and hold, drawdown, trades, monthly returns,
    metrics)."""
    with connect() as conn, console.status(f"writing the report of run {run_id}"):
        size = _rep().write_report(conn, run_id, out)
    console.print(f"run {run_id} -> {out} ({size:,} bytes)", highlight=False)


@backtest.command("strategies")
@_JSON
@user_errors
def bt_strategies(as_json) -> None:
    """The registered strategies, their default parameters and default grids."""
    with connect() as conn:
        rows = (
            conn.cursor(row_factory=dict_row)
            .execute("SELECT name, description, defaults, grid FROM backtest.strategies ORDER BY name")
            .fetchall()
        )
    if as_json:
        emit_json(rows)
        return
    t = Table(title="strategies")
    for c in ("name", "defaults", "description"):
        t.add_column(c)
    for r in rows:
        t.add_row(r["name"], json.dumps(r["defaults"]), r["description"])
    console.print(t)
