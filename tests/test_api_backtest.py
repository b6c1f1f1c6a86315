"""Backtests through the REST API (issue 13, section 8) as PostgREST drives them (tests/test_api.py's harness:
SET LOCAL ROLE, request.jwt.claims, the role's own settings): a trader runs a backtest owned by its own account and
reads only its own runs, their trades and equity curve; an administrator sees every run; anonymous callers neither
run nor read. Bad requests answer 4xx with a documented code and record nothing; a run that fails on the way is
kept and answered with 422; the bounds on one request's work hold."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from backtest_support import ensure_sample, run
from test_api import documented_rows, postgrest_status, request
from trading_support import account, instrument

GOOG = {"strategy": "sma_crossover", "symbols": ["GOOG"], "interval": "1d"}
RANGE = {"start_ts": datetime(2004, 1, 1, tzinfo=UTC), "end_ts": datetime(2014, 1, 1, tzinfo=UTC)}
PARAMS = {"cash": 10000, "commission": 0.002}


def run_backtest(db, role, acct, **args):
    """POST /rpc/run_backtest with named arguments (params as JSON)."""
    if "params" in args:
        args["params"] = json.dumps(args["params"])
    names = {k: '"interval"' if k == "interval" else k for k in args}
    named = [f"{names[k]} => %({k})s" + ("::jsonb" if k == "params" else "") for k in args]
    q = "SELECT * FROM api.run_backtest(" + ", ".join(named) + ")"
    return request(db, role, q, args, account_claim=acct)


def runs_count(db) -> int:
    return db.execute("SELECT count(*) FROM backtest.runs").fetchone()[0]


@pytest.fixture
def world(db):
    """GOOG daily (the bundled sample) and two live trading accounts, alice and bob."""
    ensure_sample(db, "GOOG")
    ensure_sample(db, "SPX")
    tag = uuid.uuid4().hex[:6]
    names = {who: f"{who}_{tag}" for who in ("alice", "bob")}
    ids = {who: account(db, name, kind="live", clock=None) for who, name in names.items()}
    return names, ids


def test_a_trader_runs_a_backtest_owned_by_its_account_with_the_engines_result(db, world):
    names, ids = world
    r = run_backtest(db, "trader", names["alice"], **GOOG, **RANGE, params=PARAMS)
    assert r.status == 200, (r.sqlstate, r.message)
    got = r.row
    assert (got["status"], got["account"], got["mode"], got["purpose"]) == ("done", names["alice"], "fast", "single")
    owner, acct = db.execute(
        "SELECT owner_account_id, account_id FROM backtest.runs WHERE id = %s", (got["id"],)
    ).fetchone()
    assert owner == ids["alice"] and acct not in ids.values()  # the run trades on its own backtest account
    # the same request through backtest.run directly (psql, the CLI) gives the same run
    direct = run(db, "sma_crossover", ["GOOG"], "1d", RANGE["start_ts"], RANGE["end_ts"], PARAMS)
    for k in ("params", "params_hash", "data_hash", "code_hash", "bars", "decisions", "orders", "fills", "metrics"):
        assert got[k] == direct[k], k
    assert (
        got["metrics"]["final_equity"] == 63341.23
    )  # docs/backtesting.md: the reference run (backtesting.py 63341.19)
    # its equity curve and trade list, as the owner reads them
    eq = request(db, "trader", "SELECT * FROM api.backtest_equity WHERE run_id = %s ORDER BY ts", (got["id"],),
                 account_claim=names["alice"])  # fmt: skip
    snaps = db.execute(
        "SELECT ts, total_value, drawdown FROM trading.portfolio_snapshots WHERE account_id = %s ORDER BY ts", (acct,)
    ).fetchall()
    assert [(e["ts"], e["total_value"], e["drawdown"]) for e in eq.rows] == snaps and len(snaps) == got["bars"]
    assert float(eq.rows[-1]["total_value"]) == got["metrics"]["final_equity"]
    tr = request(db, "trader", "SELECT * FROM api.backtest_trades WHERE run_id = %s", (got["id"],),
                 account_claim=names["alice"])  # fmt: skip
    if db.execute("SELECT to_regclass('backtest.trades')").fetchone()[0]:
        n = db.execute("SELECT count(*) FROM backtest.trades WHERE run_id = %s", (got["id"],)).fetchone()[0]
        assert len(tr.rows) == n and n > 0
    else:  # until backtest.trades exists: the run's fills
        assert len(tr.rows) == got["fills"] == 93
        assert {t["side"] for t in tr.rows} == {"buy", "sell"}


def test_a_trader_cannot_read_another_traders_runs(db, world):
    names, _ = world
    mine = run_backtest(db, "trader", names["alice"], **GOOG, **RANGE, params=PARAMS).row
    theirs = run_backtest(db, "trader", names["bob"], **GOOG, **RANGE, params={"fast": 5, "slow": 30}).row
    cli_run = run(db, "sma_crossover", ["GOOG"], "1d", RANGE["start_ts"], RANGE["end_ts"])  # no owner
    for view, col in (("backtests", "id"), ("backtest_trades", "run_id"), ("backtest_equity", "run_id")):
        seen = request(db, "trader", f"SELECT DISTINCT {col} AS id FROM api.{view}", account_claim=names["alice"])
        assert seen.status == 200 and {x["id"] for x in seen.rows} == {mine["id"]}, view
        other = request(db, "trader", f"SELECT * FROM api.{view} WHERE {col} = %s", (theirs["id"],),
                        account_claim=names["alice"])  # fmt: skip
        assert other.status == 200 and other.rows == [], view
        assert request(db, "trader", f"SELECT * FROM api.{view} WHERE {col} = %s", (cli_run["id"],),
                       account_claim=names["bob"]).rows == []  # fmt: skip
    # an administrator sees every run: both traders' and the one started from psql / the CLI
    admin = request(db, "pgtrade_admin", "SELECT id, account FROM api.backtests")
    seen = {x["id"]: x["account"] for x in admin.rows}
    assert {mine["id"]: names["alice"], theirs["id"]: names["bob"], cli_run["id"]: None}.items() <= seen.items()
    eq = request(
        db, "pgtrade_admin", "SELECT count(*) AS n FROM api.backtest_equity WHERE run_id = %s", (cli_run["id"],)
    )
    assert eq.row["n"] == cli_run["bars"]


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM api.run_backtest('sma_crossover', '{GOOG}', '1d', '2004-01-01', '2014-01-01')",
        "SELECT * FROM api.backtests",
        "SELECT * FROM api.backtest_trades",
        "SELECT * FROM api.backtest_equity",
        "SELECT * FROM api.strategies",
        "SELECT * FROM backtest.runs",
        "SELECT * FROM backtest.run('sma_crossover', '{GOOG}', '1d', '2004-01-01', '2014-01-01')",
    ],
)
def test_anonymous_requests_neither_run_nor_read_backtests(db, world, query):
    before = runs_count(db)
    r = request(db, "web_anon", query)
    assert (r.sqlstate, r.status) == ("42501", 401), query
    assert runs_count(db) == before


def test_a_trader_token_without_a_valid_account_is_403_and_runs_nothing(db, world):
    run(db, "sma_crossover", ["GOOG"], "1d", RANGE["start_ts"], RANGE["end_ts"])  # a row for the views to filter
    before = runs_count(db)
    for claims in ({"role": "trader"}, {"role": "trader", "account": "nobody-here"}):
        r = request(db, "trader", "SELECT * FROM api.run_backtest('sma_crossover', '{GOOG}', '1d', '2004-01-01',"
                    " '2014-01-01')", claims=claims)  # fmt: skip
        assert (r.sqlstate, r.status) == ("28000", 403), claims
        r = request(db, "trader", "SELECT * FROM api.backtests", claims=claims)
        assert (r.sqlstate, r.status) == ("28000", 403), claims
    # nor reaches the engine or another account directly
    names, _ = world
    r = request(db, "trader", "SELECT * FROM backtest.runs", account_claim=names["alice"])
    assert (r.sqlstate, r.status) == ("42501", 403)
    r = run_backtest(db, "trader", names["alice"], **GOOG, **RANGE, account=names["bob"])
    assert (r.sqlstate, r.status) == ("42501", 403)
    assert runs_count(db) == before


def _many_bars(db, symbol: str, n: int) -> None:
    """n 1-minute bars of a flat series, written in one statement (the bound is counted, not run)."""
    instrument(db, symbol, session_open=None, session_close=None, trades_weekends=True, session_tz="UTC")
    db.execute(
        """INSERT INTO market.bars (symbol, interval, ts, open, high, low, close, volume, source)
           SELECT %s, '1m', timestamptz '2024-01-01' + i * interval '1 minute', 100, 101, 99, 100, 1000, 'test'
           FROM generate_series(0, %s - 1) i""",
        (symbol, n),
    )


BAD = [
    ({"strategy": "no_such_strategy"}, "BT001"),
    ({"symbols": ["NOSUCHSYM"]}, "BT002"),
    ({"symbols": []}, "BT002"),
    ({"interval": "7m"}, "BT003"),
    ({"start_ts": RANGE["end_ts"], "end_ts": RANGE["start_ts"]}, "BT003"),
    ({"params": {"fastt": 3}}, "BT004"),
    ({"params": {"cash": -5}}, "BT004"),
    ({"mode": "turbo"}, "BT004"),
    ({"symbols": [f"S{i}" for i in range(21)]}, "BT060"),  # 21 symbols, before they are even looked up
    ({"symbols": ["GOOG", "SPX"], "mode": "exact"}, "BT060"),  # 4,665 bars > 2,500 in mode exact
]


@pytest.mark.parametrize(("args", "code"), BAD, ids=[f"{c}-{'-'.join(a)}" for a, c in BAD])
def test_a_bad_request_answers_its_documented_code_and_records_nothing(db, world, args, code):
    names, _ = world
    before = runs_count(db)
    r = run_backtest(db, "trader", names["alice"], **(GOOG | RANGE | {"params": PARAMS} | args))
    assert r.sqlstate == code, (r.sqlstate, r.message)
    how, http = documented_rows()[code]
    assert "raised" in how
    assert r.status == postgrest_status(code, authenticated=True) == 400
    assert str(r.status) in http
    assert runs_count(db) == before


def test_the_bar_bound_counts_the_range_and_stops_one_past_it(db, world):
    names, _ = world
    sym = f"T{uuid.uuid4().hex[:8].upper()}"
    _many_bars(db, sym, 50_001)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    args = {"strategy": "sma_crossover", "symbols": [sym], "interval": "1m", "start_ts": start}
    over = run_backtest(db, "trader", names["alice"], **args, end_ts=start + timedelta(minutes=50_001))
    assert (over.sqlstate, over.status) == ("BT060", 400), over.message
    # exactly at the bound the run goes ahead (the flat series never crosses: a run without trades)
    at = run_backtest(db, "trader", names["alice"], **args, end_ts=start + timedelta(minutes=50_000))
    assert at.status == 200 and (at.row["status"], at.row["bars"], at.row["fills"]) == ("done", 50_000, 0)


def test_a_run_that_fails_on_the_way_answers_422_and_is_kept(db, world):
    names, ids = world
    r = run_backtest(db, "trader", names["alice"], **GOOG, start_ts="1990-01-01", end_ts="1991-01-01")
    assert r.status == 422 and r.sqlstate is None
    assert r.row["status"] == "failed" and r.row["error"].startswith("BT007: no 1d bars of GOOG")
    # kept (the request's savepoint was released: PostgREST commits it), owned by alice, without an account
    kept = db.execute("SELECT status, owner_account_id, account_id FROM backtest.runs WHERE id = %s",
                      (r.row["id"],)).fetchone()  # fmt: skip
    assert kept == ("failed", ids["alice"], None)
    listed = request(db, "trader", "SELECT status, error FROM api.backtests WHERE id = %s", (r.row["id"],),
                     account_claim=names["alice"])  # fmt: skip
    assert listed.row == {"status": "failed", "error": r.row["error"]}


def test_an_administrator_runs_for_a_named_account_only(db, world):
    names, ids = world
    r = run_backtest(db, "pgtrade_admin", None, **GOOG, **RANGE, account=names["bob"])
    assert r.status == 200 and r.row["account"] == names["bob"]
    assert (
        db.execute("SELECT owner_account_id FROM backtest.runs WHERE id = %s", (r.row["id"],)).fetchone()[0]
        == (ids["bob"])
    )
    assert request(db, "trader", "SELECT id FROM api.backtests", account_claim=names["bob"]).rows == [
        {"id": r.row["id"]}
    ]
    before = runs_count(db)
    r = run_backtest(db, "pgtrade_admin", None, **GOOG, **RANGE)
    assert (r.sqlstate, r.status) == ("TR013", 400)
    assert runs_count(db) == before


def test_a_trader_lists_the_strategies_it_can_run(db, world):
    names, _ = world
    r = request(db, "trader", "SELECT * FROM api.strategies ORDER BY name", account_claim=names["alice"])
    rows = {s["name"]: s for s in r.rows}
    expected = db.execute("SELECT name, defaults FROM backtest.strategies").fetchall()
    assert {n: rows[n]["defaults"] for n in rows} == dict(expected)
    assert rows["sma_crossover"]["defaults"] == {"fast": 10, "slow": 20}
    assert set(r.rows[0]) == {"name", "description", "defaults", "grid", "created_at"}
