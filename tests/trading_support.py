"""Helpers for the trading tests: instruments, bars, accounts and orders through the real procedures."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
from psycopg.rows import dict_row

from pgtrade.ingest import Bar, ingest

T0 = datetime(2024, 3, 4, 15, 0, tzinfo=UTC)  # a Monday, inside the New York session
D = Decimal


def instrument(
    conn: psycopg.Connection,
    symbol: str,
    *,
    qty_step: str = "1",
    asset_class: str = "stock",
    session_tz: str = "America/New_York",
    session_open: str | None = "09:30",
    session_close: str | None = "16:00",
    trades_weekends: bool = False,
) -> None:
    conn.execute(
        "SELECT market.upsert_instrument(%s::text, %s::text, %s::text, 'USD', NULL, %s::numeric, %s::text,"
        " %s::time, %s::time, %s::boolean)",
        (symbol, symbol, asset_class, qty_step, session_tz, session_open, session_close, trades_weekends),
    )


def bars(
    conn: psycopg.Connection, symbol: str, rows, *, interval: str = "1m", start: datetime = T0, source: str = "test"
) -> None:
    """rows: (open, high, low, close[, volume]) per consecutive bar from start, or (ts, o, h, l, c[, v])."""
    step = {"1m": timedelta(minutes=1), "1d": timedelta(days=1), "1h": timedelta(hours=1)}[interval]
    items = []
    for i, r in enumerate(rows):
        if isinstance(r[0], datetime):
            ts, r = r[0], r[1:]
        else:
            ts = start + i * step
        o, h, low, c = (str(x) for x in r[:4])
        v = str(r[4]) if len(r) > 4 else "1000000"
        items.append(Bar(symbol=symbol, interval=interval, ts=ts, open=o, high=h, low=low, close=c, volume=v))
    report = ingest(conn, items, source=source)
    assert report.total.rejected == 0, report.as_dict()


def account(
    conn: psycopg.Connection,
    name: str,
    *,
    cash: str = "100000",
    kind: str = "backtest",
    clock: datetime | None = T0,
    **settings,
) -> int:
    base = {"commission_rate": 0, "commission_min": 0, "slippage_bps": 0, "max_position_pct": 100}
    base.update(settings)
    row = conn.execute(
        "SELECT id FROM trading.create_account(%s, %s::numeric, %s, %s, %s::jsonb)",
        (name, cash, kind, clock, json.dumps(base, default=str)),
    ).fetchone()
    return row[0]


def order(conn: psycopg.Connection, account_id: int, symbol: str, side: str, qty, type: str = "market", **kw) -> dict:
    args = {
        "limit_price": None,
        "stop_price": None,
        "tif": "gtc",
        "client_order_id": None,
        "stop_loss": None,
        "take_profit": None,
        "source": "manual",
    } | kw
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT * FROM trading.place_order(%(a)s, %(s)s, %(side)s, %(q)s::numeric, %(t)s, %(limit_price)s::numeric,"
            " %(stop_price)s::numeric, %(tif)s, %(client_order_id)s, %(stop_loss)s::numeric,"
            " %(take_profit)s::numeric, %(source)s)",
            {
                "a": account_id,
                "s": symbol,
                "side": side,
                "q": str(qty) if qty is not None else None,
                "t": type,
                **{k: (str(v) if isinstance(v, (int, float, Decimal)) else v) for k, v in args.items()},
            },
        )
        return cur.fetchone()


def advance(conn: psycopg.Connection, account_id: int, upto: datetime) -> int:
    return conn.execute("SELECT trading.advance_clock(%s, %s)", (account_id, upto)).fetchone()[0]


def get_order(conn: psycopg.Connection, order_id: int) -> dict:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM trading.orders WHERE id = %s", (order_id,)).fetchone()


def position(conn: psycopg.Connection, account_id: int, symbol: str) -> dict | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM trading.positions WHERE account_id = %s AND symbol = %s", (account_id, symbol)
        ).fetchone()


def fills(conn: psycopg.Connection, order_id: int) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM trading.fills WHERE order_id = %s ORDER BY id", (order_id,)).fetchall()


def portfolio(conn: psycopg.Connection, account_id: int) -> dict:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM trading.portfolio(%s)", (account_id,)).fetchone()


def check_invariants(conn: psycopg.Connection, account_id: int) -> None:
    """The exact P&L identity, the ledger replay, and the cash ledger."""
    p = portfolio(conn, account_id)
    assert p["cash"] + p["positions_value"] == (
        p["initial_cash"] + p["realized_pnl"] + p["unrealized_pnl"] - p["commissions"]
    )
    stored = conn.execute(
        "SELECT symbol, qty, cost_basis, realized_pnl, commissions FROM trading.positions WHERE account_id = %s "
        "ORDER BY symbol",
        (account_id,),
    ).fetchall()
    replay = conn.execute("SELECT * FROM trading.replay_positions(%s)", (account_id,)).fetchall()
    assert stored == replay
    ledger, cash = conn.execute(
        "SELECT (SELECT sum(amount) FROM trading.cash_ledger WHERE account_id = a.id), a.cash "
        "FROM trading.accounts a WHERE a.id = %s",
        (account_id,),
    ).fetchone()
    assert ledger == cash
    # the fills alone reproduce cash and quantities
    fq = dict(
        conn.execute(
            "SELECT symbol, sum(CASE side WHEN 'buy' THEN qty ELSE -qty END) FROM trading.fills WHERE account_id = %s "
            "GROUP BY symbol",
            (account_id,),
        ).fetchall()
    )
    assert fq == {s: q for s, q, *_ in stored}
    flow = conn.execute(
        "SELECT coalesce(sum(CASE side WHEN 'buy' THEN -qty * price ELSE qty * price END - commission), 0) "
        "FROM trading.fills WHERE account_id = %s",
        (account_id,),
    ).fetchone()[0]
    assert p["initial_cash"] + flow == p["cash"]
