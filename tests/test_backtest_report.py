"""The HTML report of a run (pgtrade backtest report) as a person sees it: headless Chromium (Debian's ``chromium``,
scripts/install-system.sh) opens the page from a file without a network, and the test fails unless every chart
rendered: plotly's SVG with drawn traces in each chart's container (the DOM after rendering), and enough colored
pixels inside each container's box on a screenshot (tests/chromium_support.py, shared with the dashboard's test).
The same check fails on the page without its plotly script. The page's figures are also checked against the
database: buy and hold from the bars, monthly returns compounding to the final equity."""

from __future__ import annotations

import math
import re
from pathlib import Path

import chromium_support
import pytest
from backtest_support import ensure_sample, run

from pgtrade import backtest_report
from pgtrade.backtest_report import CHART_IDS, render
from pgtrade.errors import PgtradeError


def rendered(page: Path, tmp: Path) -> dict[str, list[str]]:
    """Open ``page`` in headless Chromium; per chart of the report, what is wrong with it (tests/chromium_support)."""
    return chromium_support.rendered(page, tmp, CHART_IDS)


@pytest.fixture
def two_symbol_run(db):
    ensure_sample(db, "GOOG")
    ensure_sample(db, "SPX")
    return run(db, "sma_crossover", ["GOOG", "SPX"], "1d", "2005-01-01", "2012-01-01", {"fast": 5, "slow": 30})


def test_the_report_renders_every_chart_in_headless_chromium(db, two_symbol_run, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render(db, two_symbol_run["id"]), encoding="utf-8")
    html = page.read_text(encoding="utf-8")
    # self-contained: no script, style sheet or image from the network; plotly.js inline
    assert not re.search(r"<(script|link|img)\b[^>]*\b(src|href)=[\"']?(https?:)?//", html)
    assert "plotly.js v" in html
    problems = rendered(page, tmp_path)
    assert problems == {cid: [] for cid in CHART_IDS}, problems
    # the metrics table holds the run's metrics (beside buy and hold's when the metrics hold them)
    keys = backtest_report.metric_keys([two_symbol_run["metrics"]])
    assert keys and all(f"<th>{key}</th>" in html for key in keys)


def test_the_check_fails_when_plotly_is_missing(db, two_symbol_run, tmp_path):
    """Without its plotly script the page shows titles and tables but no chart: the check above catches it."""
    html = render(db, two_symbol_run["id"])
    stripped, n = re.subn(r"<script>/\*\*\s*\* plotly\.js v.*?</script>", "", html, flags=re.S)
    assert n == 1 and "plotly.js v" not in stripped
    page = tmp_path / "no-plotly.html"
    page.write_text(stripped, encoding="utf-8")
    problems = rendered(page, tmp_path)
    assert all(problems[cid] for cid in CHART_IDS), problems


def test_buy_and_hold_and_monthly_returns_agree_with_the_database(db, two_symbol_run):
    r = two_symbol_run
    cash = float(r["params"]["cash"])
    bars = backtest_report._bars(db, r)
    bh = backtest_report.buy_and_hold(bars, cash)
    # from SQL: the cash split equally, each share grown by last close / first close of the range
    growth = db.execute(
        """WITH b AS (SELECT symbol, ts, close FROM market.bars
                      WHERE symbol = ANY (%(s)s) AND interval = '1d' AND ts >= %(a)s AND ts < %(b)s)
           SELECT avg(l.close / f.close)::float8
           FROM (SELECT DISTINCT ON (symbol) symbol, close FROM b ORDER BY symbol, ts) f
           JOIN (SELECT DISTINCT ON (symbol) symbol, close FROM b ORDER BY symbol, ts DESC) l USING (symbol)""",
        {"s": r["symbols"], "a": r["start_ts"], "b": r["end_ts"]},
    ).fetchone()[0]
    assert math.isclose(bh.iloc[-1], cash * growth, rel_tol=1e-12)
    assert bh.iloc[0] == cash  # both series start on the same day: nothing has moved yet
    stored = (r["metrics"].get(backtest_report.BENCHMARK) or {}).get("final_equity")
    if stored is not None:  # the metrics' buy and hold (docs/backtesting.md, Metrics) is the same curve
        assert math.isclose(bh.iloc[-1], stored, rel_tol=1e-9)
    equity = backtest_report._equity(db, r)
    monthly = backtest_report.monthly_returns(equity, cash).stack()
    assert len(monthly) == 7 * 12  # 2005-01 .. 2011-12
    assert math.isclose(float((1 + monthly).prod()) * cash, r["metrics"]["final_equity"], rel_tol=1e-9)


def test_a_failed_run_has_no_report(db):
    ensure_sample(db, "GOOG")
    row = db.execute("SELECT id FROM backtest.run('sma_crossover', '{GOOG}', '1d', '1990-01-01', '1991-01-01')")
    with pytest.raises(PgtradeError, match="failed: BT007"):
        render(db, row.fetchone()[0])
