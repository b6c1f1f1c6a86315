"""``pgtrade order|orders|positions|portfolio|events``: trading from the command line (registered on the CLI).

The CLI connects as the database owner (like every other command, and like a psql user) and calls the trading.*
procedures directly; the REST API's account checks are for web roles. A rejected order is recorded by the database
and reported here in one line with exit status 1.
"""

from __future__ import annotations

import json
import sys
import time
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

import click
from psycopg.rows import dict_row, tuple_row
from rich.table import Table

from .cli import console, emit_json, err_console, main, user_errors
from .db import connect
from .errors import PgtradeError

_ACCOUNT = click.option("--account", default="default", show_default=True, help="Trading account name.")
_JSON = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _price(ctx, param, value):
    if value is None:
        return None
    try:
        d = Decimal(value)
    except InvalidOperation:
        raise click.BadParameter(f"not a number: {value!r}") from None
    return d


def _account_id(conn, name: str) -> int:
    row = (
        conn.cursor(row_factory=tuple_row)
        .execute("SELECT id FROM trading.accounts WHERE name = %s", (name,))
        .fetchone()
    )
    if row is None:
        raise PgtradeError(f"unknown account {name!r} (create it: SELECT trading.create_account('{name}', 100000))")
    return row[0]


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, Decimal):
        return f"{v.normalize():f}" if v == v.to_integral() or abs(v) >= 1 else f"{v:f}"
    if hasattr(v, "strftime"):
        return v.strftime("%Y-%m-%d %H:%M:%S")
    return str(v)


# Money on screen: amounts in cents, prices at the instrument's tick (market.instruments.tick_size), both rounded
# half away from zero (Decimal's ROUND_HALF_UP), as PostgreSQL's round(numeric) rounds commissions. --json prints
# the stored values exactly instead.
MONEY = frozenset(
    {
        "cash",
        "positions_value",
        "total_value",
        "realized_pnl",
        "unrealized_pnl",
        "commissions",
        "initial_cash",
        "net_pnl",
        "gross_exposure",
        "market_value",
    }
)
PRICES = frozenset({"avg_price", "last_price", "limit_price", "stop_price", "avg_fill_price", "est_price"})
_CENT = Decimal("0.01")


def money(v) -> str:
    """An amount in cents: 92547.99772 -> 92548.00."""
    if v is None:
        return ""
    return f"{Decimal(v).quantize(_CENT, rounding=ROUND_HALF_UP):f}"


def at_tick(v, tick) -> str:
    """A price rounded to the nearest multiple of tick, with the tick's decimals: 451.095435 at 0.01 -> 451.10."""
    if v is None:
        return ""
    if tick is None:  # a rejected order for an unknown symbol
        return _fmt(v)
    tick = Decimal(tick)
    rounded = (Decimal(v) / tick).to_integral_value(rounding=ROUND_HALF_UP) * tick
    places = max(0, -tick.normalize().as_tuple().exponent)
    return f"{rounded:.{places}f}"


def _cell(column: str, row: dict) -> str:
    v = row.get(column)
    if column in MONEY:
        return money(v)
    if column in PRICES:
        return at_tick(v, row.get("tick_size"))
    return _fmt(v)


def _table(title: str, rows: list[dict], columns) -> Table:
    table = Table(title=title)
    for c in columns:
        table.add_column(
            c,
            justify="right" if c in {"id", "qty", "filled_qty"} or c in MONEY or c in PRICES else "left",
        )
    for r in rows:
        table.add_row(*(_cell(c, r) for c in columns))
    return table


def _exact(rows):
    """Rows for --json: the stored values, without the tick the tables round to."""
    if isinstance(rows, list):
        return [_exact(r) for r in rows]
    return {k: v for k, v in rows.items() if k != "tick_size"}


# ---------------------------------------------------------------------------------------------------- order
@main.group()
def order() -> None:
    """Place and cancel orders (trading.place_order / trading.cancel_order)."""


