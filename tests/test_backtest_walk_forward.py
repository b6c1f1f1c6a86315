"""Walk-forward analysis: windows, no leakage from test to train, the selection rule, the stitched equity curve.

backtest.wf_windows cuts the range; on each train window the grid runs (purpose wf_train) and backtest.best_run
chooses by the objective, or a model is trained (ML strategies); the choice trades the next test window (wf_test),
each test run starting with the previous one's final equity (db/procedures/backtest_walk_forward.sql).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import psycopg
import pytest
from backtest_support import account_rows, ensure_sample
from psycopg.rows import dict_row

from pgtrade import backtest_parallel

SYM, IV, START, END = "GOOG", "1d", "2005-01-01", "2010-01-01"
BASE = {"cash": 10000, "commission": 0.002}
GRID = {"fast": [5, 10], "slow": [20, 50]}


@pytest.fixture
def goog(db):
    ensure_sample(db, SYM)
    return db


def _bar_times(conn, start=START, end=END) -> list[datetime]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT ts FROM market.bars WHERE symbol = %s AND interval = %s AND ts >= %s AND ts < %s ORDER BY ts",
            (SYM, IV, start, end),
        )
    ]


def _windows(conn, train, test, purge, anchored, start=START, end=END) -> list[dict]:
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute(
        "SELECT * FROM backtest.wf_windows(%s, %s, %s, %s, %s, %s, %s, %s)",
        ([SYM], IV, start, end, train, test, purge, anchored),
    ).fetchall()


def _wf(conn, *, train="252", test="126", purge="5", anchored=False, grid=GRID, objective="total_return") -> dict:
    cur = conn.cursor(row_factory=dict_row)
    r = cur.execute(
        "SELECT * FROM backtest.walk_forward('sma_crossover', %s, %s, %s, %s, %s::jsonb,"
        " %s, %s, %s, %s, %s::jsonb, %s)",
        ([SYM], IV, START, END, json.dumps(BASE), train, test, purge, anchored, json.dumps(grid), objective),
    ).fetchone()
    assert r["status"] == "done", r["error"]
    return r


def _window_rows(conn, run_id: int) -> list[dict]:
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute("SELECT * FROM backtest.walk_forward_windows WHERE run_id = %s ORDER BY n", (run_id,)).fetchall()


def _train_runs(conn, run_id: int, w: dict) -> list[dict]:
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute(
        "SELECT * FROM backtest.runs WHERE parent_id = %s AND purpose = 'wf_train' AND start_ts = %s AND end_ts = %s"
        " ORDER BY id",
        (run_id, w["train_from"], w["train_until"]),
    ).fetchall()


@pytest.mark.parametrize(
    ("train", "test", "purge", "anchored"),
    [
        ("252", "126", "0", False),
        ("252", "126", "5", False),
        ("300", "100", "10", True),
        ("1 year", "6 months", "0", False),
        ("1 year", "3 months", "2 weeks", True),
    ],
    ids=["bars", "bars-purge", "bars-anchored", "intervals", "intervals-anchored-purge"],
)
def test_windows_never_overlap_and_the_purge_gap_holds(goog, train, test, purge, anchored):
    ws = _windows(goog, train, test, purge, anchored)
    ts = _bar_times(goog)
    assert len(ws) >= 4
    in_range = lambda a, b: [t for t in ts if a <= t < b]  # noqa: E731
    bars = train.isdigit()
    for k, w in enumerate(ws):
        assert w["n"] == k + 1
        assert w["train_from"] < w["train_until"] <= w["test_from"] < w["test_until"]
        assert len(in_range(w["train_from"], w["train_until"])) == w["train_bars"] > 0
        assert len(in_range(w["train_until"], w["test_from"])) == w["purge_bars"]
        assert len(in_range(w["test_from"], w["test_until"])) == w["test_bars"] > 0
        if bars:
            assert w["purge_bars"] == int(purge)
            assert w["train_bars"] == (int(train) + k * int(test) if anchored else int(train))
            assert w["test_bars"] == int(test) or k == len(ws) - 1
        else:
            assert w["test_from"] - w["train_until"] == {"0": timedelta(0), "2 weeks": timedelta(days=14)}[purge]
        assert w["train_from"] == ws[0]["train_from"] if anchored else True
        if k:
            prev = ws[k - 1]
            assert prev["test_until"] == w["test_from"]  # test windows tile the range, never overlap
            if not anchored:
                assert prev["train_from"] < w["train_from"]
    # together the test windows cover every bar after the first train window and purge, once
    covered = [t for w in ws for t in in_range(w["test_from"], w["test_until"])]
    assert covered == in_range(ws[0]["test_from"], datetime.fromisoformat(END + "T00:00:00+00:00"))


@pytest.mark.parametrize(
    ("train", "test", "purge"),
    [("252", "0", "0"), ("2 years", "63", "0"), ("252", "63", "1 week"), ("1 year", "1 second", "0"), ("x", "y", "0")],
    ids=["zero-test", "mixed", "mixed-purge", "too-many-windows", "not-a-size"],
)
def test_bad_window_sizes_are_refused(goog, train, test, purge):
    with pytest.raises(psycopg.Error) as exc:
        _windows(goog, train, test, purge, False)
    assert exc.value.sqlstate == "BT404"


def test_no_window_fits_a_short_range(goog):
    with pytest.raises(psycopg.Error) as exc:
        goog.execute(
            "SELECT backtest.walk_forward('sma_crossover', %s, %s, %s, %s, '{}', '2000', '100')",
            ([SYM], IV, START, END),
        )
    assert exc.value.sqlstate == "BT405"


def test_no_test_window_data_reaches_its_train_window(goog):
    """Every train run reads only bars that close before its test window minus the purge; and changing every bar
    from the purge gap on leaves the train runs (and so the choice) of that window exactly as they were."""
    wf = _wf(goog)
    ws = _window_rows(goog, wf["id"])
    step = timedelta(days=1)
    for w in ws:
        runs = _train_runs(goog, wf["id"], w)
        assert len(runs) == 4
        for r in runs:
            last = goog.execute(
                "SELECT max(b.ts) FROM backtest.runs r, backtest.bars(r, 1000) b WHERE r.id = %s", (r["id"],)
            ).fetchone()[0]
            assert last + step <= w["train_until"]  # the last bar it sees closes before the purge gap starts
            gap = goog.execute(
                "SELECT count(*) FROM market.bars WHERE symbol = %s AND interval = %s AND ts > %s AND ts < %s",
                (SYM, IV, last, w["test_from"]),
            ).fetchone()[0]
            assert gap == 5  # the purge: five bars between the last train bar and the first test bar
            fills = goog.execute("SELECT max(ts) FROM trading.fills WHERE account_id = %s", (r["account_id"],))
            assert (fills.fetchone()[0] or w["train_from"]) < w["train_until"]
        test_run = goog.execute("SELECT start_ts, end_ts FROM backtest.runs WHERE id = %s", (w["test_run_id"],))
        assert test_run.fetchone() == (w["test_from"], w["test_until"])

    k = 2  # perturb everything from window 2's purge gap on, differently per bar (bars stay valid)
    w = ws[k - 1]
    before = {
        json.dumps(r["params"]): (r["metrics"], account_rows(goog, r["account_id"]))
        for r in _train_runs(goog, wf["id"], w)
    }
    goog.execute(
        """UPDATE market.bars SET open = round(open * f, 2), high = round(high * f, 2), low = round(low * f, 2),
                                  close = round(close * f, 2)
           FROM (SELECT b.ts AS t, (1 + 0.1 * sin(extract(epoch FROM b.ts) / 86400.0))::numeric AS f
                 FROM market.bars b WHERE b.symbol = %(s)s AND b.interval = %(i)s AND b.ts >= %(t)s) x
           WHERE symbol = %(s)s AND interval = %(i)s AND ts = x.t""",
        {"s": SYM, "i": IV, "t": w["train_until"]},
    )
    wf2 = _wf(goog)
    ws2 = _window_rows(goog, wf2["id"])
    assert [(x["train_from"], x["train_until"], x["test_from"]) for x in ws2] == [
        (x["train_from"], x["train_until"], x["test_from"]) for x in ws
    ]
    after = {
        json.dumps(r["params"]): (r["metrics"], account_rows(goog, r["account_id"]))
        for r in _train_runs(goog, wf2["id"], ws2[k - 1])
    }
    assert after == before
    assert ws2[k - 1]["chosen_params"] == w["chosen_params"]
    # the change did reach the test window: its out-of-sample result moved
    assert ws2[k - 1]["test_metrics"]["final_equity"] != w["test_metrics"]["final_equity"]


def test_selection_picks_the_best_by_the_objective(goog):
    wf = _wf(goog, objective="total_return")
    for w in _window_rows(goog, wf["id"]):
        runs = _train_runs(goog, wf["id"], w)
        best = max(runs, key=lambda r: r["metrics"]["total_return"])
        assert w["objective"] == "total_return"
        scores = [r["metrics"]["total_return"] for r in runs]
        assert float(w["train_score"]) == max(scores)
        chosen = next(r for r in runs if r["id"] == w["best_train_run_id"])
        assert chosen["metrics"]["total_return"] == max(scores)
        if scores.count(max(scores)) == 1:
            assert chosen["id"] == best["id"]
        assert w["chosen_params"] == {
            k: next(r for r in runs if r["id"] == w["best_train_run_id"])["params"][k] for k in GRID
        }
        ids = [r["id"] for r in runs]
        low = goog.execute("SELECT run_id, score, objective FROM backtest.best_run(%s, '-total_return')", (ids,))
        worst = min(runs, key=lambda r: r["metrics"]["total_return"])
        lo = low.fetchone()
        assert (float(lo[1]), lo[2]) == (worst["metrics"]["total_return"], "-total_return")
        # an objective no run reports: total_return decides, and the result says so
        fb = goog.execute("SELECT score, objective FROM backtest.best_run(%s, 'no_such_metric')", (ids,)).fetchone()
        assert (float(fb[0]), fb[1]) == (max(scores), "total_return")
    # the default objective is sharpe; until the metrics report it, total_return decides (recorded per window)
    wf_default = _wf(goog, objective="sharpe")
    some_run = _train_runs(goog, wf_default["id"], _window_rows(goog, wf_default["id"])[0])[0]
    expected = "sharpe" if "sharpe" in some_run["metrics"] else "total_return"
    assert {w["objective"] for w in _window_rows(goog, wf_default["id"])} == {expected}


def test_stitched_equity_is_the_chained_test_runs(goog):
    wf = _wf(goog, anchored=True)
    ws = _window_rows(goog, wf["id"])
    cur = goog.cursor(row_factory=dict_row)
    curve = cur.execute("SELECT * FROM backtest.walk_forward_equity(%s)", (wf["id"],)).fetchall()
    expected, cash, compounded = [], BASE["cash"], float(BASE["cash"])
    for w in ws:
        t = cur.execute("SELECT * FROM backtest.runs WHERE id = %s", (w["test_run_id"],)).fetchone()
        assert t["purpose"] == "wf_test" and t["parent_id"] == wf["id"]
        assert float(t["params"]["cash"]) == float(cash) == float(w["start_equity"])
        snaps = cur.execute(
            "SELECT ts, total_value FROM trading.portfolio_snapshots WHERE account_id = %s ORDER BY ts",
            (t["account_id"],),
        ).fetchall()
        assert snaps[0]["ts"] > w["test_from"] and snaps[-1]["ts"] <= w["test_until"]
        expected += [(s["ts"], w["n"], s["total_value"]) for s in snaps]
        assert w["end_equity"] == snaps[-1]["total_value"]
        compounded *= float(snaps[-1]["total_value"]) / float(cash)
        cash = round(snaps[-1]["total_value"], 2)
    assert [(c["ts"], c["n"], c["total_value"]) for c in curve] == expected
    assert all(a["ts"] < b["ts"] for a, b in zip(curve, curve[1:], strict=False))
    m = wf["metrics"]
    assert m["final_equity"] == float(curve[-1]["total_value"])
    # compounding the windows' returns from the initial cash gives the stitched end (up to the cents carried over)
    assert abs(compounded - float(m["final_equity"])) < 0.01 * len(ws)
    peak, dd = 0.0, 0.0
    for c in curve:
        peak = max(peak, float(c["total_value"]))
        dd = max(dd, (peak - float(c["total_value"])) / peak)
    assert abs(float(m["max_drawdown"]) - dd) < 1e-9


def test_parallel_walk_forward_equals_the_sequential_one(db_url):
    with psycopg.connect(db_url) as conn:
        ensure_sample(conn, SYM)
    batch = backtest_parallel.walk_forward(
        db_url,
        strategy="sma_crossover",
        symbols=[SYM],
        interval=IV,
        start=START,
        end=END,
        params=BASE,
        train="252",
        test="126",
        purge="5",
        grid=GRID,
        objective="total_return",
        jobs=3,
    )
    with psycopg.connect(db_url) as conn:
        seq = _wf(conn)
        par = (
            conn.cursor(row_factory=dict_row)
            .execute("SELECT * FROM backtest.runs WHERE id = %s", (batch.run_id,))
            .fetchone()
        )
        assert par["status"] == "done" and par["metrics"] == seq["metrics"]
        cols = (
            "n",
            "train_from",
            "train_until",
            "test_from",
            "test_until",
            "chosen_params",
            "train_score",
            "start_equity",
            "end_equity",
            "test_metrics",
            "objective",
        )
        a, b = _window_rows(conn, par["id"]), _window_rows(conn, seq["id"])
        assert [tuple(w[c] for c in cols) for w in a] == [tuple(w[c] for c in cols) for w in b]
        assert len(batch.results) == 4 * len(a)
        conn.rollback()


# --- ML strategies: a model trained on each train window only, traded on the next test window ----------------------
# The strategy contract (issue 13): an ML strategy takes {"model_id": <ml.models id>} and trades that model's
# signals (ml_signal, db/procedures/backtest_strategy_ml_signal.sql).


@pytest.fixture
def ml_strategy(goog) -> str:
    return "ml_signal"


def _begin_state(conn, strategy: str, grid: str | None, ml: str | None, train: str = "504") -> str:
    with pytest.raises(psycopg.Error) as exc:
        with conn.transaction():
            conn.execute(
                "SELECT backtest.walk_forward(%s, %s, %s, %s, %s, '{}', %s, '126', '0', false, %s::jsonb, 'sharpe',"
                " %s::jsonb)",
                (strategy, [SYM], IV, START, END, train, grid, ml),
            )
    return exc.value.sqlstate


def test_ml_settings_need_an_ml_strategy(ml_strategy, goog):
    assert _begin_state(goog, "sma_crossover", None, '{"kind": "logreg"}') == "BT406"
    assert _begin_state(goog, ml_strategy, '{"fast": [5]}', None) == "BT406"
    assert _begin_state(goog, ml_strategy, None, '{"kind": "logreg", "C": 1}') == "BT406"
    # a train window too short to fit a model: ml.train's failure, with its reason, stops the walk-forward
    assert _begin_state(goog, ml_strategy, None, '{"kind": "logreg"}', train="3") == "BT408"


def test_ml_walk_forward_trains_on_each_train_window_only(ml_strategy, goog):
    strategy = ml_strategy
    cur = goog.cursor(row_factory=dict_row)
    wf = cur.execute(
        "SELECT * FROM backtest.walk_forward(%s, %s, %s, %s, %s, %s::jsonb, '504', '252', '5', false, NULL, 'sharpe',"
        ' \'{"kind": "logreg"}\')',
        (strategy, [SYM], IV, "2005-01-01", "2012-01-01", json.dumps(BASE)),
    ).fetchone()
    assert wf["status"] == "done", wf["error"]
    ws = _window_rows(goog, wf["id"])
    assert len(ws) >= 3
    models = set()
    for w in ws:
        m = cur.execute(
            "SELECT m.*, t.train_from AS req_from, t.train_until AS req_until FROM ml.models m"
            " JOIN ml.training_runs t ON t.model_id = m.id WHERE m.id = %s",
            (w["model_id"],),
        ).fetchone()
        models.add(m["id"])
        # the model saw the train window only: its rows (and their next-bar labels) end before the purge gap
        assert w["train_from"] <= m["req_from"] and m["req_until"] < w["train_until"] <= w["test_from"]
        assert m["train_from"] >= w["train_from"] and m["train_until"] <= m["req_until"]
        assert datetime.fromisoformat(m["metrics"]["test_until"]) <= m["req_until"]
        t = cur.execute("SELECT * FROM backtest.runs WHERE id = %s", (w["test_run_id"],)).fetchone()
        assert t["params"]["model_id"] == m["id"] and (t["start_ts"], t["end_ts"]) == (w["test_from"], w["test_until"])
        assert t["status"] == "done"
    assert len(models) == len(ws)  # a new model per window
    assert wf["metrics"]["final_equity"] == float(ws[-1]["end_equity"])


def test_cli_walk_forward(monkeypatch, db_url):
    from click.testing import CliRunner

    from pgtrade.cli import main

    monkeypatch.setenv("PGTRADE_DATABASE_URL", db_url)
    with psycopg.connect(db_url) as conn:
        ensure_sample(conn, SYM)
        n_windows = len(_windows(conn, "252", "126", "5", True))
    args = ["backtest", "walk-forward", "--strategy", "sma_crossover", "--symbols", SYM, "--start", START, "--end", END]
    args += [
        "--train",
        "252",
        "--test",
        "126",
        "--purge",
        "5",
        "--anchored",
        "--grid",
        "fast=5,10",
        "--grid",
        "slow=20",
    ]
    args += ["--param", "cash=10000", "--objective", "total_return", "--jobs", "2"]
    r = CliRunner().invoke(main, [*args, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["status"] == "done" and len(out["windows"]) == n_windows
    assert out["equity"][-1]["total_value"] == out["metrics"]["final_equity"] == out["windows"][-1]["end_equity"]
    table = CliRunner().invoke(main, args)
    assert table.exit_code == 0 and "stitched out-of-sample: 10000.00 ->" in table.output
    bad = CliRunner().invoke(main, [*args[:-2], "--train", "2 years", "--jobs", "1"])
    assert bad.exit_code == 1 and "BT404" in bad.output and "Traceback" not in bad.output
