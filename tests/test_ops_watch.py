"""The alert watcher (db/procedures/ops_watch.sql, pg_cron every minute): a drawdown beyond an account's limit and a
burst of risk rejections, built through the real trading procedures; one alert per incident, a resolved alert when
it clears, a new alert for a new occurrence; pg_cron's own watcher raising a failed pg_cron job, a stale fed symbol,
a rejection burst and a drawdown, and `pgtrade alerts follow` delivering them all. (The TimescaleDB job path is in
tests/test_health.py.)"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from click.testing import CliRunner
from test_jobs import cron_diagnosis
from trading_support import T0, account, advance, bars, instrument, order
from waiting import eventually

from pgtrade.cli import main


def watch(conn: psycopg.Connection) -> dict:
    return conn.execute("SELECT ops.watch()").fetchone()[0]


def incidents(conn: psycopg.Connection, kind: str, subject: str) -> list[tuple]:
    return conn.execute(
        """SELECT i.id, i.checks, i.closed_at IS NOT NULL, a.severity, a.message, a.account_id, r.severity, r.message
           FROM ops.incidents i JOIN ops.alerts a ON a.id = i.alert_id
           LEFT JOIN ops.alerts r ON r.id = i.resolved_alert_id
           WHERE i.kind = %s AND i.subject = %s ORDER BY i.id""",
        (kind, subject),
    ).fetchall()


def alerts_about(conn: psycopg.Connection, account_id: int) -> list[tuple]:
    return conn.execute(
        "SELECT kind, severity, message FROM ops.alerts WHERE account_id = %s ORDER BY id", (account_id,)
    ).fetchall()


def test_a_drawdown_beyond_the_limit_raises_one_critical_alert_until_it_recovers(db):
    """A live account (manual clock, so the test sets the time) buys, the price falls 30%: the snapshot's drawdown
    is 15% against a 10% limit. One CRITICAL alert naming the account and the figures, however often the watcher
    runs; back at its peak the incident closes with a LOW resolved alert; a second fall raises a new alert."""
    instrument(db, "WDD")
    start = T0 - timedelta(minutes=2)
    bars(db, "WDD", [(100, 100, 100, 100)] * 3, start=start)  # 14:58-15:00 (New York session)
    acc = account(db, "watch-dd", kind="live", clock=T0, max_drawdown="0.1")
    assert order(db, acc, "WDD", "buy", 500)["status"] == "filled"
    db.execute("SELECT trading.snapshot_portfolio(%s)", (acc,))
    assert watch(db)["opened"] == 0 or not alerts_about(db, acc)
    assert alerts_about(db, acc) == []

    bars(db, "WDD", [(70, 70, 70, 70)] * 2, start=T0 + timedelta(minutes=1))
    advance(db, acc, T0 + timedelta(minutes=3))
    snap = db.execute("SELECT drawdown, total_value FROM trading.snapshot_portfolio(%s)", (acc,)).fetchone()
    assert snap == (Decimal("0.15"), 85000)
    watch(db)
    watch(db)
    [(kind, severity, message)] = alerts_about(db, acc)
    assert (kind, severity) == ("drawdown", "CRITICAL")
    assert message.startswith(
        "account watch-dd: drawdown 15.00% is beyond its limit 10.00% (value 85000.00, peak 100000.00"
    )
    [inc] = incidents(db, "drawdown", f"account:{acc}")
    assert inc[1] == 2 and inc[2] is False and inc[5] == acc

    bars(db, "WDD", [(100, 100, 100, 100)], start=T0 + timedelta(minutes=3))
    advance(db, acc, T0 + timedelta(minutes=4))
    assert db.execute("SELECT drawdown FROM trading.snapshot_portfolio(%s)", (acc,)).fetchone()[0] == 0
    assert watch(db)["closed"] >= 1
    [inc] = incidents(db, "drawdown", f"account:{acc}")
    assert inc[2] is True and inc[6] == "LOW" and "account watch-dd is back within its drawdown limit" in inc[7]

    bars(db, "WDD", [(80, 80, 80, 80)], start=T0 + timedelta(minutes=4))
    advance(db, acc, T0 + timedelta(minutes=5))
    db.execute("SELECT trading.snapshot_portfolio(%s)", (acc,))
    watch(db)
    assert [a[:2] for a in alerts_about(db, acc)] == [
        ("drawdown", "CRITICAL"),
        ("drawdown", "LOW"),
        ("drawdown", "CRITICAL"),
    ]
    assert "drawdown 10.00% is beyond its limit 10.00%" in alerts_about(db, acc)[-1][2]


def test_no_limit_no_drawdown_alert_and_the_limit_is_validated(db):
    instrument(db, "WDN")
    bars(db, "WDN", [(100, 100, 100, 100)] * 2, start=T0 - timedelta(minutes=1))
    acc = account(db, "watch-nolimit", kind="live", clock=T0, max_drawdown=None)
    assert order(db, acc, "WDN", "buy", 900)["status"] == "filled"
    db.execute("SELECT trading.snapshot_portfolio(%s)", (acc,))
    bars(db, "WDN", [(10, 10, 10, 10)], start=T0 + timedelta(minutes=1))
    advance(db, acc, T0 + timedelta(minutes=2))
    assert db.execute("SELECT drawdown FROM trading.snapshot_portfolio(%s)", (acc,)).fetchone()[0] > 0.5
    watch(db)
    assert alerts_about(db, acc) == []
    for bad in ("0", "1.5", "-0.1"):
        with pytest.raises(psycopg.errors.CheckViolation), db.transaction():
            db.execute(
                "SELECT trading.configure_account(%s, jsonb_build_object('max_drawdown', %s::numeric))", (acc, bad)
            )


def test_a_burst_of_risk_rejections_raises_one_alert_naming_the_count_and_rules(db):
    """Rejections recorded by place_order (a paused account: TR007; an order too large: TR001): below the burst
    threshold nothing; at it one MEDIUM alert with the count and codes; more rejections raise nothing more; once the
    account's clock moves past the window, the incident closes."""
    instrument(db, "WRJ")
    bars(db, "WRJ", [(100, 100, 100, 100)] * 2, start=T0 - timedelta(minutes=1))
    acc = account(db, "watch-rejects", kind="live", clock=T0)
    burst = db.execute("SELECT rejection_burst FROM ops.health_settings").fetchone()[0]
    assert order(db, acc, "WRJ", "buy", 10**6)["reject_code"] == "TR001"
    db.execute("SELECT trading.set_paused(%s, true)", (acc,))
    for _ in range(burst - 2):
        assert order(db, acc, "WRJ", "buy", 1)["reject_code"] == "TR007"
    watch(db)
    assert alerts_about(db, acc) == []  # burst - 1 rejections
    assert order(db, acc, "WRJ", "buy", 1)["status"] == "rejected"
    watch(db)
    [(kind, severity, message)] = alerts_about(db, acc)
    assert (kind, severity) == ("rejection_burst", "MEDIUM")
    assert (
        message == f"account watch-rejects: {burst} orders rejected in the last 00:10:00 (TR007 x{burst - 1}, TR001 x1)"
    )
    order(db, acc, "WRJ", "sell", 1)
    watch(db)
    assert len(alerts_about(db, acc)) == 1
    [inc] = incidents(db, "rejection_burst", f"account:{acc}")
    assert inc[1] == 2 and not inc[2]
    db.execute("SELECT trading.set_paused(%s, false)", (acc,))
    advance(db, acc, T0 + timedelta(minutes=11))
    watch(db)
    [inc] = incidents(db, "rejection_burst", f"account:{acc}")
    assert inc[2] and inc[6] == "LOW" and "rejections back under the burst threshold" in inc[7]


