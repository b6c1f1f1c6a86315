"""Parameter grids: the cartesian product of the grid, one isolated run per point, parallel = sequential.

A grid is a parent run (purpose grid, no account) and one ordinary backtest.run per point on its own account
(db/procedures/backtest_grid.sql); pgtrade/backtest_parallel.py runs the points over several connections.
"""

from __future__ import annotations

import itertools
import json

import psycopg
import pytest
from backtest_support import account_rows, ensure_sample, run
from psycopg.rows import dict_row

from pgtrade import backtest_parallel

RANGE = ("GOOG", "1d", "2005-01-01", "2010-01-01")
BASE = {"cash": 10000, "commission": 0.002}
GRID = {"fast": [5, 10, 20], "slow": [30, 50]}


@pytest.fixture
def goog(db):
    ensure_sample(db, "GOOG")
    return db


def _points(conn, grid) -> list[dict]:
    return [r[0] for r in conn.execute("SELECT backtest.grid_points(%s::jsonb)", (json.dumps(grid),))]


def _sqlstate(conn, query: str, args=()) -> str:
    with pytest.raises(psycopg.Error) as exc:
        with conn.transaction():
            conn.execute(query, args)
    return exc.value.sqlstate


def test_grid_points_are_the_cartesian_product(db):
    grid = {"b": ["x", "y"], "a": [1, 2.5, 3], "c": [True]}
    points = _points(db, grid)
    expected = [dict(zip(("a", "b", "c"), p, strict=True)) for p in itertools.product(*(grid[k] for k in "abc"))]
    assert points == expected  # parameters in name order, values as listed, the last varying fastest
    assert _points(db, {}) == [{}]
    assert len(_points(db, {"p": list(range(10)), "q": list(range(10))})) == 100


@pytest.mark.parametrize(
    "grid",
    [
        '{"fast": 5}',
        '{"fast": []}',
        '{"fast": [5, 5]}',
        "[1, 2]",
        '{"a": [1,2,3,4,5,6,7,8,9,10,11]'
        ', "b": [1,2,3,4,5,6,7,8,9,10,11], "c": [1,2,3,4,5,6,7,8,9,10,11], "d": [1,2,3,4,5,6,7,8]}',
    ],
    ids=["not-a-list", "empty-list", "repeated-value", "not-an-object", "over-10000-points"],
)
def test_malformed_grids_are_refused(db, grid):
    assert _sqlstate(db, "SELECT backtest.grid_points(%s::jsonb)", (grid,)) == "BT401"


def test_bad_grid_requests_run_nothing(goog):
    before = goog.execute("SELECT count(*) FROM backtest.runs").fetchone()[0]
    args = ("sma_crossover", ["GOOG"], "1d", "2005-01-01", "2010-01-01", "{}")
    q = "SELECT backtest.grid_begin(%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s)"
    assert _sqlstate(goog, q, (*args, '{"fats": [5, 10]}', "sharpe")) == "BT004"  # unknown parameter in a point
    assert _sqlstate(goog, q, (*args, '{"fast": [5, 10]}', "sharpe ratio")) == "BT402"
    assert _sqlstate(goog, q, ("no_such", *args[1:], "{}", "sharpe")) == "BT001"
    assert _sqlstate(goog, "SELECT backtest.grid_run(-1, '{}')") == "BT403"
    assert goog.execute("SELECT count(*) FROM backtest.runs").fetchone()[0] == before


def _grid_sql(conn, grid=GRID, base=BASE, objective="total_return") -> dict:
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute(
        "SELECT * FROM backtest.grid('sma_crossover', %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s)",
        ([RANGE[0]], *RANGE[1:], json.dumps(base), json.dumps(grid), objective),
    ).fetchone()


def _children(conn, parent_id: int) -> list[dict]:
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute("SELECT * FROM backtest.runs WHERE parent_id = %s ORDER BY id", (parent_id,)).fetchall()


def _point(run: dict) -> dict:
    return {k: run["params"][k] for k in GRID}


