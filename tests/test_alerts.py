"""Alert delivery (db/procedures/ops_alerts.sql, pgtrade alerts follow): cursors that never skip an alert, alert ids
visible in id order, and a follower that prints or POSTs each alert, retries a failing webhook with capped
exponential backoff, and resumes after a restart. The webhook is a real local HTTP server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from waiting import eventually

from pgtrade.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _watcher_held(db_url):
    """These tests count the alerts they raise: hold the alert watcher's lock (ops.watch, run by pg_cron every
    minute) meanwhile, so it cannot raise alerts of its own amid them; it runs once the test ends."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext('pgtrade:ops.watch'))")
        yield
        conn.execute("SELECT pg_advisory_unlock(hashtext('pgtrade:ops.watch'))")


def raise_alerts(url: str, n: int, symbol: str = "ALRT") -> list[int]:
    """Commit n alerts (kind 'test'); returns their ids."""
    with psycopg.connect(url) as conn:
        ids = [
            r[0]
            for r in conn.execute(
                """INSERT INTO ops.alerts (kind, severity, symbol, message)
                   SELECT 'test', 'HIGH', %s, 'test alert ' || g FROM generate_series(1, %s) g
                   RETURNING id""",
                (symbol, n),
            ).fetchall()
        ]
    return sorted(ids)


