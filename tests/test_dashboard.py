"""The operations dashboard (``pgtrade dashboard``) as a person sees it.

Activity is built through the real procedures, as the live path makes it: a 24/7 instrument fed 1-minute bars with
the feed's clock, an active model whose signals auto-trade a live account (signals, orders, fills, brackets), a
price spike (anomalies, an alert), a manual market order, and portfolio snapshots at the feed's times. The page
(``ops.dashboard()``'s JSON rendered with plotly inlined) is opened in headless Chromium and the test fails unless
every chart drew (tests/chromium_support.py: plotly's SVG with traces, and colored pixels inside each chart's box on a
screenshot); the same check fails on a page whose charts have no data and on a page without plotly's script. The
served page answers ``/`` and ``/data.json`` from the same function, and a fill committed while it runs shows up in
the next ``/data.json`` and, in Chromium, in the open page's charts without a reload."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import chromium_support
import psycopg
import pytest
from click.testing import CliRunner
from ml_support import register_model, toy_model, walk
from trading_support import account, instrument, order

from pgtrade import dashboard
from pgtrade.cli import main
from pgtrade.cluster import free_port
from pgtrade.dashboard import CHART_IDS, Query
from pgtrade.ingest import ingest_batch

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2024, 3, 4, 0, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
N_BARS = 160  # anomalies are scored once 120 bars precede a bar (ml.anomaly_window)
# a drawn panel here may be three markers (three anomalies: about 250 colored pixels with the legend); a chart with
# no trace, or no chart, shows none (test_the_check_fails_on_charts_without_data_and_without_plotly)
MIN_COLORED = 100
SPIKE = 140  # this bar jumps 8 % (a price anomaly, and an alert: the feed's clock is at the bar)


def seed(conn: psycopg.Connection, sym: str, name: str) -> int:
    """A live account auto-trading an always-BUY model on ``sym``, fed N_BARS bars in five batches with a snapshot
    after each, plus one manual market buy. Returns the account id."""
    instrument(conn, sym, asset_class="crypto", session_open=None, session_close=None, trades_weekends=True)
    model = f"t_dash_{sym.lower()}"
    register_model(conn, toy_model(), name=model, symbols=[sym], interval="1m", buy_threshold=0.0, sell_threshold=0.0)
    aid = account(conn, name, kind="live", clock=None, max_position_pct=10)
    conn.execute(
        "INSERT INTO trading.auto_trading (account_id, enabled, models, min_confidence) VALUES (%s, true, %s, 0)",
        (aid, [model]),
    )
    bars = walk(sym, N_BARS, T0, places=4)
    b = bars[SPIKE]
    up = Decimal(b.open) * Decimal("1.08")
    bars[SPIKE] = replace(b, close=f"{up:.4f}", high=f"{up * Decimal('1.001'):.4f}")
    done = 0
    for upto in (60, 100, 130, 145, N_BARS):
        clock = bars[upto - 1].ts + MIN
        ingest_batch(conn, bars[done:upto], source="test", feed_now=clock)
        conn.execute("SELECT trading.snapshot_portfolio(%s)", (aid,))
        done = upto
    o = order(conn, aid, sym, "buy", 1)
    assert o["status"] == "filled", o
    return aid


def counts(conn: psycopg.Connection, aid: int) -> dict:
    return dict(
        zip(
            ("fills", "snapshots", "orders"),
            conn.execute(
                "SELECT (SELECT count(*) FROM trading.fills WHERE account_id = %(a)s),"
                " (SELECT count(*) FROM trading.portfolio_snapshots WHERE account_id = %(a)s),"
                " (SELECT count(*) FROM trading.orders WHERE account_id = %(a)s)",
                {"a": aid},
            ).fetchone(),
            strict=True,
        )
    )


@pytest.fixture
def busy(db, unique_symbol):
    name = f"dash {unique_symbol}"
    aid = seed(db, unique_symbol, name)
    return {"id": aid, "name": name, "symbol": unique_symbol}


def test_the_data_is_the_database(db, busy):
    """ops.dashboard() restates nothing: value over time is the snapshots, the figures are trading.portfolio's."""
    d = json.loads(dashboard.fetch(db, Query(accounts=(busy["name"],))))
    (a,) = d["accounts"]
    c = counts(db, busy["id"])
    assert c["fills"] >= 3 and c["orders"] >= 3 and c["snapshots"] == 5
    assert a["fill_count"] == c["fills"] == len(a["fills"])
    assert sum(a["orders_by_status"].values()) == c["orders"]
    snaps = db.execute(
        "SELECT to_jsonb(ts), to_jsonb(total_value) FROM trading.portfolio_snapshots WHERE account_id = %s ORDER BY ts",
        (busy["id"],),
    ).fetchall()
    assert list(zip(a["snapshots"]["ts"], a["snapshots"]["total_value"], strict=True)) == [tuple(r) for r in snaps]
    port = db.execute("SELECT to_jsonb(p) FROM trading.portfolio(%s) p", (busy["id"],)).fetchone()[0]
    assert a["portfolio"] == port
    held = db.execute(
        "SELECT symbol, to_jsonb(value) FROM trading.position_values WHERE account_id = %s AND qty <> 0",
        (busy["id"],),
    ).fetchall()
    assert [(p["symbol"], p["value"]) for p in a["positions"]] == [tuple(r) for r in held] and held
    assert {s["symbol"] for s in d["signals"]} == {busy["symbol"]} and {s["signal"] for s in d["signals"]} == {"BUY"}
    assert any(x["symbol"] == busy["symbol"] and x["type"] == "price" for x in d["anomalies"])
    assert any(x["symbol"] == busy["symbol"] for x in d["alerts"])
    assert d["health"].keys() >= {"status", "problems", "pg_cron", "timescaledb_jobs"}
    # thinned to at most `points` real snapshots per account: the last of each equal time bucket. The snapshots are
    # at minutes 60, 100, 130, 145 and 160 of the feed: two buckets split at minute 110
    thin = json.loads(dashboard.fetch(db, Query(accounts=(busy["name"],), points=2)))["accounts"][0]["snapshots"]
    assert thin["ts"] == [snaps[1][0], snaps[4][0]] and thin["total_value"] == [snaps[1][1], snaps[4][1]]
    # newest first, at most `max_rows`
    few = json.loads(dashboard.fetch(db, Query(accounts=(busy["name"],), max_rows=2)))["accounts"][0]
    assert [f["id"] for f in few["fills"]] == [f["id"] for f in a["fills"][:2]]