def test_backtest_accounts_raise_no_account_alerts(db):
    instrument(db, "WBT")
    bars(db, "WBT", [(100, 100, 100, 100)] * 2, start=T0 - timedelta(minutes=1))
    acc = account(db, "watch-backtest", kind="backtest", clock=T0, max_drawdown="0.01")
    db.execute("SELECT trading.set_paused(%s, true)", (acc,))
    for _ in range(10):
        order(db, acc, "WBT", "buy", 1)
    watch(db)
    assert alerts_about(db, acc) == []


def _crypto(conn, sym: str) -> None:
    instrument(conn, sym, asset_class="crypto", session_tz="UTC", session_open=None, session_close=None,
               trades_weekends=True)  # fmt: skip


def test_pg_cron_runs_the_watcher_and_alerts_follow_delivers_every_kind(db_url, monkeypatch):
    """Committed conditions of each kind; no manual watcher run: pg_cron's pgtrade-ops-watch (every minute, as
    pgtrade_jobs) must raise a failed pg_cron job, a stale fed symbol, a rejection burst and a drawdown (bounded
    wait), each once; `pgtrade alerts follow --once` delivers them all. Then the job is unscheduled and the feed
    ends: the next watcher run closes those incidents."""
    tag = uuid.uuid4().hex[:6].upper()
    job, sym = f"pgtrade-test-watch-{tag.lower()}", f"WST{tag}"
    consumer = f"watch-{tag}"
    monkeypatch.setenv("PGTRADE_DATABASE_URL", db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ops.alert_cursors (consumer, last_id) SELECT %s, coalesce(max(id), 0) FROM ops.alerts",
            (consumer,),
        )
        since = conn.execute("SELECT coalesce(max(runid), 0) FROM cron.job_run_details").fetchone()[0]
        # a failing pg_cron job of pgtrade's
        with conn.transaction():
            conn.execute("SET LOCAL ROLE pgtrade_jobs")
            conn.execute("SELECT cron.schedule(%s, '* * * * *', 'SELECT 1/0')", (job,))
        feed = None
        try:
            # a feed of two crypto symbols whose bars stopped 10 minutes ago
            now = conn.execute("SELECT date_bin('1 minute', now(), '2000-01-03')").fetchone()[0]
            for s in (sym, sym + "B"):
                _crypto(conn, s)
                bars(conn, s, [(100, 100, 100, 100)] * 3, start=now - timedelta(minutes=12))
            feed = conn.execute(
                "SELECT ops.feed_started('test', ARRAY[%s, %s], '1m', 1, 'test')", (sym, sym + "B")
            ).fetchone()[0]
            # a live wall-clock account trading another symbol: bought at 100, marked at 50 by this minute's forming
            # bar (drawdown 25% > its 20% default limit), then paused and sent 5 orders (a rejection burst)
            dd = f"WDD{tag}"
            _crypto(conn, dd)
            bars(conn, dd, [(100, 100, 100, 100)] * 3, start=now - timedelta(minutes=3))
            acc = account(conn, f"watch-live-{tag}", kind="live", clock=None)
            assert order(conn, acc, dd, "buy", 500)["status"] == "filled"
            conn.execute("SELECT trading.snapshot_portfolio(%s)", (acc,))
            bars(conn, dd, [(50, 50, 50, 50)], start=now)
            assert conn.execute("SELECT drawdown FROM trading.snapshot_portfolio(%s)", (acc,)).fetchone()[0] == Decimal(
                "0.25"
            )
            conn.execute("SELECT trading.set_paused(%s, true)", (acc,))
            for _ in range(5):
                order(conn, acc, dd, "buy", 1)

            subjects = {
                "job_failed": f"pg_cron:{job}",
                "stale_data": f"feed:{feed}",
                "drawdown": f"account:{acc}",
                "rejection_burst": f"account:{acc}",
            }

            def raised():
                rows = conn.execute(
                    "SELECT kind, subject, alert_id FROM ops.incidents WHERE closed_at IS NULL AND (kind, subject) IN"
                    " (SELECT * FROM unnest(%s::text[], %s::text[]))",
                    (list(subjects), list(subjects.values())),
                ).fetchall()
                return rows if len(rows) == len(subjects) else None

            try:
                open_ = eventually(raised, timeout=150, interval=1, what="pg_cron's watcher to raise the 4 alerts")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; {cron_diagnosis(conn, since)}") from None
            watcher_runs = conn.execute(
                "SELECT d.status FROM cron.job_run_details d JOIN cron.job j USING (jobid)"
                " WHERE j.jobname = 'pgtrade-ops-watch' AND d.runid > %s AND d.status IN ('succeeded', 'failed')",
                (since,),
            ).fetchall()
            assert watcher_runs and {r[0] for r in watcher_runs} == {"succeeded"}

            out = CliRunner().invoke(main, ["alerts", "follow", "--consumer", consumer, "--once"])
            assert out.exit_code == 0, out.output
            delivered = [json.loads(ln) for ln in out.stdout.splitlines()]
            ours = {a["id"]: a for a in delivered}
            got = {k: ours[a] for k, _s, a in open_}
            assert {k: a["severity"] for k, a in got.items()} == {
                "job_failed": "HIGH",
                "stale_data": "HIGH",
                "drawdown": "CRITICAL",
                "rejection_burst": "MEDIUM",
            }
            assert got["job_failed"]["message"].startswith(f"pg_cron job {job} failed: ")
            assert "division by zero" in got["job_failed"]["details"]["error"]
            assert (
                got["stale_data"]["symbol"] is None
                and f"stale data: 2 series of feed {feed} (test, 1m) have no new bar for"
                in got["stale_data"]["message"]
                and f": {sym}, {sym}B (last bar" in got["stale_data"]["message"]
            )
            assert (
                got["drawdown"]["account_id"] == acc
                and "drawdown 25.00% is beyond its limit 20.00%" in got["drawdown"]["message"]
            )
            assert "5 orders rejected in the last 00:10:00 (TR007 x5)" in got["rejection_burst"]["message"]
            # one alert each, even though pg_cron's watcher has run more than once by now or will
            for kind, subject in subjects.items():
                assert len(incidents(conn, kind, subject)) == 1
        finally:
            with conn.transaction():
                conn.execute("SET LOCAL ROLE pgtrade_jobs")
                conn.execute("SELECT cron.unschedule(%s)", (job,))
            if feed is not None:
                conn.execute("SELECT ops.feed_ended(%s, 'test cleanup')", (feed,))
        watch(conn)
        job_inc = incidents(conn, "job_failed", f"pg_cron:{job}")
        stale_inc = incidents(conn, "stale_data", f"feed:{feed}")
        assert job_inc[-1][2] and job_inc[-1][6] == "LOW"
        assert stale_inc[-1][2] and f"feed {feed} (test): its series are no longer fed by it" in stale_inc[-1][7]