def new_consumer(url: str) -> str:
    """A consumer whose cursor starts after every alert committed so far (other tests' alerts stay theirs)."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO ops.alert_cursors (consumer, last_id) SELECT %s, coalesce(max(id), 0) FROM ops.alerts",
            (name,),
        )
    return name


def cursor(url: str, consumer: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT last_id FROM ops.alert_cursors WHERE consumer = %s", (consumer,)).fetchone()[0]


class Webhook:
    """A local HTTP server that answers 500 to the first ``fail`` POSTs (or every one with fail=-1), then 204; it
    records every body it accepted and every attempt."""

    def __init__(self, fail: int = 0):
        self.fail = fail
        self.attempts = 0
        self.accepted: list[dict] = []
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with hook.lock:
                    hook.attempts += 1
                    ok = hook.fail >= 0 and hook.attempts > hook.fail
                    if ok:
                        hook.accepted.append(json.loads(body))
                self.send_response(204 if ok else 500)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_cursor_refuses_to_skip_an_undelivered_alert(db_url):
    consumer = new_consumer(db_url)
    a, b, c = raise_alerts(db_url, 3)
    with psycopg.connect(db_url, autocommit=True) as conn:
        pending = [r[0] for r in conn.execute("SELECT id FROM ops.alerts_pending(%s)", (consumer,)).fetchall()]
        assert pending == [a, b, c]
        with pytest.raises(psycopg.Error) as exc:
            conn.execute("SELECT ops.alert_delivered(%s, %s)", (consumer, b))
        assert exc.value.diag.sqlstate == "ML033" and exc.value.diag.message_hint
        assert conn.execute("SELECT ops.alert_delivered(%s, %s)", (consumer, a)).fetchone()[0] == a
        assert conn.execute("SELECT ops.alert_delivered(%s, %s)", (consumer, a)).fetchone()[0] == a  # again: no-op
        assert conn.execute("SELECT ops.alert_delivered(%s, %s)", (consumer, b)).fetchone()[0] == b
        with pytest.raises(psycopg.Error) as exc:
            conn.execute("SELECT ops.alert_delivered(%s, %s)", (consumer, c + 10**9))
        assert exc.value.diag.sqlstate == "ML032"
        with pytest.raises(psycopg.Error) as exc:
            conn.execute("SELECT ops.alert_delivered(' ', %s)", (c,))
        assert exc.value.diag.sqlstate == "ML034"
        pending = [r[0] for r in conn.execute("SELECT id FROM ops.alerts_pending(%s)", (consumer,)).fetchall()]
        assert pending == [c]


def test_alert_ids_become_visible_in_id_order(db_url):
    """A transaction that raises an alert holds back every other alert-raising transaction until it ends, so a
    cursor that passed a visible alert can never find an older id committing later."""
    with psycopg.connect(db_url) as t1, psycopg.connect(db_url) as t2, psycopg.connect(db_url) as watcher:
        first = t1.execute(
            "INSERT INTO ops.alerts (kind, severity, message) VALUES ('test', 'HIGH', 'first') RETURNING id"
        ).fetchone()[0]
        t2_pid = t2.info.backend_pid
        result: dict = {}

        def second():
            result["id"] = t2.execute(
                "INSERT INTO ops.alerts (kind, severity, message) VALUES ('test', 'HIGH', 'second') RETURNING id"
            ).fetchone()[0]
            t2.commit()

        th = threading.Thread(target=second)
        th.start()
        eventually(
            lambda: (
                watcher.execute(
                    "SELECT count(*) FROM pg_locks WHERE pid = %s AND locktype = 'advisory' AND NOT granted", (t2_pid,)
                ).fetchone()[0]
                == 1
            ),
            timeout=10,
            what="the second insert to wait for the first transaction",
        )
        watcher.rollback()
        assert "id" not in result
        t1.commit()
        th.join(timeout=10)
        assert result["id"] > first


def test_follow_prints_pending_alerts_once_and_resumes_after_its_cursor(db_url, monkeypatch):
    monkeypatch.setenv("PGTRADE_DATABASE_URL", db_url)
    consumer = new_consumer(db_url)
    ids = raise_alerts(db_url, 3)
    out = CliRunner().invoke(main, ["alerts", "follow", "--consumer", consumer, "--once"])
    assert out.exit_code == 0, out.output
    lines = [json.loads(ln) for ln in out.stdout.splitlines()]
    assert [a["id"] for a in lines] == ids
    assert lines[0]["kind"] == "test" and lines[0]["severity"] == "HIGH" and lines[0]["message"] == "test alert 1"
    assert cursor(db_url, consumer) == ids[-1]
    again = CliRunner().invoke(main, ["alerts", "follow", "--consumer", consumer, "--once"])
    assert again.exit_code == 0 and again.stdout == ""
    more = raise_alerts(db_url, 1)
    third = CliRunner().invoke(main, ["alerts", "follow", "--consumer", consumer, "--once"])
    assert [json.loads(ln)["id"] for ln in third.stdout.splitlines()] == more


def test_follow_retries_a_failing_webhook_with_capped_backoff_and_skips_nothing(db_url, monkeypatch):
    monkeypatch.setenv("PGTRADE_DATABASE_URL", db_url)
    consumer = new_consumer(db_url)
    ids = raise_alerts(db_url, 3)
    with Webhook(fail=5) as hook:
        out = CliRunner().invoke(
            main,
            ["alerts", "follow", "--consumer", consumer, "--once", "--webhook", hook.url]
            + ["--backoff", "0.01", "--max-backoff", "0.04"],
        )
    assert out.exit_code == 0, out.output
    assert [a["id"] for a in hook.accepted] == ids  # each once, in order
    assert hook.attempts == 5 + 3
    delays = [ln.rsplit("retry in ", 1)[1] for ln in out.output.splitlines() if "retry in" in ln]
    assert delays == ["0.01 s", "0.02 s", "0.04 s", "0.04 s", "0.04 s"]  # doubling, capped
    assert cursor(db_url, consumer) == ids[-1]


def _follower(db_url: str, consumer: str, webhook: str) -> subprocess.Popen:
    env = dict(os.environ, PGTRADE_DATABASE_URL=db_url, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-c", "from pgtrade.cli import main; main()", "alerts", "follow", "--consumer", consumer]
        + ["--webhook", webhook, "--backoff", "0.05", "--max-backoff", "0.2", "--poll", "60"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_follower_killed_while_the_webhook_fails_delivers_after_a_restart(db_url):
    """A follower that dies while retrying has not moved its cursor; the next one delivers from there, then
    delivers live alerts as their NOTIFY arrives (the poll interval is 60 s, longer than the test waits)."""
    consumer = new_consumer(db_url)
    ids = raise_alerts(db_url, 2)
    with Webhook(fail=-1) as down:
        proc = _follower(db_url, consumer, down.url)
        try:
            eventually(lambda: down.attempts >= 3, timeout=20, what="retries against the failing webhook")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
    assert cursor(db_url, consumer) < ids[0]
    with Webhook() as up:
        proc = _follower(db_url, consumer, up.url)
        try:
            eventually(lambda: len(up.accepted) == 2, timeout=20, what="the two pending alerts")
            assert [a["id"] for a in up.accepted] == ids
            live = raise_alerts(db_url, 1)
            eventually(lambda: len(up.accepted) == 3, timeout=20, what="the live alert through LISTEN")
            assert up.accepted[-1]["id"] == live[0]
            eventually(lambda: cursor(db_url, consumer) == live[0], timeout=10, what="the cursor to move")
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_follow_rejects_a_bad_webhook_url_in_one_line(db_url, monkeypatch):
    monkeypatch.setenv("PGTRADE_DATABASE_URL", db_url)
    out = CliRunner().invoke(main, ["alerts", "follow", "--webhook", "ftp://x", "--once"])
    assert out.exit_code == 1 and "not an http(s) URL" in out.output and "Traceback" not in out.output