def test_the_page_renders_every_chart_in_headless_chromium(db, busy, tmp_path):
    page = tmp_path / "dashboard.html"
    t0 = time.perf_counter()
    size = dashboard.write(db, Query(accounts=(busy["name"],)), page)
    text = page.read_text(encoding="utf-8")
    # self-contained: no script, style sheet or image from the network; plotly.js inline
    assert not re.search(r"<(script|link|img)\b[^>]*\b(src|href)=[\"']?(https?:)?//", text)
    assert "plotly.js v" in text and size == len(text.encode())
    t1 = time.perf_counter()
    problems = chromium_support.rendered(page, tmp_path, CHART_IDS, min_colored=MIN_COLORED)
    print(f"page {size / 1e6:.2f} MB written in {t1 - t0:.2f} s; Chromium check {time.perf_counter() - t1:.1f} s")
    assert problems == {cid: [] for cid in CHART_IDS}, problems


def _dom(page: Path, tmp: Path) -> str:
    return chromium_support.chromium(tmp, page.as_uri(), "--dump-dom", height=1000).stdout


def test_the_check_fails_on_charts_without_data_and_without_plotly(db, busy, tmp_path):
    """An account with no activity gets the empty-state sentences, not charts, and the check flags every chart;
    the busy page without plotly's script fails it too."""
    idle = f"idle {busy['symbol']}"
    account(db, idle, kind="live", clock=None)
    (since,) = db.execute("SELECT now() - interval '1 second'").fetchone()  # none of the seeded 2024 bars' signals
    page = tmp_path / "idle.html"
    dashboard.write(db, Query(accounts=(idle,), since=since), page)
    problems = chromium_support.rendered(page, tmp_path, CHART_IDS, min_colored=MIN_COLORED)
    assert all(problems[cid] for cid in CHART_IDS), problems
    dom = _dom(page, tmp_path)
    shown = dict(re.findall(r'<p class="empty" id="(chart-[a-z]+)-empty" style="display: block;">([^<]*)</p>', dom))
    assert shown == {
        "chart-value": "no portfolio snapshots yet (live accounts are snapshotted every minute by pg_cron)",
        "chart-positions": "no open positions",
        "chart-orders": "no orders yet",
        "chart-fills": "no fills yet",
        "chart-signals": "no signals yet",
        "chart-anomalies": "no anomalies yet",
    }, shown
    busy_page = dashboard.render(dashboard.fetch(db, Query(accounts=(busy["name"],))))
    stripped, n = re.subn(r"<script>/\*\*\s*\* plotly\.js v.*?</script>", "", busy_page, flags=re.S)
    assert n == 1 and "plotly.js v" not in stripped
    bare = tmp_path / "no-plotly.html"
    bare.write_text(stripped, encoding="utf-8")
    problems = chromium_support.rendered(bare, tmp_path, CHART_IDS, min_colored=MIN_COLORED)
    assert all(problems[cid] for cid in CHART_IDS), problems


