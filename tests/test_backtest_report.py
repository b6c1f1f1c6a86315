"""The HTML report of a run (pgtrade backtest report) as a person sees it: headless Chromium (Debian's ``chromium``,
scripts/install-system.sh) opens the page from a file without a network, and the test fails unless every chart
rendered: plotly's SVG with drawn traces in each chart's container (the DOM after rendering), and enough colored
pixels inside each container's box on a screenshot. The same check fails on the page without its plotly script.
The page's figures are also checked against the database: buy and hold from the bars, monthly returns compounding
to the final equity."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from backtest_support import ensure_sample, run
from PIL import Image

from pgtrade import backtest_report
from pgtrade.backtest_report import CHART_IDS, render
from pgtrade.errors import PgtradeError

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH = 1200
MIN_COLORED = 400  # pixels of a saturated color (lines, markers, heatmap cells) each chart must show at least
# after rendering, write each chart container's box into the DOM (the report itself carries no such script)
PROBE = """<script>
window.addEventListener('load', () => setTimeout(() => {
  const boxes = {};
  for (const id of %s) {
    const el = document.getElementById(id);
    if (el) { const r = el.getBoundingClientRect(); boxes[id] = [r.left, r.top + window.scrollY, r.width, r.height]; }
  }
  document.body.setAttribute('data-boxes', JSON.stringify(boxes));
  document.body.setAttribute('data-height', String(document.documentElement.scrollHeight));
}, 300));
</script>"""


def _chromium(tmp: Path, page: Path, *args: str, height: int) -> subprocess.CompletedProcess:
    assert CHROMIUM, "headless Chromium is needed: apt-get install chromium (scripts/install-system.sh)"
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",  # the tests may run as root (containers, CI)
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={tmp / 'profile'}",
        f"--window-size={WIDTH},{height}",
        "--virtual-time-budget=15000",  # let the inline scripts run and plotly draw before the dump / screenshot
        *args,
        page.as_uri(),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


def _colored(px: tuple[int, ...]) -> bool:
    r, g, b = px[:3]
    return max(r, g, b) - min(r, g, b) > 80  # plotly's trace colors; not white, grey text or the pale plot area


def rendered(page: Path, tmp: Path) -> dict[str, list[str]]:
    """Open ``page`` in headless Chromium; per chart id, what is wrong with it (an empty list: it rendered)."""
    probe = tmp / f"probe-{page.name}"
    text = page.read_text(encoding="utf-8")
    probe.write_text(text.replace("</body>", PROBE % json.dumps(list(CHART_IDS)) + "</body>"), encoding="utf-8")
    dom = _chromium(tmp, probe, "--dump-dom", height=1000).stdout
    boxes = json.loads(re.search(r'data-boxes="([^"]*)"', dom).group(1).replace("&quot;", '"'))
    height = int(re.search(r'data-height="(\d+)"', dom).group(1))
    shot = tmp / f"{page.stem}.png"
    _chromium(tmp, probe, f"--screenshot={shot}", height=height)
    img = Image.open(shot).convert("RGB")
    problems: dict[str, list[str]] = {}
    starts = sorted((dom.find(f'id="{cid}"'), cid) for cid in CHART_IDS)
    for i, (at, cid) in enumerate(starts):
        wrong: list[str] = []
        part = dom[at : starts[i + 1][0]] if i + 1 < len(starts) else dom[at:]
        if at < 0 or 'class="main-svg"' not in part:
            wrong.append("no plotly svg")
        elif not re.search(r'class="(js-line|point|hm|bars)"|<image ', part):
            wrong.append("no trace drawn")
        x, y, w, h = (int(v) for v in boxes.get(cid, [0, 0, 0, 0]))
        if w <= 0 or h <= 0:
            wrong.append("empty box")
        else:
            crop = img.crop((x, y, min(x + w, img.width), min(y + h, img.height)))
            n = sum(1 for px in crop.get_flattened_data() if _colored(px))
            if n < MIN_COLORED:
                wrong.append(f"{n} colored pixels")
        problems[cid] = wrong
    return problems


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
