"""Hand-checkable backtests: a few bars, every fill, commission, cash, position and equity figure worked out by hand.

Each case builds a tiny daily series (tests/trading_support.py) and trades it with a scripted strategy created in the
test's transaction: the script names the bar dates where the target changes (decided at that bar's close, executed at
the next bar's open). The expected figures are literals, with the arithmetic beside them; the engine's rules are
docs/backtesting.md ("Engine", "The sizing rule") and the trading core's (commission rounded to cents with its
minimum on an order's first fill, slippage in basis points on market and stop fills, average-cost P&L).

The last part: for every registered strategy, changing bars after t changes no decision at or before t.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import numpy as np
import pytest
from backtest_support import run
from psycopg.rows import dict_row
from trading_support import bars, instrument

DAY0 = datetime(2024, 1, 1, tzinfo=UTC)


def day(i: int) -> datetime:
    return DAY0 + timedelta(days=i)


SCRIPT = """
CREATE FUNCTION public.hand_script(run backtest.runs) RETURNS SETOF backtest.decision
LANGUAGE sql STABLE AS $$
  -- params.script: {"YYYY-MM-DD": [target, stop_loss, take_profit], ...}: a decision at the close of that bar
  SELECT b.symbol, b.ts, (s.value->>0)::numeric, (s.value->>1)::numeric, (s.value->>2)::numeric
  FROM backtest.bars(run) b
  JOIN jsonb_each(run.params->'script') s ON s.key = to_char(b.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD')
$$;
SELECT backtest.register_strategy('hand_script', 'public.hand_script(backtest.runs)',
                                  'targets from params.script (tests)', '{"script": {}}');
"""


@pytest.fixture
def hand(db):
    db.execute(SCRIPT)
    return db


def series(conn, symbol: str, rows) -> None:
    instrument(conn, symbol)
    bars(conn, symbol, rows, interval="1d", start=DAY0)


def go(conn, symbol, n_bars, script, params, mode="auto"):
    p = {"script": {day(i).date().isoformat(): v for i, v in script.items()}} | params
    return run(conn, "hand_script", [symbol], "1d", DAY0, day(n_bars), p, mode=mode)


def fills(conn, account_id):
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT f.side, f.qty, f.price, f.ref_price, f.commission, f.slippage, f.realized_pnl, f.ts, o.source"
            " FROM trading.fills f JOIN trading.orders o ON o.id = f.order_id WHERE f.account_id = %s ORDER BY f.id",
            (account_id,),
        ).fetchall()


def pick(rows: list[dict], *cols: str) -> list[tuple]:
    return [tuple(r[c] for c in cols) for r in rows]


def equity(conn, account_id):
    """{bar close time: (cash, positions value, total)} of the run's snapshots."""
    return {
        ts: (cash, value, total)
        for ts, cash, value, total in conn.execute(
            "SELECT ts, cash, positions_value, total_value FROM trading.portfolio_snapshots WHERE account_id = %s",
            (account_id,),
        ).fetchall()
    }


def account(conn, account_id):
    return conn.execute(
        "SELECT cash, realized_pnl, commissions FROM trading.accounts WHERE id = %s", (account_id,)
    ).fetchone()


def position(conn, account_id, symbol):
    return conn.execute(
        "SELECT qty, cost_basis FROM trading.positions WHERE account_id = %s AND symbol = %s", (account_id, symbol)
    ).fetchone()


#            open  high  low  close
SERIES_A = [
    (100, 101, 99, 100),  # 0  2024-01-01
    (100, 102, 99, 101),  # 1  01-02  decision: target 1 (at the close, 101)
    (102, 104, 101, 103),  # 2  01-03  entry at this open, 102, not at the deciding close
    (104, 105, 102, 104),  # 3  01-04  decision: target 0
    (103, 106, 102, 105),  # 4  01-05  exit at this open, 103
    (106, 107, 104, 106),  # 5  01-06
]


@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_round_trip_with_slippage_and_minimum_commission(hand, mode):
    series(hand, "HANDA", SERIES_A)
    r = go(
        hand,
        "HANDA",
        6,
        {1: [1], 3: [0]},
        {"cash": 10000, "commission": 0.001, "commission_min": 12, "slippage_bps": 10},
        mode=mode,
    )
    assert r["mode"] == mode
    f = fills(hand, r["account_id"])
    # entry: bar 2's open 102 + 10 bps = 102 x 1.001 = 102.102
    #   all_in: floor(10000 / (102.102 x 1.001)) = floor(10000 / 102.204102) = floor(97.84) = 97 shares
    #   value 97 x 102.102 = 9903.894; commission 0.001 x 9903.894 = 9.90 < minimum 12 -> 12
    #   (affordable: 9903.894 + 12 = 9915.894 <= 10000); slippage (102.102 - 102) x 97 = 9.894
    # exit: bar 4's open 103 - 10 bps = 103 x 0.999 = 102.897; 97 x 102.897 = 9981.009
    #   commission 9.98 < 12 -> 12; realized 9981.009 - 9903.894 = 77.115; slippage 0.103 x 97 = 9.991
    assert pick(f, "side", "qty", "price", "ref_price", "commission", "slippage", "realized_pnl", "ts") == [
        ("buy", 97, D("102.102"), 102, 12, D("9.894"), 0, day(2)),
        ("sell", 97, D("102.897"), 103, 12, D("9.991"), D("77.115"), day(4)),
    ]
    # cash: 10000 - 9903.894 - 12 = 84.106; then 84.106 + 9981.009 - 12 = 10053.115
    assert account(hand, r["account_id"]) == (D("10053.115"), D("77.115"), 24)
    assert position(hand, r["account_id"], "HANDA") == (0, 0)
    # snapshots at each bar's close (before the orders placed at that instant, at the next open):
    assert equity(hand, r["account_id"]) == {
        day(1): (10000, 0, 10000),  # close of bar 0
        day(2): (10000, 0, 10000),  # close of bar 1: the decision's order fills at the next open
        day(3): (D("84.106"), 97 * 103, D("10075.106")),  # 84.106 + 97 x 103 (= 9991)
        day(4): (D("84.106"), 97 * 104, D("10172.106")),  # 84.106 + 97 x 104 (= 10088)
        day(5): (D("10053.115"), 0, D("10053.115")),  # flat after the exit at bar 4's open
        day(6): (D("10053.115"), 0, D("10053.115")),
    }
    # final equity = 10000 + 77.115 realized - 24 commissions
    assert D(str(r["metrics"]["final_equity"])) == D("10053.115")


def test_all_in_buys_one_share_fewer_when_the_minimum_commission_does_not_fit(hand):
    series(hand, "HANDB", [(100, 101, 99, 100), (100, 101, 99, 100), (100, 101, 99, 100)])
    r = go(hand, "HANDB", 3, {0: [1]}, {"cash": 10000, "commission": 0, "commission_min": 20})
    # all_in at the open 100: floor(10000 / (100 x (1 + 0))) = 100 shares, but 100 x 100 + 20 = 10020 > 10000;
    # one fewer: 99 x 100 + 20 = 9920 <= 10000 -> 99 shares, cash 10000 - 9900 - 20 = 80
    assert [(x["side"], x["qty"], x["price"], x["commission"]) for x in fills(hand, r["account_id"])] == [
        ("buy", 99, 100, 20)
    ]
    assert account(hand, r["account_id"])[0] == 80
    assert position(hand, r["account_id"], "HANDB") == (99, 9900)


#            open  high  low  close
SERIES_C = [
    (50, 51, 49, 50),  # 0  01-01
    (50, 51, 48, 49),  # 1  01-02  decision: target -1
    (48, 49, 46, 47),  # 2  01-03  short at this open, 48
    (46, 47, 44, 45),  # 3  01-04  decision: target 0
    (44, 45, 43, 44),  # 4  01-05  cover at this open, 44
]


@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_a_short_round_trip(hand, mode):
    series(hand, "HANDC", SERIES_C)
    params = {"cash": 10000, "commission": 0.002, "allow_short": True}
    r = go(hand, "HANDC", 5, {1: [-1], 3: [0]}, params, mode=mode)
    # short: floor(10000 / (48 x 1.002)) = floor(10000 / 48.096) = floor(207.92) = 207 shares sold at 48
    #   proceeds 207 x 48 = 9936; commission 0.002 x 9936 = 19.872 -> 19.87; cash 10000 + 9936 - 19.87 = 19916.13
    # cover: 207 bought at 44 = 9108; commission 0.002 x 9108 = 18.216 -> 18.22
    #   realized = -207 x 44 - (-9936) = 828; cash 19916.13 - 9108 - 18.22 = 10789.91
    assert pick(fills(hand, r["account_id"]), "side", "qty", "price", "commission", "realized_pnl") == [
        ("sell", 207, 48, D("19.87"), 0),
        ("buy", 207, 44, D("18.22"), 828),
    ]
    assert account(hand, r["account_id"]) == (D("10789.91"), 828, D("38.09"))  # 19.87 + 18.22
    assert equity(hand, r["account_id"]) == {
        day(1): (10000, 0, 10000),
        day(2): (10000, 0, 10000),
        day(3): (D("19916.13"), -207 * 47, D("10187.13")),  # 19916.13 - 9729
        day(4): (D("19916.13"), -207 * 45, D("10601.13")),  # 19916.13 - 9315
        day(5): (D("10789.91"), 0, D("10789.91")),  # = 10000 + 828 - 38.09
    }


def test_without_allow_short_a_negative_target_means_flat(hand):
    series(hand, "HANDC", SERIES_C)
    r = go(hand, "HANDC", 5, {1: [-1], 3: [0]}, {"cash": 10000, "commission": 0.002})
    assert fills(hand, r["account_id"]) == []
    assert account(hand, r["account_id"]) == (10000, 0, 0)


def test_fraction_sizing(hand):
    series(hand, "HANDA", SERIES_A)
    r = go(hand, "HANDA", 6, {1: [1]}, {"cash": 10000, "commission": 0.001, "sizing": "fraction", "fraction": 0.5})
    # fraction 0.5 of all_in at bar 2's open 102: floor(0.5 x 10000 / (102 x 1.001)) = floor(0.5 x 97.94) = 48
    #   cost 48 x 102 = 4896; commission 0.001 x 4896 = 4.896 -> 4.90; cash 10000 - 4896 - 4.90 = 5099.10
    assert [(x["side"], x["qty"], x["price"], x["commission"]) for x in fills(hand, r["account_id"])] == [
        ("buy", 48, 102, D("4.90"))
    ]
    assert position(hand, r["account_id"], "HANDA") == (48, 4896)
    snaps = equity(hand, r["account_id"])
    assert snaps[day(3)] == (D("5099.10"), 48 * 103, D("10043.10"))  # 5099.10 + 4944
    assert snaps[day(6)] == (D("5099.10"), 48 * 106, D("10187.10"))  # 5099.10 + 5088 (held to the end)


#            open  high  low  close
SERIES_E = [
    (100, 101, 99, 100),  # 0  01-01
    (100, 101, 99, 100),  # 1  01-02  decision: target 1, stop-loss 95, take-profit 110
    (100, 102, 98, 101),  # 2  01-03  entry at this open, 100; the bracket children rest (low 98 > 95)
    (99, 100, 94, 96),  # 3  01-04  low 94 <= 95: the stop-loss triggers, fills at 95; decision: target 0
    (96, 97, 95, 96),  # 4  01-05  the exit decision finds no position: no order
]


def test_risk_sizing_with_a_bracket_stop_loss_that_fills(hand):
    series(hand, "HANDE", SERIES_E)
    r = go(
        hand,
        "HANDE",
        5,
        {1: [1, 95, 110], 3: [0]},
        {"cash": 10000, "commission": 0.001, "sizing": "risk", "risk_pct": 2},
    )
    assert r["mode"] == "exact"  # brackets: auto runs exact, the children fill through the live matching code
    # risk: 2 % of 10000 = 200 lost at the stop; per share 100 - 95 = 5 -> 200 / 5 = 40 shares
    #   (all_in would allow floor(10000 / 100.1) = 99); cost 4000, commission 4.00; cash 10000 - 4004 = 5996
    # stop-loss child: sell 40 stop 95; bar 3 opens at 99 above it and trades down to 94: fills at the stop, 95
    #   proceeds 3800, commission 3.80, realized 3800 - 4000 = -200; cash 5996 + 3800 - 3.80 = 9792.20
    f = fills(hand, r["account_id"])
    assert [(x["source"], x["side"], x["qty"], x["price"], x["commission"], x["realized_pnl"]) for x in f] == [
        ("strategy", "buy", 40, 100, D("4.00"), 0),
        ("stop_loss", "sell", 40, 95, D("3.80"), -200),
    ]
    orders = hand.execute(
        "SELECT source, type, side, qty, stop_price, limit_price, status FROM trading.orders WHERE account_id = %s"
        " ORDER BY id",
        (r["account_id"],),
    ).fetchall()
    assert orders == [
        ("strategy", "market", "buy", 40, None, None, "filled"),
        ("stop_loss", "stop", "sell", 40, 95, None, "filled"),
        ("take_profit", "limit", "sell", 40, None, 110, "cancelled"),  # OCO: its sibling filled
    ]
    # the exit decision at bar 3 changed the target, found no position and placed nothing
    entry = hand.execute("SELECT min(id) FROM trading.orders WHERE account_id = %s", (r["account_id"],)).fetchone()[0]
    assert hand.execute(
        "SELECT ts, target, prev_target, exec_ts, order_id FROM backtest.decisions WHERE run_id = %s ORDER BY ts",
        (r["id"],),
    ).fetchall() == [(day(1), 1, 0, day(2), entry), (day(3), 0, 1, day(4), None)]
    assert account(hand, r["account_id"]) == (D("9792.20"), -200, D("7.80"))
    assert equity(hand, r["account_id"]) == {
        day(1): (10000, 0, 10000),
        day(2): (10000, 0, 10000),
        day(3): (5996, 40 * 101, 10036),  # 5996 + 4040
        day(4): (D("9792.20"), 0, D("9792.20")),  # = 10000 - 200 - 7.80: the loss at the stop is 2 % plus costs
        day(5): (D("9792.20"), 0, D("9792.20")),
    }


#            open  high  low  close
SERIES_F = [
    (100, 101, 99, 100),  # 0  01-01
    (100, 101, 99, 100),  # 1  01-02  decision: target 1, stop-loss 90, take-profit 120
    (100, 102, 99, 101),  # 2  01-03  long at this open, 100; decision: target -1, stop-loss 112, take-profit 80
    (102, 103, 100, 101),  # 3  01-04  reversal at this open, 102: close the long, then open the short
    (101, 113, 100, 110),  # 4  01-05  high 113 >= 112: the short's stop-loss fills at 112; decision: target 0
    (110, 111, 109, 110),  # 5  01-06  nothing left to close
]


def test_a_reversal_with_brackets_closes_then_opens_with_the_new_brackets(hand):
    series(hand, "HANDF", SERIES_F)
    r = go(
        hand,
        "HANDF",
        6,
        {1: [1, 90, 120], 2: [-1, 112, 80], 4: [0]},
        {"cash": 10000, "commission": 0, "allow_short": True},
    )
    assert r["mode"] == "exact"
    # long: floor(10000 / 100) = 100 shares at 100; cash 0
    # reversal at 102: the long's children are cancelled, 100 sold at 102 (cash 10200, realized +200); then the
    #   short sized on the flat account: floor(10200 / 102) = 100 sold at 102 (cash 20400), children of 100
    # bar 4 trades up to 113: the buy stop at 112 fills at 112 (opened below it, at 101): cash 20400 - 11200 = 9200,
    #   realized 100 x 102 - 11200 = -1000; its take-profit sibling is cancelled
    orders = hand.execute(
        "SELECT source, type, side, qty, coalesce(stop_price, limit_price), status FROM trading.orders"
        " WHERE account_id = %s ORDER BY id",
        (r["account_id"],),
    ).fetchall()
    assert orders == [
        ("strategy", "market", "buy", 100, None, "filled"),
        ("stop_loss", "stop", "sell", 100, 90, "cancelled"),
        ("take_profit", "limit", "sell", 100, 120, "cancelled"),
        ("strategy", "market", "sell", 100, None, "filled"),  # closes the long, no brackets
        ("strategy", "market", "sell", 100, None, "filled"),  # opens the short with its brackets
        ("stop_loss", "stop", "buy", 100, 112, "filled"),
        ("take_profit", "limit", "buy", 100, 80, "cancelled"),
    ]
    assert pick(fills(hand, r["account_id"]), "side", "qty", "price", "realized_pnl", "ts") == [
        ("buy", 100, 100, 0, day(2)),
        ("sell", 100, 102, 200, day(3)),
        ("sell", 100, 102, 0, day(3)),
        ("buy", 100, 112, -1000, day(5)),  # stamped with bar 4's close
    ]
    assert account(hand, r["account_id"]) == (9200, -800, 0)
    assert equity(hand, r["account_id"]) == {
        day(1): (10000, 0, 10000),
        day(2): (10000, 0, 10000),
        day(3): (0, 100 * 101, 10100),  # long 100 at bar 2's close 101
        day(4): (20400, -100 * 101, 10300),  # short 100 at bar 3's close 101
        day(5): (9200, 0, 9200),  # = 10000 + 200 - 1000
        day(6): (9200, 0, 9200),
    }


def test_risk_sizing_without_a_stop_loss_is_refused(hand):
    series(hand, "HANDA", SERIES_A)
    r = hand.execute(
        "SELECT status, error FROM backtest.run('hand_script', ARRAY['HANDA'], '1d', %s, %s, %s::jsonb)",
        (DAY0, day(6), json.dumps({"script": {day(1).date().isoformat(): [1]}, "sizing": "risk"})),
    ).fetchone()
    assert r[0] == "failed" and r[1].startswith("BT005")


# --- no look-ahead: changing the bars after t changes no decision at or before t, for every registered strategy ---


def _wave(n: int, seed: int) -> list[tuple]:
    """n daily bars oscillating around 100 (so that mean reversion and crossovers trade), seeded."""
    rng = np.random.default_rng(seed)
    c = 100 + 8 * np.sin(np.arange(n) * 2 * np.pi / 37) + np.cumsum(rng.normal(0, 1.2, n))
    out = []
    for i in range(n):
        o = c[i - 1] if i else c[0]
        hi, lo = max(o, c[i]) + abs(rng.normal(0, 0.6)), min(o, c[i]) - abs(rng.normal(0, 0.6))
        out.append((round(o, 2), round(hi, 2), round(lo, 2), round(c[i], 2), int(rng.integers(1000, 9000))))
    return out


def _toy_model(conn, symbol, until):
    """A real logistic regression (ml_support.toy_model) registered for the symbol, trained (on paper) until `until`."""
    from ml_support import register_model, toy_model

    mid = register_model(
        conn,
        toy_model(),
        name=f"{symbol.lower()}-toy",
        symbols=[symbol],
        interval="1d",
        status="candidate",
        buy_threshold=0.52,
        sell_threshold=0.48,
    )
    conn.execute("UPDATE ml.models SET train_from = %s, train_until = %s WHERE id = %s", (DAY0, until, mid))
    return mid


def strategy_params(conn, symbol: str) -> dict[str, dict]:
    """Parameters for each registered strategy on the test series (a strategy not listed runs with its defaults)."""
    return {
        "sma_crossover": {"fast": 5, "slow": 15},
        "mean_reversion": {"bb_period": 10, "bb_k": 1.2, "stop_loss_atr": 2},
        "mean_reversion_rsi": {"indicator": "rsi", "rsi_period": 7, "oversold": 40, "overbought": 60},
        "ml_signal": {"model_id": _toy_model(conn, symbol, day(60)), "brackets": True},
    }


def decisions(conn, fn: str, run_id: int, upto: datetime) -> list[tuple]:
    # the run without its data version: the strategy reads the bars as they are now (a stored run reads them as of
    # its version, so a later change would not reach it: docs/backtesting.md, Reproducibility)
    return conn.execute(
        f"SELECT d.symbol, d.ts, d.target, d.stop_loss, d.take_profit FROM {fn}((SELECT jsonb_populate_record(r,"
        " '{\"data_version\": null}') FROM backtest.runs r WHERE r.id = %s)) d"
        " WHERE d.ts <= %s ORDER BY d.symbol, d.ts",
        (run_id, upto),
    ).fetchall()


def test_changing_later_bars_changes_no_earlier_decision_for_every_strategy(hand):
    series(hand, "HANDW", _wave(260, seed=11))
    params = strategy_params(hand, "HANDW")
    names = [n for (n,) in hand.execute("SELECT name FROM backtest.strategies WHERE name <> 'hand_script' ORDER BY 1")]
    assert {"sma_crossover", "mean_reversion", "ml_signal"} <= set(names)
    cases = [(n, params.get(n, {})) for n in names] + [("mean_reversion", params["mean_reversion_rsi"])]
    for name, p in cases:
        fn = hand.execute("SELECT fn::oid::regproc::text FROM backtest.strategies WHERE name = %s", (name,)).fetchone()[
            0
        ]
        r = run(hand, name, ["HANDW"], "1d", day(70), day(260), p)
        before = decisions(hand, fn, r["id"], day(259))
        assert len(before) >= 4, (name, before)  # the strategy trades this series
        moved = 0
        for t, f in ((day(120), 0.8), (day(180), 1.25), (day(230), 0.8)):
            hand.execute("SAVEPOINT later_bars")
            # every bar after t scaled by f: a different future
            hand.execute(
                "UPDATE market.bars SET open = round(open * %(f)s::numeric, 2), high = round(high * %(f)s::numeric, 2),"
                " low = round(low * %(f)s::numeric, 2), close = round(close * %(f)s::numeric, 2)"
                " WHERE symbol = 'HANDW' AND interval = '1d' AND ts > %(t)s",
                {"f": f, "t": t},
            )
            after = decisions(hand, fn, r["id"], day(259))
            assert [d for d in after if d[1] <= t] == [d for d in before if d[1] <= t], (name, t)
            moved += [d for d in after if d[1] > t] != [d for d in before if d[1] > t]
            hand.execute("ROLLBACK TO SAVEPOINT later_bars")
        assert moved, f"{name}: the changed bars changed no later decision either (the test would prove nothing)"