def _place(
    side: str, symbol: str, qty: Decimal, limit, stop, stop_loss, take_profit, tif, client_id, account, as_json
) -> None:
    type_ = (
        "stop_limit"
        if limit is not None and stop is not None
        else ("limit" if limit is not None else "stop" if stop is not None else "market")
    )
    with connect() as conn:
        conn.row_factory = dict_row
        acct = _account_id(conn, account)
        row = conn.execute(
            "SELECT o.*, i.tick_size FROM trading.place_order(%s, %s, %s, %s::numeric, %s, %s::numeric,"
            " %s::numeric, %s, %s, %s::numeric, %s::numeric, 'manual') o"
            " LEFT JOIN market.instruments i ON i.symbol = o.symbol",
            (acct, symbol, side, qty, type_, limit, stop, tif, client_id, stop_loss, take_profit),
        ).fetchone()
        conn.commit()  # a rejection is recorded too
    if as_json:
        emit_json(_exact(row))
    if row["status"] == "rejected":
        if not as_json:
            err_console.print(
                f"[red]rejected:[/red] order {row['id']} {row['reject_code']} {row['reject_reason']}",
                highlight=False,
                soft_wrap=True,
            )
        sys.exit(1)
    if not as_json:
        price = f" at {at_tick(row['avg_fill_price'], row['tick_size'])}" if row["avg_fill_price"] is not None else ""
        console.print(
            f"order {row['id']} {row['status']}: {row['side']} {_fmt(row['qty'])} {row['symbol']} {row['type']}{price}",
            highlight=False,
        )


def _order_command(side: str):
    @order.command(side)
    @click.argument("symbol")
    @click.argument("qty", callback=_price)
    @click.option("--limit", callback=_price, help="Limit price (a limit order; with --stop a stop-limit).")
    @click.option("--stop", callback=_price, help="Stop price (a stop order; with --limit a stop-limit).")
    @click.option("--stop-loss", callback=_price, help="Bracket: stop price of the stop-loss child.")
    @click.option("--take-profit", callback=_price, help="Bracket: limit price of the take-profit child.")
    @click.option("--tif", type=click.Choice(["day", "gtc"]), default="day", show_default=True, help="Time in force.")
    @click.option("--client-id", help="Client order id: resending it returns the same order.")
    @_ACCOUNT
    @_JSON
    @user_errors
    def cmd(symbol, qty, limit, stop, stop_loss, take_profit, tif, client_id, account, as_json):
        _place(side, symbol, qty, limit, stop, stop_loss, take_profit, tif, client_id, account, as_json)

    cmd.__doc__ = (
        f"{side.capitalize()} QTY of SYMBOL: market by default, limit/stop/stop-limit with --limit/--stop. "
        "A rejected order is recorded and printed in one line (exit status 1)."
    )
    return cmd


order_buy = _order_command("buy")
order_sell = _order_command("sell")


@order.command("cancel")
@click.argument("order_id", type=int)
@_JSON
@user_errors
def order_cancel(order_id: int, as_json: bool) -> None:
    """Cancel an open order (the filled part stays)."""
    with connect() as conn:
        conn.row_factory = dict_row
        row = conn.execute("SELECT * FROM trading.cancel_order(%s)", (order_id,)).fetchone()
        conn.commit()
    if as_json:
        emit_json(row)
    else:
        console.print(
            f"order {row['id']} {row['status']} (filled {_fmt(row['filled_qty'])} of {_fmt(row['qty'])})",
            highlight=False,
        )


# ---------------------------------------------------------------------------------------------------- reads
@main.command("orders")
@click.option("--status", type=click.Choice(["open", "all"]), default="open", show_default=True)
@click.option("--limit", "limit_", type=int, default=50, show_default=True, help="Most recent orders shown.")
@_ACCOUNT
@_JSON
@user_errors
def orders_cmd(status: str, limit_: int, account: str, as_json: bool) -> None:
    """List the account's orders (open ones by default), newest first."""
    with connect() as conn:
        conn.row_factory = dict_row
        acct = _account_id(conn, account)
        rows = conn.execute(
            "SELECT o.*, i.tick_size FROM trading.orders o LEFT JOIN market.instruments i ON i.symbol = o.symbol"
            " WHERE o.account_id = %s AND (%s = 'all' OR o.status IN ('accepted', 'partially_filled'))"
            " ORDER BY o.id DESC LIMIT %s",
            (acct, status, limit_),
        ).fetchall()
    if as_json:
        emit_json(_exact(rows))
        return
    columns = ["id", "symbol", "side", "type", "qty", "filled_qty", "limit_price", "stop_price", "tif", "status"]
    if status == "all":
        columns += ["avg_fill_price", "reject_code"]
    console.print(_table(f"{status} orders of {account}", rows, columns))