def test_a_grid_of_n_points_makes_n_isolated_runs_equal_to_the_runs_one_by_one(goog):
    parent = _grid_sql(goog)
    assert (parent["purpose"], parent["parent_id"], parent["account_id"], parent["status"]) == (
        "grid",
        None,
        None,
        "done",
    )
    children = _children(goog, parent["id"])
    points = _points(goog, GRID)
    assert len(children) == len(points) == 6
    assert sorted(map(json.dumps, map(_point, children))) == sorted(map(json.dumps, points))
    assert all(c["purpose"] == "grid" and c["status"] == "done" for c in children)
    accounts = [c["account_id"] for c in children]
    assert None not in accounts and len(set(accounts)) == len(accounts)  # each run on its own account
    kinds = goog.execute("SELECT DISTINCT kind FROM trading.accounts WHERE id = ANY(%s)", (accounts,)).fetchall()
    assert kinds == [("backtest",)]
    results = {}
    for c in children:
        alone = run(goog, "sma_crossover", [RANGE[0]], *RANGE[1:], BASE | _point(c))
        assert alone["params"] == c["params"] and alone["params_hash"] == c["params_hash"]
        assert alone["metrics"] == c["metrics"]
        assert account_rows(goog, alone["account_id"]) == account_rows(goog, c["account_id"])
        results[json.dumps(_point(c))] = c["metrics"]["total_return"]
    # the fills differ from point to point: the runs are not one run repeated
    assert len(set(results.values())) > 1
    m = parent["metrics"]
    best = max(children, key=lambda c: c["metrics"]["total_return"])
    assert (m["runs"], m["done"], m["failed"], m["objective"]) == (6, 6, 0, "total_return")
    assert m["best_run_id"] == best["id"] and m["best_params"] == _point(best)


def test_a_point_that_fails_fails_alone(goog):
    parent = _grid_sql(goog, grid={"fast": [5, "x"], "slow": [30]})
    assert parent["status"] == "done"
    m = parent["metrics"]
    assert (m["runs"], m["done"], m["failed"], m["best_params"]) == (2, 1, 1, {"fast": 5, "slow": 30})
    failed = [c for c in _children(goog, parent["id"]) if c["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["params"]["fast"] == "x"
    assert failed[0]["error"] and failed[0]["account_id"] is None


def test_parallel_grid_equals_the_sequential_grid(db_url):
    with psycopg.connect(db_url) as conn:
        ensure_sample(conn, "GOOG")
    batch = backtest_parallel.grid(
        db_url,
        strategy="sma_crossover",
        symbols=[RANGE[0]],
        interval=RANGE[1],
        start=RANGE[2],
        end=RANGE[3],
        params=BASE,
        grid=GRID,
        objective="total_return",
        jobs=4,
    )
    with psycopg.connect(db_url) as conn:
        seq = _grid_sql(conn)
        par = (
            conn.cursor(row_factory=dict_row)
            .execute("SELECT * FROM backtest.runs WHERE id = %s", (batch.run_id,))
            .fetchone()
        )
        assert par["status"] == seq["status"] == "done"
        assert len(batch.results) == 6
        a = {json.dumps(_point(c)): c for c in _children(conn, par["id"])}
        b = {json.dumps(_point(c)): c for c in _children(conn, seq["id"])}
        assert sorted(a) == sorted(b) and len(a) == 6
        for key in a:
            assert a[key]["metrics"] == b[key]["metrics"], key
            assert account_rows(conn, a[key]["account_id"]) == account_rows(conn, b[key]["account_id"]), key
        assert len({c["account_id"] for c in a.values()} | {c["account_id"] for c in b.values()}) == 12
        best = {k: v for k, v in par["metrics"].items() if k != "best_run_id"}
        assert best == {k: v for k, v in seq["metrics"].items() if k != "best_run_id"}
        assert par["metrics"]["best_params"] == seq["metrics"]["best_params"]
        conn.rollback()


def test_cli_grid(monkeypatch, db_url):
    from click.testing import CliRunner

    from pgtrade.cli import main

    monkeypatch.setenv("PGTRADE_DATABASE_URL", db_url)
    with psycopg.connect(db_url) as conn:
        ensure_sample(conn, "GOOG")
    args = ["backtest", "grid", "--strategy", "sma_crossover", "--symbols", "goog", "--start", RANGE[2]]
    args += ["--end", RANGE[3], "--grid", "fast=5,10", "--grid", "slow=30", "--param", "cash=10000"]
    args += ["--objective", "total_return", "--jobs", "2"]
    r = CliRunner().invoke(main, [*args, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["status"] == "done" and out["jobs"] == 2 and out["runs_per_second"] > 0
    assert [x["point"] for x in out["runs"]] == [{"fast": 5, "slow": 30}, {"fast": 10, "slow": 30}]
    best = max(out["runs"], key=lambda x: x["metrics"]["total_return"])
    assert out["metrics"]["best_run_id"] == best["id"] and out["metrics"]["best_params"] == best["point"]
    table = CliRunner().invoke(main, args)
    assert table.exit_code == 0 and "2 of 2 runs done" in table.output and "runs/s" in table.output
    bad = CliRunner().invoke(main, [*args, "--param", "cash"])
    assert bad.exit_code == 1 and "--param expects KEY=VALUE" in bad.output and "Traceback" not in bad.output
    unknown = CliRunner().invoke(main, [*args, "--grid", "fats=1,2"])
    assert unknown.exit_code == 1 and "BT004" in unknown.output
