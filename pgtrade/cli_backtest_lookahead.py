"""``pgtrade backtest lookahead-check``: re-decide bars with the data cut after each of them (backtest.lookahead_check).

Thin: the check runs in the database; this module passes the arguments, prints the decisions that differ and exits
non-zero when there is any.
"""

from __future__ import annotations

import json
import re
import sys

import click
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from rich.table import Table

from .cli import console, emit_json, err_console, user_errors
from .cli_backtest import backtest
from .db import connect
from .errors import PgtradeError


def parse_params(items: tuple[str, ...]) -> dict:
    """--param k=v ...: each value as JSON when it parses (numbers, true/false, null, "text", [..], {..}), else text."""
    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise PgtradeError(f"--param takes KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _symbols(value: str) -> list[str]:
    syms = [s.strip().upper() for s in value.split(",") if s.strip()]
    if not syms:
        raise PgtradeError("--symbols: give one symbol or several, comma-separated")
    return syms


@backtest.command("lookahead-check")
@click.option("--strategy", required=True, help="A registered strategy (backtest.strategies).")
@click.option("--symbols", required=True, help="One symbol or several, comma-separated.")
@click.option("--start", required=True, help="First bar time of the range (inclusive), e.g. 2010-01-01.")
@click.option("--end", required=True, help="End of the range (exclusive).")
@click.option("--interval", default="1d", show_default=True)
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="A strategy or engine parameter (repeat).")
@click.option("--samples", type=click.IntRange(min=1), default=None, help="Bar times to check (default: every bar).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@user_errors
def lookahead_check(strategy, symbols, start, end, interval, params, samples, as_json) -> None:
    """Re-decide bars with the data cut just after each of them; list every decision that differs from the full run.

    Exit status 1 when any decision differs (the strategy looks ahead), 0 when none does.
    """
    notices: list[str] = []
    with connect() as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        with conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                "SELECT * FROM backtest.lookahead_check(%s, %s, %s, %s::timestamptz, %s::timestamptz, %s, %s)",
                (strategy, _symbols(symbols), interval, start, end, Jsonb(parse_params(params)), samples),
            ).fetchall()
    summary = next((n for n in reversed(notices) if n.startswith("look-ahead check")), "")
    counts = re.search(r"(\d+) bar time\(s\) checked", summary)
    if as_json:
        emit_json(
            {
                "strategy": strategy,
                "checked": int(counts.group(1)) if counts else None,
                "lookahead": bool(rows),
                "differences": rows,
                "summary": summary,
            }
        )
    else:
        if rows:
            cols = (
                "full_target",
                "truncated_target",
                "full_stop_loss",
                "truncated_stop_loss",
                "full_take_profit",
                "truncated_take_profit",
            )
            table = Table(title=f"decisions of {strategy} that change when the later bars are removed")
            table.add_column("symbol")
            table.add_column("ts")
            for col in cols:
                table.add_column(col, justify="right")
            for r in rows:
                table.add_row(r["symbol"], r["ts"].isoformat(), *("" if r[c] is None else str(r[c]) for c in cols))
            console.print(table)
            err_console.print(f"[red]look-ahead:[/red] {summary}", highlight=False)
        else:
            console.print(f"no look-ahead found: {summary}", highlight=False)
    if rows:
        sys.exit(1)
