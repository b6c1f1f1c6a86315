"""``pgtrade backtest grid`` and ``pgtrade backtest walk-forward``: many runs at once over several connections.

Thin: the grid points, the windows and the selection rule are SQL (db/procedures/backtest_grid.sql,
backtest_walk_forward.sql); pgtrade/backtest_parallel.py runs the independent calls in parallel.
"""

from __future__ import annotations

import json
from decimal import Decimal

import click
from psycopg.rows import dict_row
from rich.table import Table

from . import backtest_parallel
from .cli import _progress, console, emit_json, user_errors
from .cli_backtest import backtest
from .db import connect, database_url
from .errors import PgtradeError


def _value(text: str):
    """A parameter value: JSON when it parses (5, 0.5, true, "x"), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _params(items: tuple[str, ...]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise PgtradeError(f"--param expects KEY=VALUE, got {item!r}")
        out[key.strip()] = _value(value.strip())
    return out


def _grid(items: tuple[str, ...]) -> dict | None:
    if not items:
        return None
    out = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise PgtradeError(f"--grid expects NAME=V1,V2,..., got {item!r}")
        out[key.strip()] = [_value(v.strip()) for v in values.split(",") if v.strip()]
    return out


def _symbols(value: str) -> list[str]:
    syms = [s.strip().upper() for s in value.split(",") if s.strip()]
    if not syms:
        raise click.BadParameter("give one symbol or several, comma-separated")
    return syms


def _plain(row: dict) -> dict:
    """A row for --json: numeric columns as JSON numbers (the metrics already are), not strings."""
    return {k: float(v) if isinstance(v, Decimal) else v for k, v in row.items()}


def _pct(v) -> str:
    return "" if v is None else f"{100 * float(v):.2f}%"


def _num(v, places: int = 3) -> str:
    return "" if v is None else f"{float(v):.{places}f}"


def _common(fn):
    for option in reversed(
        [
            click.option("--strategy", required=True, help="A registered strategy (backtest.strategies)."),
            click.option("--symbols", required=True, callback=lambda c, p, v: _symbols(v), help="Comma-separated."),
            click.option("--start", required=True, help="First bar time (inclusive), e.g. 2005-01-01."),
            click.option("--end", required=True, help="End time (exclusive)."),
            click.option("--interval", default="1d", show_default=True),
            click.option("--param", "param", multiple=True, help="Base parameter KEY=VALUE (repeatable)."),
            click.option(
                "--grid", "grid", multiple=True, help="Grid NAME=V1,V2,... (repeatable; default: the strategy's)."
            ),
            click.option(
                "--objective",
                default="sharpe",
                show_default=True,
                help="Metric the best run maximizes (-name: minimizes); total_return when no run reports it.",
            ),
            click.option("--jobs", default=1, show_default=True, type=click.IntRange(1, 64), help="Connections."),
            click.option("--json", "as_json", is_flag=True, help="Machine-readable output."),
        ]
    ):
        fn = option(fn)
    return fn


@backtest.command("grid")
@_common
@user_errors
def grid_cmd(strategy, symbols, start, end, interval, param, grid, objective, jobs, as_json) -> None:
    """Run a parameter grid: one isolated run per point, JOBS at a time; the runs and the best one."""
    url = database_url()
    with connect(url):  # a clear one-line error when the database is not there
        pass
    with _progress(as_json) as progress:
        task = progress.add_task("grid runs", total=None)
        batch = backtest_parallel.grid(
            url,
            strategy=strategy,
            symbols=symbols,
            interval=interval,
            start=start,
            end=end,
            params=_params(param),
            grid=_grid(grid),
            objective=objective,
            jobs=jobs,
            progress=lambda n: progress.update(task, advance=n),
            on_total=lambda n: progress.update(task, total=n),
        )
    with connect(url) as conn:
        cur = conn.cursor(row_factory=dict_row)
        parent = cur.execute("SELECT * FROM backtest.runs WHERE id = %s", (batch.run_id,)).fetchone()
        children = cur.execute(
            "SELECT r.id, r.status, r.error, r.params, r.metrics FROM unnest(%s::bigint[]) WITH ORDINALITY x(id, k)"
            " JOIN backtest.runs r ON r.id = x.id ORDER BY x.k",
            (batch.results,),
        ).fetchall()
    keys = list(parent["params"]["grid"])
    rate = len(children) / batch.seconds if batch.seconds > 0 else None
    if as_json:
        emit_json(
            {
                "run_id": parent["id"],
                "status": parent["status"],
                "metrics": parent["metrics"],
                "jobs": jobs,
                "seconds": round(batch.seconds, 3),
                "runs_per_second": rate and round(rate, 3),
                "runs": [
                    {
                        "id": c["id"],
                        "status": c["status"],
                        "error": c["error"],
                        "point": {k: c["params"].get(k) for k in keys},
                        "metrics": c["metrics"],
                    }
                    for c in children
                ],
            }
        )
        return
    m = parent["metrics"] or {}
    table = Table(title=f"grid run {parent['id']}: {strategy} {','.join(symbols)} {interval} [{start}, {end})")
    for col in ("run", *keys, "status", "total return", "sharpe", "max drawdown", "fills"):
        table.add_column(col)
    for c in children:
        cm = c["metrics"] or {}
        best = c["id"] == m.get("best_run_id")
        table.add_row(
            f"{c['id']}{' *' if best else ''}",
            *(json.dumps(c["params"].get(k)) for k in keys),
            c["status"],
            _pct(cm.get("total_return")),
            _num(cm.get("sharpe")),
            _pct(cm.get("max_drawdown")),
            str(cm.get("fills", "")),
        )
    console.print(table)
    console.print(
        f"{m.get('done', 0)} of {m.get('runs', 0)} runs done in {batch.seconds:.2f} s on {jobs} connection(s)"
        f" = {rate:.2f} runs/s; best by {m.get('objective')}: run {m.get('best_run_id')}"
        f" {json.dumps(m.get('best_params'))}"
    )


@backtest.command("walk-forward")
@_common
@click.option("--train", default="504", show_default=True, help="Train window: bars (504) or an interval ('2 years').")
@click.option("--test", default="126", show_default=True, help="Test window, as --train.")
@click.option("--purge", default="0", show_default=True, help="Gap between train and test, as --train.")
@click.option("--anchored", is_flag=True, help="Train windows keep their start and grow (default: rolling).")
@click.option("--model-kind", default=None, help="ML strategy: the model kind trained per window (default logreg).")
@click.option("--model-param", multiple=True, help="ML strategy: model parameter KEY=VALUE (repeatable).")
@user_errors
def walk_forward_cmd(
    strategy,
    symbols,
    start,
    end,
    interval,
    param,
    grid,
    objective,
    jobs,
    as_json,
    train,
    test,
    purge,
    anchored,
    model_kind,
    model_param,
) -> None:
    """Walk-forward: choose on each train window (grid search, or train a model), trade the next test window."""
    url = database_url()
    with connect(url) as conn:
        is_ml = conn.execute(
            "SELECT defaults ? 'model_id' FROM backtest.strategies WHERE name = %s", (strategy,)
        ).fetchone()
    ml = None
    if (is_ml and is_ml[0]) or model_kind or model_param:
        ml = {"params": _params(model_param)} | ({"kind": model_kind} if model_kind else {})
    with _progress(as_json) as progress:
        task = progress.add_task("train steps", total=None)
        batch = backtest_parallel.walk_forward(
            url,
            strategy=strategy,
            symbols=symbols,
            interval=interval,
            start=start,
            end=end,
            params=_params(param),
            train=train,
            test=test,
            purge=purge,
            anchored=anchored,
            grid=_grid(grid),
            objective=objective,
            ml=ml,
            jobs=jobs,
            progress=lambda n: progress.update(task, advance=n),
            on_total=lambda n: progress.update(task, total=n),
        )
    with connect(url) as conn:
        cur = conn.cursor(row_factory=dict_row)
        parent = cur.execute("SELECT * FROM backtest.runs WHERE id = %s", (batch.run_id,)).fetchone()
        windows = cur.execute(
            "SELECT * FROM backtest.walk_forward_windows WHERE run_id = %s ORDER BY n", (batch.run_id,)
        ).fetchall()
        equity = cur.execute("SELECT * FROM backtest.walk_forward_equity(%s)", (batch.run_id,)).fetchall()
    m = parent["metrics"] or {}
    if as_json:
        emit_json(
            {
                "run_id": parent["id"],
                "status": parent["status"],
                "error": parent["error"],
                "metrics": m,
                "jobs": jobs,
                "seconds": round(batch.seconds, 3),
                "windows": [_plain(w) for w in windows],
                "equity": [{"ts": e["ts"], "window": e["n"], "total_value": float(e["total_value"])} for e in equity],
            }
        )
        return
    table = Table(title=f"walk-forward run {parent['id']}: {strategy} {','.join(symbols)} {interval} [{start}, {end})")
    for col in ("n", "train", "test", "bars tr/pg/te", "chosen", "train score", "test return", "end equity"):
        table.add_column(col)
    for w in windows:
        chosen = json.dumps(w["chosen_params"]) if w["chosen_params"] is not None else ""
        tm = w["test_metrics"] or {}
        table.add_row(
            str(w["n"]),
            f"{w['train_from']:%Y-%m-%d}..{w['train_until']:%Y-%m-%d}",
            f"{w['test_from']:%Y-%m-%d}..{w['test_until']:%Y-%m-%d}",
            f"{w['train_bars']}/{w['purge_bars']}/{w['test_bars']}",
            chosen,
            f"{_num(w['train_score'], 4)} {w['objective'] or ''}".strip(),
            _pct(tm.get("total_return")),
            _num(w["end_equity"], 2),
        )
    console.print(table)
    if parent["status"] != "done":
        raise PgtradeError(f"walk-forward run {parent['id']} failed: {parent['error']}")
    console.print(
        f"stitched out-of-sample: {_num(m.get('initial_cash'), 2)} -> {_num(m.get('final_equity'), 2)}"
        f" ({_pct(m.get('total_return'))}, max drawdown {_pct(m.get('max_drawdown'))}) over {m.get('windows')} windows;"
        f" {len(batch.results)} train steps in {batch.seconds:.2f} s on {jobs} connection(s)"
    )
