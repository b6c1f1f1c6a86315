"""``pgtrade backtest`` against the real database: run (table and --json with metrics and trade list), list, show,
compare, report, strategies; a failed run exits 1 with its error; bad input ends in one line and exit 1. The runs
commit (the CLI commits), each test reads back only its own."""

from __future__ import annotations

import json

import psycopg
import pytest
from backtest_support import ensure_sample
from click.testing import CliRunner

from pgtrade.backtest_report import CHART_IDS
from pgtrade.cli import main

GOOG = ("--strategy", "sma_crossover", "--symbols", "GOOG", "--start", "2004-01-01", "--end", "2014-01-01")


@pytest.fixture
def cli_db(monkeypatch, db_url, db):
    """The CLI on the test database, with GOOG daily loaded (committed: shared sample data)."""
    monkeypatch.setenv("PGTRADE_DATABASE_URL", db_url)
    ensure_sample(db, "GOOG")
    return db_url


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def run_json(*args) -> dict:
    r = cli("backtest", "run", *args, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_run_json_holds_the_run_its_metrics_and_its_trade_list(cli_db):
    out = run_json(*GOOG, "--cash", 10000, "--commission", 0.002)
    run, metrics = out["run"], out["metrics"]
    assert (run["status"], run["mode"], run["strategy"], run["symbols"]) == ("done", "fast", "sma_crossover", ["GOOG"])
    assert run["params"]["cash"] == 10000 and run["params"]["commission"] == 0.002
    assert metrics == run["metrics"] and metrics["final_equity"] == 63341.23  # the reference run (backtesting.py)
    with psycopg.connect(cli_db) as conn:
        stored = conn.execute("SELECT status, metrics, account_id FROM backtest.runs WHERE id = %s", (run["id"],))
        status, m, account_id = stored.fetchone()
        assert (status, m) == ("done", metrics)  # committed
        if conn.execute("SELECT to_regclass('backtest.trades')").fetchone()[0]:
            n = conn.execute("SELECT count(*) FROM backtest.trades WHERE run_id = %s", (run["id"],)).fetchone()[0]
            assert out["trades_source"] == "backtest.trades" and len(out["trades"]) == n > 0
        else:  # until backtest.trades exists: the fills of the run's account, as stored
            fills = conn.execute(
                "SELECT side, qty, price, commission, ts FROM trading.fills WHERE account_id = %s ORDER BY id",
                (account_id,),
            ).fetchall()
            assert out["trades_source"] == "trading.fills" and len(fills) == run["fills"] == 93
            got = [(t["side"], t["qty"], t["price"], t["commission"], t["ts"]) for t in out["trades"]]
            assert got == [(s, float(q), float(p), float(c), ts.isoformat()) for s, q, p, c, ts in fills]
    # the same parameters spelled as --param give the same parameters hash (10000 stays an integer)
    again = run_json(*GOOG, "--param", "cash=10000", "--param", "commission=0.002")
    assert again["run"]["params_hash"] == run["params_hash"] and again["metrics"] == metrics


def test_run_prints_the_metrics_and_list_show_compare_read_the_runs(cli_db):
    r = cli("backtest", "run", *GOOG, "--param", "fast=5", "--param", "slow=30", "--slippage", 5)
    assert r.exit_code == 0, r.output
    assert "done" in r.output and "final_equity" in r.output
    a = run_json(*GOOG)["run"]
    b = run_json(*GOOG, "--param", "fast=5", "--param", "slow=30", "--mode", "exact")["run"]
    assert b["mode"] == "exact" and b["params"]["fast"] == 5
    listed = json.loads(cli("backtest", "list", "--json", "--limit", 5).stdout)
    assert [x["id"] for x in listed[:2]] == [b["id"], a["id"]]
    table = cli("backtest", "list").output
    assert f"{100 * a['metrics']['total_return']:.2f}%" in table and "sma_crossover" in table

    shown = cli("backtest", "show", a["id"])
    assert shown.exit_code == 0, shown.output
    for text in (a["params_hash"], a["data_hash"], "total_return", "trades (", "slippage_bps"):
        assert text in shown.output, text
    assert json.loads(cli("backtest", "show", a["id"], "--json").stdout)["run"]["id"] == a["id"]

    cmp = cli("backtest", "compare", a["id"], b["id"])
    assert cmp.exit_code == 0, cmp.output
    assert f"run {a['id']}" in cmp.output and f"run {b['id']}" in cmp.output and "param fast" in cmp.output
    rows = json.loads(cli("backtest", "compare", a["id"], b["id"], "--json").stdout)
    assert [x["metrics"] for x in rows] == [a["metrics"], b["metrics"]]


def test_report_writes_one_self_contained_page(cli_db, tmp_path):
    a = run_json(*GOOG)["run"]
    out = tmp_path / "report.html"
    r = cli("backtest", "report", a["id"], "--out", out)
    assert r.exit_code == 0, r.output
    html = out.read_text()
    assert all(f'id="{cid}"' in html for cid in CHART_IDS) and "plotly.js v" in html
    assert f"{out.stat().st_size:,} bytes" in r.output  # tests/test_backtest_report.py checks what Chromium shows


def test_a_failed_run_exits_1_with_its_error(cli_db):
    args = ("--strategy", "sma_crossover", "--symbols", "GOOG", "--start", "1990-01-01", "--end", "1991-01-01")
    r = cli("backtest", "run", *args)
    assert r.exit_code == 1 and "failed: BT007: no 1d bars of GOOG" in r.output and "Traceback" not in r.output
    j = cli("backtest", "run", *args, "--json")
    assert j.exit_code == 1
    failed = json.loads(j.stdout)["run"]
    assert failed["status"] == "failed" and failed["error"].startswith("BT007")
    shown = cli("backtest", "show", failed["id"])
    assert shown.exit_code == 1 and "BT007" in shown.output
    r = cli("backtest", "report", failed["id"], "--out", "/dev/null")
    assert r.exit_code == 1 and "nothing to report" in r.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("run", "--strategy", "nope", "--symbols", "GOOG", "--start", "2004-01-01", "--end", "2005-01-01"), "BT001"),
        (("run", *GOOG[:4], "--start", "2005-01-01", "--end", "2004-01-01"), "BT003"),
        (("run", *GOOG, "--interval", "7m"), "BT003"),
        (("run", *GOOG, "--param", "fastt=3"), "BT004"),
        (("run", *GOOG, "--commission", 1.5), "BT004"),
        (("run", *GOOG, "--param", "fast"), "key=value"),
        (("run", *GOOG, "--cash", "lots"), "--cash must be a number"),
        (("run", *GOOG, "--cash", 5, "--param", "cash=6"), "cash given twice"),
        (("run", *GOOG, "--symbols", "NOSUCH"), "BT002"),
        (("show", 987654321), "no backtest run 987654321"),
        (("compare", 1), "two or more run ids"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(cli_db, args, expected):
    r = cli("backtest", *args)
    assert r.exit_code == 1, r.output
    assert expected in r.output and "Traceback" not in r.output


def test_strategies_lists_the_registry(cli_db):
    rows = json.loads(cli("backtest", "strategies", "--json").stdout)
    with psycopg.connect(cli_db) as conn:
        names = [n for (n,) in conn.execute("SELECT name FROM backtest.strategies ORDER BY name")]
    assert [r["name"] for r in rows] == names and "sma_crossover" in names
    assert "sma_crossover" in cli("backtest", "strategies").output
