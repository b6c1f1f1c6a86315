"""Helpers for the backtest tests: run a backtest through backtest.run and read back what it wrote."""

from __future__ import annotations

import json
from datetime import datetime

import psycopg
from psycopg.rows import dict_row

from loaders.sample import load_sample


def ensure_sample(conn: psycopg.Connection, symbol: str = "GOOG") -> None:
    """Load a bundled series if the test database does not hold it yet (committed: the sample is shared data)."""
    if conn.execute("SELECT count(*) FROM market.bars WHERE symbol = %s", (symbol,)).fetchone()[0] == 0:
        load_sample(conn, symbols=[symbol])
        conn.commit()


def run(
    conn: psycopg.Connection,
    strategy: str,
    symbols: list[str],
    interval: str,
    start: datetime | str,
    end: datetime | str,
    params: dict | None = None,
    *,
    mode: str = "auto",
) -> dict:
    """backtest.run; the run row as a dict (raises if the run failed, with its error)."""
    row = conn.execute(
        "SELECT * FROM backtest.run(%s, %s, %s, %s, %s, %s::jsonb, %s)",
        (strategy, symbols, interval, start, end, json.dumps(params or {}), mode),
        prepare=False,
    )
    cur = conn.cursor(row_factory=dict_row)
    r = cur.execute("SELECT * FROM backtest.runs WHERE id = %s", (row.fetchone()[0],)).fetchone()
    assert r["status"] == "done", r["error"]
    return r


# What a run's account holds, table by table, in a form two accounts can be compared in: ids replaced by their rank
# within the account (orders, fills), bookkeeping columns (recorded_at, created_at of events) left out.
ACCOUNT_TABLES = {
    "orders": """SELECT rank() OVER (ORDER BY o.id) AS n, o.symbol, o.side, o.type, o.qty, o.filled_qty,
                        o.avg_fill_price, o.limit_price, o.stop_price, o.tif, o.status, o.reject_code, o.source,
                        o.est_price, o.last_bar_ts, o.accepted_at, o.expires_at, o.created_at, o.updated_at,
                        o.closed_at, o.stop_loss, o.take_profit
                 FROM trading.orders o WHERE o.account_id = %(a)s ORDER BY o.id""",
    "order_history": """SELECT dense_rank() OVER (ORDER BY h.order_id) AS o, h.ts, h.status, h.filled_qty, h.reason
                        FROM trading.order_history h JOIN trading.orders o ON o.id = h.order_id
                        WHERE o.account_id = %(a)s ORDER BY h.order_id, h.id""",
    "fills": """SELECT f.symbol, f.side, f.qty, f.price, f.ref_price, f.commission, f.slippage, f.realized_pnl,
                       f.bar_ts, f.ts
                FROM trading.fills f WHERE f.account_id = %(a)s ORDER BY f.id""",
    "positions": """SELECT p.symbol, p.qty, p.cost_basis, p.realized_pnl, p.commissions, p.last_price, p.last_price_at,
                           p.opened_at, p.updated_at, p.closed_at
                    FROM trading.positions p WHERE p.account_id = %(a)s ORDER BY p.symbol""",
    "position_history": """SELECT h.symbol, h.ts, h.qty, h.cost_basis, h.realized_pnl
                           FROM trading.position_history h WHERE h.account_id = %(a)s ORDER BY h.id""",
    "cash_ledger": """SELECT l.ts, l.cause, l.amount, l.balance, l.note
                      FROM trading.cash_ledger l WHERE l.account_id = %(a)s ORDER BY l.id""",
    "events": """SELECT e.kind, e.ts, e.payload - 'fill_id' AS payload
                 FROM trading.events e WHERE e.account_id = %(a)s ORDER BY e.id""",
    "snapshots": """SELECT s.ts, s.cash, s.positions_value, s.total_value, s.realized_pnl, s.unrealized_pnl,
                           s.commissions, s.peak_value, s.drawdown
                    FROM trading.portfolio_snapshots s WHERE s.account_id = %(a)s ORDER BY s.ts""",
    "account": """SELECT a.cash, a.realized_pnl, a.commissions, a.clock_ts, a.initial_cash
                  FROM trading.accounts a WHERE a.id = %(a)s""",
}


def account_rows(conn: psycopg.Connection, account_id: int) -> dict[str, list[tuple]]:
    return {name: conn.execute(q, {"a": account_id}).fetchall() for name, q in ACCOUNT_TABLES.items()}


def backtesting_py_sma(df, fast: int, slow: int, *, cash: float, commission: float):
    """backtesting.py's run of the SMA crossover of its documentation, long only: buy() with the default size (the
    whole equity) on the cross up, position.close() on the cross down, orders at the next open, open trades left
    open (finalize_trades=False). df: Open/High/Low/Close/Volume indexed by time. Returns backtesting.py's stats.
    The one reference run of the tests (test_backtest_reference, test_backtest_golden) and bench/backtest_bench.py."""
    import time
    import warnings

    import pandas as pd
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover

    def sma(values, n):
        return pd.Series(values).rolling(n).mean()

    class SmaCross(Strategy):
        def init(self):
            self.f = self.I(sma, self.data.Close, fast)
            self.s = self.I(sma, self.data.Close, slow)

        def next(self):
            if crossover(self.f, self.s):
                if not self.position:
                    self.buy()
            elif crossover(self.s, self.f):
                self.position.close()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # backtesting.py warns about the trade left open (finalize_trades=False)
        bt = Backtest(df, SmaCross, cash=cash, commission=commission, finalize_trades=False)
        t, c = time.perf_counter(), time.process_time()
        stats = bt.run()
        return stats, time.perf_counter() - t, time.process_time() - c
