"""The look-ahead check (backtest.lookahead_check, pgtrade backtest lookahead-check; docs/backtesting.md).

Every registered strategy passes it on a real series; strategies that peek (at the next close, through a centred
window, through a window frame reaching one bar forward), registered inside the test, are caught at exactly the bars
where the peeking decides; the documented example of "Writing a strategy" runs verbatim and passes; the CLI exits 0
and 1 accordingly.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from backtest_support import ensure_sample
from click.testing import CliRunner
from ml_support import register_model, toy_model

from pgtrade.cli import main

ROOT = Path(__file__).resolve().parent.parent
RANGE = ("GOOG", "1d", "2010-01-01", "2012-01-01")


def check(conn, strategy, params=None, samples=None, rng=RANGE):
    """(differing rows, the NOTICE's checked and differing counts)."""
    notices: list[str] = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    sym, iv, a, b = rng
    rows = conn.execute(
        "SELECT * FROM backtest.lookahead_check(%s, ARRAY[%s], %s, %s, %s, %s::jsonb, %s)",
        (strategy, sym, iv, a, b, json.dumps(params or {}), samples),
    ).fetchall()
    m = re.search(r"(\d+) bar time\(s\) checked, (\d+) decision\(s\) differ", notices[-1])
    return rows, int(m.group(1)), int(m.group(2))


def goog_model(conn) -> int:
    """A real (toy) logistic regression registered for GOOG, trained (on paper) until the end of 2009."""
    mid = register_model(conn, toy_model(), name="goog-lookahead", symbols=["GOOG"], interval="1d", status="candidate")
    conn.execute("UPDATE ml.models SET train_until = '2009-12-31' WHERE id = %s", (mid,))
    return mid


def test_every_registered_strategy_passes(db):
    ensure_sample(db, "GOOG")
    special = {"ml_signal": [{"model_id": goog_model(db)}, {"model_id": goog_model(db), "brackets": True}]}
    special["mean_reversion"] = [
        {},
        {"indicator": "rsi", "allow_short": True, "stop_loss_atr": 2, "take_profit_atr": 3},
        {"indicator": "both", "bb_k": 1, "oversold": 45, "overbought": 55},
    ]
    names = [n for (n,) in db.execute("SELECT name FROM backtest.strategies ORDER BY name")]
    assert {"sma_crossover", "mean_reversion", "ml_signal"} <= set(names)
    for name in names:
        for params in special.get(name, [{}]):
            rows, checked, differ = check(db, name, params, samples=60)
            assert (rows, checked, differ) == ([], 60, 0), (name, params)
    # every bar of a year, for the two strategies of this issue's own
    for name, params in (("mean_reversion", {"indicator": "rsi"}), ("sma_crossover", {"fast": 5, "slow": 15})):
        rows, checked, _ = check(db, name, params, rng=("GOOG", "1d", "2011-01-01", "2012-01-01"))
        assert rows == [] and checked == 252, name


PEEK_NEXT = """
CREATE FUNCTION public.peek_next(run backtest.runs) RETURNS SETOF backtest.decision LANGUAGE sql STABLE AS $$
  -- long when tomorrow's close is higher, flat when lower: tomorrow is not known at today's close
  SELECT b.symbol, b.ts, CASE WHEN lead(b.close) OVER w > b.close THEN 1 WHEN lead(b.close) OVER w < b.close THEN 0
                         END::numeric, NULL::numeric, NULL::numeric
  FROM backtest.bars(run) b WINDOW w AS (PARTITION BY b.symbol ORDER BY b.ts)
$$;
SELECT backtest.register_strategy('peek_next', 'public.peek_next(backtest.runs)', 'peeks at the next close');
CREATE FUNCTION public.peek_centred(run backtest.runs) RETURNS SETOF backtest.decision LANGUAGE sql STABLE AS $$
  -- long above a centred 5-bar average (two bars each side): a smoother that uses the future
  SELECT x.symbol, x.ts, CASE WHEN x.close > x.m THEN 1 ELSE 0 END::numeric, NULL::numeric, NULL::numeric
  FROM (SELECT b.symbol, b.ts, b.close, avg(b.close) OVER (PARTITION BY b.symbol ORDER BY b.ts
                                                            ROWS BETWEEN 2 PRECEDING AND 2 FOLLOWING) AS m
        FROM backtest.bars(run, 2) b) x
  WHERE x.ts >= run.start_ts
$$;
SELECT backtest.register_strategy('peek_centred', 'public.peek_centred(backtest.runs)', 'a centred average');
"""


def test_a_strategy_that_peeks_at_the_next_close_is_caught_at_every_bar_it_decides(db):
    ensure_sample(db, "GOOG")
    db.execute(PEEK_NEXT)
    rng = ("GOOG", "1d", "2011-01-01", "2011-07-01")
    rows, checked, differ = check(db, "peek_next", rng=rng)
    closes = db.execute(
        "SELECT ts, close FROM market.bars WHERE symbol = 'GOOG' AND interval = '1d' AND ts >= %s AND ts < %s"
        " ORDER BY ts",
        rng[2:],
    ).fetchall()
    # the full run's decision at t: 1 / 0 by the next close in the range; the cut run has no next close: none
    want = [("GOOG", t, 1 if n > c else 0, None) for (t, c), (_, n) in zip(closes, closes[1:], strict=False) if n != c]
    assert [r[:4] for r in rows] == want
    assert checked == len(closes) and differ == len(want) > 100
    # a sample finds it too, half of it at the bars where the full run decided
    rows, checked, differ = check(db, "peek_next", samples=10, rng=rng)
    assert checked == 10 and differ >= 5
    # the centred average: the cut run's average at t lacks t+1 and t+2
    rows, _, differ = check(db, "peek_centred", samples=40, rng=rng)
    assert differ == len(rows) > 0 and all(r[2] is not None and r[3] is not None for r in rows)


def test_several_symbols_are_checked_per_bar_time(db):
    ensure_sample(db, "GOOG")
    ensure_sample(db, "SPX")
    db.execute(PEEK_NEXT)
    notices: list[str] = []
    db.add_notice_handler(lambda d: notices.append(d.message_primary))
    q = "SELECT * FROM backtest.lookahead_check(%s, ARRAY['GOOG', 'SPX'], '1d', '2011-01-01', '2011-03-01', '{}', 30)"
    rows = db.execute(q, ("peek_next",)).fetchall()
    assert {r[0] for r in rows} == {"GOOG", "SPX"} and "30 bar time(s) checked" in notices[-1]
    assert db.execute(q, ("sma_crossover",)).fetchall() == []


def example_block() -> str:
    doc = (ROOT / "docs" / "backtesting.md").read_text()
    block = doc.split("<!-- writing-a-strategy:begin -->")[1].split("<!-- writing-a-strategy:end -->")[0]
    return block.split("```sql\n")[1].split("```")[0]


def test_the_documented_example_runs_verbatim(db):
    ensure_sample(db, "GOOG")
    notices: list[str] = []
    db.add_notice_handler(lambda d: notices.append(d.message_primary))
    results = []
    for statement in example_block().split(";\n\n"):
        cur = db.execute(statement, prepare=False)
        results.append(cur.fetchall() if cur.description else None)
    create, register, ran, lookahead = results
    assert register == [("breakout",)]
    assert ran[0][1:3] == ("done", "fast") and ran[0][4] > 5  # status, mode, fills
    assert lookahead == [] and "100 bar time(s) checked, 0 decision(s) differ" in notices[-1]
    # the same window over the next n bars is caught (docs: "had the window been ROWS BETWEEN 1 FOLLOWING ...")
    peeking = (
        example_block()
        .split(";\n\n")[0]
        .replace(
            "(run.params->>'n')::int PRECEDING AND 1 PRECEDING", "1 FOLLOWING AND (run.params->>'n')::int FOLLOWING"
        )
    )
    assert peeking != example_block().split(";\n\n")[0]
    db.execute(peeking, prepare=False)
    rows, checked, differ = check(db, "breakout", {"n": 10}, samples=100)
    assert checked == 100 and differ > 0 and all(r[3] is None for r in rows)


def test_bad_requests(db):
    ensure_sample(db, "GOOG")
    for args, code in (
        (("nope", ["GOOG"], "1d", "2010-01-01", "2011-01-01", "{}", None), "BT001"),
        (("sma_crossover", ["NOPE"], "1d", "2010-01-01", "2011-01-01", "{}", None), "BT002"),
        (("sma_crossover", ["GOOG"], "7m", "2010-01-01", "2011-01-01", "{}", None), "BT003"),
        (("sma_crossover", ["GOOG"], "1d", "2011-01-01", "2010-01-01", "{}", None), "BT003"),
        (("sma_crossover", ["GOOG"], "1d", "2010-01-01", "2011-01-01", '{"fats": 3}', None), "BT004"),
        (("sma_crossover", ["GOOG"], "1d", "2010-01-01", "2011-01-01", "{}", 0), "BT004"),
        (("ml_signal", ["GOOG"], "1d", "2010-01-01", "2011-01-01", "{}", 5), "BT030"),
    ):
        db.execute("SAVEPOINT s")
        with pytest.raises(psycopg.Error) as e:
            db.execute("SELECT * FROM backtest.lookahead_check(%s, %s, %s, %s, %s, %s::jsonb, %s)", args)
        assert e.value.diag.sqlstate == code, args
        db.execute("ROLLBACK TO SAVEPOINT s")


@pytest.fixture
def committed_peek(db_url, monkeypatch):
    """A peeking strategy committed under a name of its own (the CLI runs on its own connection); removed after."""
    monkeypatch.setenv("PGTRADE_DATABASE_URL", db_url)
    name = f"peek_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_url) as conn:
        ensure_sample(conn, "GOOG")
        conn.execute(PEEK_NEXT.split("CREATE FUNCTION public.peek_centred")[0].replace("peek_next", name))
        conn.commit()
    try:
        yield name
    finally:
        with psycopg.connect(db_url) as conn:
            conn.execute("DELETE FROM backtest.strategies WHERE name = %s", (name,))
            conn.execute(f"DROP FUNCTION public.{name}(backtest.runs)")
            conn.commit()


def cli(*args):
    return CliRunner().invoke(main, ["backtest", "lookahead-check", *[str(a) for a in args]])


def test_cli_exits_1_when_a_decision_differs(committed_peek):
    base = ("--symbols", "goog", "--start", "2011-01-01", "--end", "2011-04-01", "--samples", "20")
    r = cli("--strategy", "sma_crossover", *base, "--param", "fast=5", "--param", "slow=15")
    assert r.exit_code == 0 and "no look-ahead found" in r.output and "20 bar time(s) checked" in r.output, r.output
    r = cli("--strategy", committed_peek, *base, "--json")
    assert r.exit_code == 1, r.output
    out = json.loads(r.output)
    assert out["lookahead"] is True and out["checked"] == 20 and len(out["differences"]) >= 5
    d = out["differences"][0]
    assert d["symbol"] == "GOOG" and d["full_target"] is not None and d["truncated_target"] is None
    assert datetime.fromisoformat(d["ts"]) >= datetime(2011, 1, 1, tzinfo=UTC)
    r = cli("--strategy", committed_peek, *base)
    assert r.exit_code == 1 and "look-ahead" in r.output
    # user errors: one line, status 1
    r = cli("--strategy", "nope", *base)
    assert r.exit_code == 1 and "BT001" in r.output and "Traceback" not in r.output
    r = cli("--strategy", "sma_crossover", *base, "--param", "fast")
    assert r.exit_code == 1 and "KEY=VALUE" in r.output