def test_acknowledged_alerts_leave_the_open_count_of_health(db):
    instrument(db, "WACK")
    bars(db, "WACK", [(100, 100, 100, 100)] * 2, start=T0 - timedelta(minutes=1))
    acc = account(db, "watch-ack", kind="live", clock=T0)
    db.execute("SELECT trading.set_paused(%s, true)", (acc,))
    for _ in range(5):
        order(db, acc, "WACK", "buy", 1)

    def open_medium() -> int:
        return db.execute("SELECT (ops.health()->'alerts'->'open'->>'MEDIUM')::int").fetchone()[0]

    before = open_medium()
    watch(db)
    [alert] = db.execute("SELECT id FROM ops.alerts WHERE account_id = %s", (acc,)).fetchone()
    assert open_medium() == before + 1
    assert db.execute("SELECT ops.acknowledge_alerts(ARRAY[%s]::bigint[])", (alert,)).fetchone()[0] == 1
    assert db.execute("SELECT ops.acknowledge_alerts(ARRAY[%s]::bigint[])", (alert,)).fetchone()[0] == 0
    assert open_medium() == before
    with pytest.raises(psycopg.Error) as err, db.transaction():
        db.execute("SELECT ops.acknowledge_alerts()")
    assert err.value.sqlstate == "ML035"


