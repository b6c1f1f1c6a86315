"""``pgtrade anomalies``, ``pgtrade signals`` and ``pgtrade alerts follow`` (registered on the CLI).

The first two read ``ml.anomalies`` and ``ml.signals``. ``alerts follow`` delivers ``ops.alerts`` to stdout or a
webhook: it LISTENs on ``pgtrade_alerts`` and, on every notification (and every ``--poll`` seconds, in case one was
missed while reconnecting), asks the database for the alerts after its consumer's cursor
(``ops.alerts_pending``). Each alert is delivered, then recorded (``ops.alert_delivered`` moves the cursor to it);
a webhook that fails is retried with exponential backoff, capped, and the follower never moves on without it. A
restarted follower resumes after its cursor: an alert is delivered at least once and never skipped.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime

import click
import psycopg
from psycopg.rows import dict_row
from rich.table import Table

from .cli import console, emit_json, err_console, main, user_errors
from .db import connect
from .errors import DatabaseUnavailable, PgtradeError

SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
_JSON = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _symbol_list(text: str | None) -> list[str] | None:
    if not text:
        return None
    syms = [s.strip().upper() for s in text.split(",") if s.strip()]
    return syms or None


def _ts(v) -> str:
    return v.strftime("%Y-%m-%d %H:%M") if isinstance(v, datetime) else ("" if v is None else str(v))


# ---------------------------------------------------------------------------------------------------- anomalies
@main.command("anomalies")
@click.option("--symbols", help="Comma-separated symbols (default: all).")
@click.option(
    "--severity",
    type=click.Choice(SEVERITIES, case_sensitive=False),
    help="Minimum severity (HIGH shows HIGH and CRITICAL).",
)
@click.option("--type", "types", help="Comma-separated types: price, gap, volume, pattern (default: all).")
@click.option("--since", help="Bars at or after this day (YYYY-MM-DD) or ISO 8601 timestamp (naive = UTC).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1), help="Newest bars first, at most.")
@_JSON
@user_errors
def anomalies_cmd(symbols, severity, types, since, limit, as_json) -> None:
    """Anomalous bars (ml.anomalies): price, gap, volume and pattern anomalies with their score and severity."""
    from .cli_feeds import _when  # (not at import: cli_feeds imports the cli module that imports this one)

    type_list = [t.strip().lower() for t in types.split(",") if t.strip()] if types else None
    bad = sorted(set(type_list or ()) - {"price", "gap", "volume", "pattern"})
    if bad:
        raise PgtradeError(f"--type: unknown anomaly type(s) {', '.join(bad)} (price, gap, volume, pattern)")
    with connect() as conn:
        rows = (
            conn.cursor(row_factory=dict_row)
            .execute(
                """SELECT a.id, a.symbol, a."interval", a.ts, a.type, a.score, a.severity, a.model_id, a.details,
                          a.detected_at, al.id AS alert_id
                   FROM ml.anomalies a
                   LEFT JOIN ops.alerts al ON al.anomaly_id = a.id
                   WHERE (%(syms)s::text[] IS NULL OR a.symbol = ANY (%(syms)s))
                     AND (%(types)s::text[] IS NULL OR a.type = ANY (%(types)s))
                     AND (%(since)s::timestamptz IS NULL OR a.ts >= %(since)s)
                     AND array_position(%(sev)s, a.severity) >= coalesce(array_position(%(sev)s, %(min)s), 1)
                   ORDER BY a.ts DESC, a.symbol, a.type
                   LIMIT %(limit)s""",
                {
                    "syms": _symbol_list(symbols),
                    "types": type_list,
                    "since": _when(since, "since"),
                    "sev": list(SEVERITIES),
                    "min": severity.upper() if severity else None,
                    "limit": limit,
                },
            )
            .fetchall()
        )
    if as_json:
        emit_json(rows)
        return
    table = Table(title="anomalies (newest first)")
    for col in ("symbol", "interval", "bar", "type", "severity", "score", "detail", "alert"):
        table.add_column(col, justify="right" if col == "score" else "left")
    colour = {"CRITICAL": "bold red", "HIGH": "red", "MEDIUM": "yellow", "LOW": "dim"}
    for r in rows:
        d = r["details"] or {}
        if r["type"] == "price":
            detail = f"return {d.get('return', 0):+.2%}"
        elif r["type"] == "gap":
            detail = f"gap {d.get('gap', 0):+.2%}"
        elif r["type"] == "volume":
            detail = f"volume {d.get('volume', 0):,.0f} vs median {d.get('median', 0):,.0f}"
        else:
            detail = f"model {r['model_id']}"
        table.add_row(
            r["symbol"],
            r["interval"],
            _ts(r["ts"]),
            r["type"],
            f"[{colour[r['severity']]}]{r['severity']}[/]",
            f"{r['score']:.2f}",
            detail,
            str(r["alert_id"] or ""),
        )
    console.print(table)
    if not rows:
        console.print("no anomalies match (they are detected on closed bars; history: SELECT ml.detect_anomalies(...))")


# ---------------------------------------------------------------------------------------------------- signals
@main.command("signals")
@click.option("--symbols", help="Comma-separated symbols (default: all).")
@click.option("--model", help="Model name, or NAME:VERSION (default: every model).")
@click.option("--since", help="Bars at or after this day (YYYY-MM-DD) or ISO 8601 timestamp (naive = UTC).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1), help="Newest bars first, at most.")
@_JSON
@user_errors
def signals_cmd(symbols, model, since, limit, as_json) -> None:
    """Model signals (ml.signals): P(up), confidence, BUY/SELL/HOLD, stop-loss and take-profit, and the model."""
    from .cli_feeds import _when

    name, version = None, None
    if model:
        name, _, ver = model.partition(":")
        if ver:
            try:
                version = int(ver)
            except ValueError:
                raise PgtradeError(f"--model: version must be a number: {model!r} (NAME or NAME:VERSION)") from None
    with connect() as conn:
        if (
            name
            and not conn.execute(
                "SELECT 1 FROM ml.models WHERE name = %s AND (%s::int IS NULL OR version = %s)",
                (name, version, version),
            ).fetchone()
        ):
            raise PgtradeError(f"unknown model {model!r} (see pgtrade ml list)")
        rows = (
            conn.cursor(row_factory=dict_row)
            .execute(
                """SELECT s.id, m.name AS model, m.version, s.symbol, s."interval", s.ts, s.probability, s.confidence,
                          s.signal, s.close, s.atr, s.stop_loss, s.take_profit, s.created_at
                   FROM ml.signals s
                   JOIN ml.models m ON m.id = s.model_id
                   WHERE (%(syms)s::text[] IS NULL OR s.symbol = ANY (%(syms)s))
                     AND (%(name)s::text IS NULL OR m.name = %(name)s)
                     AND (%(version)s::int IS NULL OR m.version = %(version)s)
                     AND (%(since)s::timestamptz IS NULL OR s.ts >= %(since)s)
                   ORDER BY s.ts DESC, s.symbol, m.name
                   LIMIT %(limit)s""",
                {
                    "syms": _symbol_list(symbols),
                    "name": name,
                    "version": version,
                    "since": _when(since, "since"),
                    "limit": limit,
                },
            )
            .fetchall()
        )
    if as_json:
        emit_json(rows)
        return
    table = Table(title="signals (newest first)")
    for col in ("symbol", "interval", "bar", "model", "P(up)", "confidence", "signal", "close", "stop", "take"):
        table.add_column(col, justify="left" if col in ("symbol", "interval", "bar", "model", "signal") else "right")
    colour = {"BUY": "green", "SELL": "red", "HOLD": "dim"}
    for r in rows:
        table.add_row(
            r["symbol"],
            r["interval"],
            _ts(r["ts"]),
            f"{r['model']}:{r['version']}",
            f"{r['probability']:.3f}",
            f"{r['confidence']:.3f}",
            f"[{colour[r['signal']]}]{r['signal']}[/]",
            str(r["close"]),
            "" if r["stop_loss"] is None else str(r["stop_loss"]),
            "" if r["take_profit"] is None else str(r["take_profit"]),
        )
    console.print(table)
    if not rows:
        console.print("no signals match (signals are scored for closed bars of symbols with an active model)")


# ---------------------------------------------------------------------------------------------------- alerts
@main.group()
def alerts() -> None:
    """Alerts (ops.alerts): anomalies of live bars, failed jobs, stale data, drawdowns, rejection bursts."""


def _alert_json(row: dict) -> str:
    return json.dumps(row, default=str, separators=(",", ":"))


def _post(url: str, body: str, timeout: float) -> None:
    """POST the alert; any non-2xx answer or transport error raises."""
    req = urllib.request.Request(
        url, data=body.encode(), method="POST", headers={"Content-Type": "application/json", "User-Agent": "pgtrade"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (the user's URL, http or https)
        if not 200 <= resp.status < 300:
            raise urllib.error.HTTPError(url, resp.status, resp.reason, resp.headers, None)


def _deliver(row: dict, webhook: str | None, timeout: float, backoff: float, max_backoff: float) -> None:
    """Deliver one alert, retrying a failed webhook with exponential backoff (capped) until it succeeds."""
    body = _alert_json(row)
    if not webhook:
        click.echo(body)
        sys.stdout.flush()
        return
    delay, attempt = backoff, 1
    while True:
        try:
            _post(webhook, body, timeout)
            return
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = exc.code if isinstance(exc, urllib.error.HTTPError) else getattr(exc, "reason", exc)
            err_console.print(
                f"[yellow]alert {row['id']}: webhook attempt {attempt} failed ({reason}); retry in {delay:g} s[/]",
                highlight=False,
            )
            time.sleep(delay)
            delay, attempt = min(delay * 2, max_backoff), attempt + 1


def _catch_up(conn: psycopg.Connection, consumer: str, deliver) -> int:
    """Deliver every pending alert in id order, moving the cursor after each; returns how many were delivered."""
    n = 0
    while True:
        rows = (
            conn.cursor(row_factory=dict_row)
            .execute("SELECT * FROM ops.alerts_pending(%s, 100)", (consumer,))
            .fetchall()
        )
        if not rows:
            return n
        for row in rows:
            deliver(row)
            conn.execute("SELECT ops.alert_delivered(%s, %s)", (consumer, row["id"]))
            n += 1


@alerts.command("follow")
@click.option("--webhook", help="POST each alert as JSON to this URL (default: print one JSON line per alert).")
@click.option("--consumer", default="default", show_default=True, help="Cursor name: where delivery resumes.")
@click.option("--once", is_flag=True, help="Deliver what is pending, then exit.")
@click.option("--backoff", default=1.0, show_default=True, type=click.FloatRange(min=0), help="First retry delay (s).")
@click.option(
    "--max-backoff", default=60.0, show_default=True, type=click.FloatRange(min=0), help="Longest retry delay (s)."
)
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(min=0.1), help="Webhook timeout.")
@click.option(
    "--poll", default=30.0, show_default=True, type=click.FloatRange(min=0.1), help="Catch up at least this often (s)."
)
@user_errors
def alerts_follow(webhook, consumer, once, backoff, max_backoff, timeout, poll) -> None:
    """Deliver alerts as they are raised (LISTEN pgtrade_alerts), resuming after the consumer's cursor.

    Each alert is printed (one JSON line) or POSTed to --webhook; the cursor moves only after a successful
    delivery (HTTP 2xx). A failing webhook is retried with exponential backoff up to --max-backoff, never skipped.
    """
    if not consumer.strip():
        raise PgtradeError("--consumer: give a non-empty name")
    if webhook and not webhook.startswith(("http://", "https://")):
        raise PgtradeError(f"--webhook: not an http(s) URL: {webhook!r}")

    def deliver(row: dict) -> None:
        _deliver(row, webhook, timeout, backoff, max_backoff)

    connected = False
    while True:
        try:
            with connect(autocommit=True) as conn:
                connected = True
                conn.execute("LISTEN pgtrade_alerts")  # before catching up: nothing raised meanwhile is missed
                _catch_up(conn, consumer, deliver)
                if once:
                    return
                while True:
                    # any notification (or the poll timeout) means: catch up from the cursor
                    for _ in conn.notifies(timeout=poll, stop_after=1):
                        pass
                    _catch_up(conn, consumer, deliver)
        except (psycopg.OperationalError, DatabaseUnavailable) as exc:
            if once or not connected:  # a first connection that fails is the user's to fix
                raise
            err_console.print(f"[yellow]database connection lost ({exc}); reconnecting in {backoff or 1:g} s[/]")
            time.sleep(backoff or 1)
        except KeyboardInterrupt:
            return


@alerts.command("ack")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "all_", is_flag=True, help="Acknowledge every alert raised so far.")
@user_errors
def alerts_ack(ids, all_) -> None:
    """Acknowledge alerts (seen by a person): health counts the unacknowledged ones by severity."""
    if not ids and not all_:
        raise PgtradeError("name the alerts to acknowledge (pgtrade alerts ack ID...) or give --all")
    with connect() as conn:
        n = conn.execute(
            "SELECT ops.acknowledge_alerts(%s::bigint[],"
            " CASE WHEN %s THEN (SELECT coalesce(max(id), 0) FROM ops.alerts) END)",
            (list(ids) or None, all_),
        ).fetchone()[0]
    console.print(f"{n} alert(s) acknowledged")