# ---------------------------------------------------------------------------------------------------- the CLI
@pytest.fixture
def cli_env(monkeypatch, db_url):
    monkeypatch.setenv("PGTRADE_DATABASE_URL", db_url)


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--json", "--account", "no such account"], 1, ["TR013", "unknown account no such account", "hint:"]),
        (["--json", "--since", "yesterday"], 1, ["--since: not a date"]),
        (["--json", "--since", "2999-01-01"], 1, ["OP401", "in the future", "hint:"]),
        (["--out", "/nonexistent/dir/d.html"], 1, ["--out: no directory"]),
        (["--out", "x.html", "--serve"], 2, ["exactly one of --out"]),
        ([], 2, ["exactly one of --out"]),
        (["--json", "--all", "--account", "default"], 2, ["exclude each other"]),
        (["--json", "--limit", "0"], 2, ["--limit"]),
        (["--serve", "--refresh", "0"], 2, ["--refresh"]),
    ],
)
def test_bad_input_ends_in_one_clear_line(cli_env, args, code, says):
    result = CliRunner().invoke(main, ["dashboard", *args])
    assert result.exit_code == code, result.output
    assert all(s in result.output for s in says), result.output
    assert "Traceback" not in result.output


def test_the_sql_function_refuses_bad_arguments(db):
    for call in ("ops.dashboard(max_rows => 0)", "ops.dashboard(points => 1)",
                 "ops.dashboard(since => now() + interval '1 day')"):  # fmt: skip
        with pytest.raises(psycopg.Error) as e, db.transaction():
            db.execute(f"SELECT {call}")
        assert e.value.diag.sqlstate == "OP401" and e.value.diag.message_hint
    for accounts in ("'{}'::text[]", "ARRAY[NULL]::text[]", "'{default,nope}'::text[]"):
        with pytest.raises(psycopg.Error) as e, db.transaction():
            db.execute(f"SELECT ops.dashboard({accounts})")
        assert e.value.diag.sqlstate == "TR013" and e.value.diag.message_hint


def test_only_the_owner_reads_the_dashboard_function(db):
    """Least privilege: the CLI (the owner, its member pgtrade_jobs, or a superuser) reads it; the web roles, which
    execute api.* only, do not."""
    for role in ("web_anon", "trader", "pgtrade_admin", "authenticator"):
        exists = db.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        if exists:
            assert not db.execute(
                "SELECT has_function_privilege(%s, 'ops.dashboard(text[], timestamptz, integer, integer)', 'EXECUTE')",
                (role,),
            ).fetchone()[0], role