@main.command("positions")
@click.option("--all", "show_all", is_flag=True, help="Closed positions too (qty 0, realized P&L kept).")
@_ACCOUNT
@_JSON
@user_errors
def positions_cmd(show_all: bool, account: str, as_json: bool) -> None:
    """List the account's positions with mark price and P&L."""
    with connect() as conn:
        conn.row_factory = dict_row
        acct = _account_id(conn, account)
        # valued by the valuation rule, as trading.portfolio values them
        rows = conn.execute(
            "SELECT p.symbol, p.qty, p.avg_price, p.last_price, v.value AS market_value, v.unrealized_pnl,"
            " p.realized_pnl, p.commissions, p.last_price_at, i.tick_size"
            " FROM trading.positions p JOIN trading.position_values v USING (account_id, symbol)"
            " JOIN market.instruments i ON i.symbol = p.symbol"
            " WHERE p.account_id = %s AND (%s OR p.qty <> 0) ORDER BY p.symbol",
            (acct, show_all),
        ).fetchall()
    if as_json:
        emit_json(_exact(rows))
        return
    console.print(
        _table(
            f"positions of {account}",
            rows,
            [
                "symbol",
                "qty",
                "avg_price",
                "last_price",
                "market_value",
                "unrealized_pnl",
                "realized_pnl",
                "commissions",
            ],
        )
    )


@main.command("portfolio")
@_ACCOUNT
@_JSON
@user_errors
def portfolio_cmd(account: str, as_json: bool) -> None:
    """Cash, positions value, total, realized and unrealized P&L, commissions of the account."""
    with connect() as conn:
        conn.row_factory = dict_row
        acct = _account_id(conn, account)
        row = conn.execute("SELECT * FROM trading.portfolio(%s)", (acct,)).fetchone()
        paused = conn.execute("SELECT paused FROM trading.accounts WHERE id = %s", (acct,)).fetchone()["paused"]
    row = {"account": account, **row, "paused": paused}
    if as_json:
        emit_json(row)
        return
    table = Table(title=f"portfolio of {account}", show_header=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for k in row:
        table.add_row(k, _cell(k, row))
    console.print(table)


# ---------------------------------------------------------------------------------------------------- events
@main.group()
def events() -> None:
    """Trading events (the trading.events outbox, NOTIFY pgtrade_events)."""


@events.command("follow")
@click.option("--account", help="Only this account's events (default: every account).")
@click.option("--max-events", type=int, help="Stop after this many events.")
@click.option("--timeout", type=float, help="Stop after this many seconds.")
@_JSON
@user_errors
def events_follow(account: str | None, max_events: int | None, timeout: float | None, as_json: bool) -> None:
    """Print events as they happen (LISTEN pgtrade_events); Ctrl-C stops."""
    deadline = time.monotonic() + timeout if timeout is not None else None
    seen = 0
    with connect(autocommit=True) as conn:
        acct = _account_id(conn, account) if account else None
        conn.execute("LISTEN pgtrade_events")
        if not as_json:
            err_console.print(
                f"listening for events{' of ' + account if account else ''} (Ctrl-C stops)", highlight=False
            )
        try:
            while max_events is None or seen < max_events:
                wait = None if deadline is None else deadline - time.monotonic()
                if wait is not None and wait <= 0:
                    break
                # drain the notifications first: the generator holds the connection, no query may run inside it
                notes = list(conn.notifies(timeout=min(wait, 1.0) if wait is not None else 1.0, stop_after=1))
                for note in notes:
                    if max_events is not None and seen >= max_events:
                        break
                    payload = json.loads(note.payload)
                    if acct is not None and payload.get("account_id") != acct:
                        continue
                    with conn.cursor(row_factory=dict_row) as cur:
                        ev = cur.execute(
                            "SELECT e.id, a.name AS account, e.kind, e.order_id, e.ts, e.payload"
                            " FROM trading.events e JOIN trading.accounts a ON a.id = e.account_id WHERE e.id = %s",
                            (payload["id"],),
                        ).fetchone()
                    if ev is None:
                        continue
                    seen += 1
                    if as_json:
                        click.echo(json.dumps(ev, default=str))
                    else:
                        console.print(
                            f"{_fmt(ev['ts'])} {ev['account']} {ev['kind']} order {ev['order_id']} "
                            f"{json.dumps(ev['payload'], default=str)}",
                            highlight=False,
                            soft_wrap=True,
                        )
        except KeyboardInterrupt:
            pass