def test_alerts_ack_cli(db_url, monkeypatch):
    monkeypatch.setenv("PGTRADE_DATABASE_URL", db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        alert = conn.execute(
            "INSERT INTO ops.alerts (kind, severity, message) VALUES ('test', 'LOW', 'ack me') RETURNING id"
        ).fetchone()[0]
        out = CliRunner().invoke(main, ["alerts", "ack", str(alert)])
        assert out.exit_code == 0 and "1 alert(s) acknowledged" in out.output
        assert conn.execute("SELECT acknowledged_at IS NOT NULL FROM ops.alerts WHERE id = %s", (alert,)).fetchone()[0]
    bad = CliRunner().invoke(main, ["alerts", "ack"])
    assert bad.exit_code == 1 and "name the alerts to acknowledge" in bad.output


def test_a_stale_feed_is_one_incident_whatever_number_of_its_series_go_stale(db):
    now = db.execute("SELECT date_bin('1 minute', now(), '2000-01-03')").fetchone()[0]
    for s, n in (("WSA", 3), ("WSB", 13)):  # WSA's last bar opened 10 minutes ago, WSB's this minute
        _crypto(db, s)
        bars(db, s, [(100, 100, 100, 100)] * n, start=now - timedelta(minutes=12))
    feed = db.execute("SELECT ops.feed_started('test-src', ARRAY['WSA', 'WSB'], '1m', 1, 'test')").fetchone()[0]
    watch(db)
    [inc] = incidents(db, "stale_data", f"feed:{feed}")
    assert inc[3] == "HIGH" and inc[4].startswith("stale data: WSA 1m has no new bar for 00:09:")
    assert inc[4].endswith(
        f"(last bar {(now - timedelta(minutes=10)).strftime('%Y-%m-%d %H:%M')} UTC; feed {feed}, test-src)"
    )
    assert db.execute("SELECT symbol FROM ops.alerts WHERE id = (SELECT alert_id FROM ops.incidents WHERE id = %s)",
                      (inc[0],)).fetchone()[0] == "WSA"  # fmt: skip
    # the other series of the feed goes stale too: the same incident, its figures updated, no second alert
    db.execute("DELETE FROM market.bars WHERE symbol = 'WSB' AND ts > %s", (now - timedelta(minutes=6),))
    watch(db)
    [inc] = incidents(db, "stale_data", f"feed:{feed}")
    assert inc[1] == 2 and not inc[2]
    details = db.execute("SELECT details FROM ops.incidents WHERE id = %s", (inc[0],)).fetchone()[0]
    assert details["symbols"] == ["WSA", "WSB"] and details["stale"] == 2
    # the feed ends as asked: nothing is expected of it any more
    db.execute("SELECT ops.feed_ended(%s, 'duration')", (feed,))
    watch(db)
    [inc] = incidents(db, "stale_data", f"feed:{feed}")
    assert inc[2] and inc[6] == "LOW" and "its series are no longer fed by it" in inc[7]