def test_out_writes_the_page_of_every_live_account(cli_env, tmp_path):
    out = tmp_path / "all.html"
    result = CliRunner().invoke(main, ["dashboard", "--all", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    data = json.loads(re.search(r'<script type="application/json" id="dashboard-data">(.*?)</script>', text, re.S)[1])
    assert "default" in [a["name"] for a in data["accounts"]] and {a["kind"] for a in data["accounts"]} == {"live"}


# ---------------------------------------------------------------------------------------------------- --serve
def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


@pytest.fixture
def served(db_url, unique_symbol):
    """A committed busy account and `pgtrade dashboard --serve` on it (its own process, refreshing every second)."""
    name = f"served {unique_symbol}"
    with psycopg.connect(db_url) as conn:
        aid = seed(conn, unique_symbol, name)
    port = free_port()
    env = os.environ | {"PGTRADE_DATABASE_URL": db_url, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "pgtrade.cli", "dashboard", "--serve", "--port", str(port), "--refresh", "1",
           "--account", name]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # the server prints its URL once it listens
        assert f"serving http://127.0.0.1:{port}/" in line, (line, proc.stderr.read() if proc.poll() else "")
        yield {"id": aid, "name": name, "symbol": unique_symbol, "url": f"http://127.0.0.1:{port}/"}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def new_fill(db_url: str, aid: int, sym: str) -> int:
    """Commit a market buy of one unit on the account at the feed's last time; the id of its fill."""
    with psycopg.connect(db_url) as conn:
        last = conn.execute("SELECT max(ts) FROM market.bars WHERE symbol = %s", (sym,)).fetchone()[0]
        conn.execute("SELECT set_config('pgtrade.feed_now', %s, true)", ((last + MIN).isoformat(),))
        o = order(conn, aid, sym, "buy", 1)
        assert o["status"] == "filled", o
        return conn.execute("SELECT max(id) FROM trading.fills WHERE order_id = %s", (o["id"],)).fetchone()[0]


def test_serve_answers_the_page_and_its_data_and_shows_a_new_fill(served, db_url):
    status, ctype, body = _get(served["url"])
    assert status == 200 and ctype.startswith("text/html")
    page = body.decode()
    assert "plotly.js v" in page and "const REFRESH_SECONDS = 1;" in page and served["name"] in page
    status, ctype, body = _get(served["url"] + "data.json")
    assert status == 200 and ctype == "application/json"
    before = json.loads(body)["accounts"][0]
    fill_id = new_fill(db_url, served["id"], served["symbol"])
    after = json.loads(_get(served["url"] + "data.json")[2])["accounts"][0]
    assert after["fill_count"] == before["fill_count"] + 1
    assert after["fills"][0]["id"] == fill_id and fill_id not in [f["id"] for f in before["fills"]]
    assert _get(served["url"] + "nope")[0] == 404


FILL_POINTS = "document.getElementById('chart-fills').data.reduce((n, t) => n + t.x.length, 0)"


def test_the_open_page_redraws_a_new_fill_in_place(served, db_url, tmp_path):
    """In Chromium, the served page refetches /data.json and redraws: a fill committed while it is open appears in
    its fills chart and table without a reload (the page's own state survives), and every chart still draws."""
    with chromium_support.Browser(tmp_path) as browser:
        browser.call("Page.navigate", url=served["url"])
        browser.wait_for("document.body && document.body.dataset.draws >= 1 && window.Plotly !== undefined")
        browser.evaluate("window.stillTheSamePage = true")
        fills_before = int(browser.evaluate("document.body.dataset.fills"))
        points_before = browser.evaluate(FILL_POINTS)
        draws = int(browser.wait_for("Number(document.body.dataset.draws) >= 2 && document.body.dataset.draws"))
        fill_id = new_fill(db_url, served["id"], served["symbol"])
        browser.wait_for(f"Number(document.body.dataset.fills) === {fills_before + 1}", timeout=30)
        assert int(browser.evaluate("document.body.dataset.draws")) > draws
        assert browser.evaluate("window.stillTheSamePage") is True  # redrawn in place, not reloaded
        assert browser.evaluate(FILL_POINTS) == points_before + 1
        cells = browser.evaluate("[...document.querySelectorAll('#table-fills td')].map(td => td.textContent)")
        assert str(fill_id) in cells
        assert browser.evaluate("document.getElementById('chart-fills').querySelectorAll('.point').length") >= (
            points_before + 1
        )
        drawn = f"{list(CHART_IDS)}.every(id => document.getElementById(id).style.display !== 'none'"
        assert browser.evaluate(drawn + " && document.getElementById(id).querySelector('.main-svg') !== null)")


def test_serve_on_a_port_in_use_ends_in_one_clear_line(cli_env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["dashboard", "--serve", "--port", str(port)])
    assert result.exit_code == 1 and f"--port {port}: cannot listen on 127.0.0.1" in result.output, result.output


def test_while_the_database_is_away_data_json_says_so(tmp_path):
    """/data.json answers 503 with the error (the open page keeps its last data and shows it); / cannot be built."""
    nowhere = f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"
    server = dashboard.make_server(Query(), port=0, refresh=1, url=nowhere)
    dashboard.serve_in_thread(server)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        status, ctype, body = _get(base + "data.json")
        assert status == 503 and ctype == "application/json"
        assert "cannot connect to the database" in json.loads(body)["error"]
        assert _get(base)[0] == 503
    finally:
        server.shutdown()
        server.server_close()
