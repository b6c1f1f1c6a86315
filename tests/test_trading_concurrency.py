"""Many connections racing on one account never overspend cash or oversell shares (committed work)."""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg
import pytest
from trading_support import T0, account, advance, bars, instrument, order

N = 24


def _race(db_url: str, fn) -> list:
    barrier = threading.Barrier(N)
    results: list = [None] * N

    def worker(i: int) -> None:
        with psycopg.connect(db_url) as conn:
            barrier.wait()
            results[i] = fn(conn, i)
            conn.commit()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.fixture
def setup(db_url, unique_symbol):
    with psycopg.connect(db_url) as conn:
        instrument(conn, unique_symbol)
        bars(conn, unique_symbol, [(100, 100, 100, 100)] * 2)
        a = account(conn, f"race-{unique_symbol}", cash="1000")
        advance(conn, a, T0 + timedelta(minutes=2))
        conn.commit()
    return a, unique_symbol


def test_racing_buys_never_overspend(db_url, setup):
    a, sym = setup
    res = _race(db_url, lambda conn, i: order(conn, a, sym, "buy", 1)["status"])  # 24 x 100 against 1,000
    with psycopg.connect(db_url) as conn:
        (cash,) = conn.execute("SELECT cash FROM trading.accounts WHERE id = %s", (a,)).fetchone()
        (qty,) = conn.execute("SELECT qty FROM trading.positions WHERE account_id = %s", (a,)).fetchone()
        (spent,) = conn.execute("SELECT sum(qty * price) FROM trading.fills WHERE account_id = %s", (a,)).fetchone()
    assert (cash, qty, spent) == (0, 10, 1000)
    assert res.count("filled") == 10 and res.count("rejected") == N - 10


def test_racing_sells_never_oversell(db_url, setup):
    a, sym = setup
    with psycopg.connect(db_url) as conn:
        assert order(conn, a, sym, "buy", 10)["status"] == "filled"
        conn.commit()
    res = _race(db_url, lambda conn, i: order(conn, a, sym, "sell", 1)["status"])
    assert res.count("filled") == 10 and res.count("rejected") == N - 10
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT qty FROM trading.positions WHERE account_id = %s", (a,)).fetchone()[0] == 0
        codes = conn.execute(
            "SELECT DISTINCT reject_code FROM trading.orders WHERE account_id = %s AND status = 'rejected'", (a,)
        ).fetchall()
        assert codes == [("TR002",)]


def test_racing_same_client_order_id_makes_one_order(db_url, setup):
    a, sym = setup
    res = _race(db_url, lambda conn, i: order(conn, a, sym, "buy", 1, client_order_id="same")["id"])
    assert len(set(res)) == 1
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM trading.fills WHERE account_id = %s", (a,)).fetchone()[0] == 1


def test_check_constraints_are_the_last_line(db, setup):
    a, sym = setup
    with pytest.raises(psycopg.errors.CheckViolation):
        with db.transaction():
            db.execute("UPDATE trading.accounts SET cash = -1 WHERE id = %s", (a,))
    db.execute("SELECT trading.configure_account(%s, '{\"allow_short\": true}')", (a,))
    assert order(db, a, sym, "sell", 1)["status"] == "filled"
    with pytest.raises(psycopg.errors.CheckViolation):  # cannot forbid shorting while short
        with db.transaction():
            db.execute("SELECT trading.configure_account(%s, '{\"allow_short\": false}')", (a,))
