"""``pgtrade health [--json]``: the database's health document (``ops.health()``, db/procedures/ops_health.sql).

Exit status: 0 ok, 1 degraded, 2 failing (a server that cannot be reached is failing too). Every problem is named
on stderr, one line each. The rules live in SQL; this module only prints (docs/operations.md, "Health").
"""

from __future__ import annotations

import json
import sys
from datetime import datetime

import click
import psycopg
from rich.table import Table

from .cli import console, emit_json, err_console, main
from .db import connect
from .errors import DatabaseUnavailable

EXIT = {"ok": 0, "degraded": 1, "failing": 2}
_COLOUR = {"ok": "green", "degraded": "yellow", "failing": "red"}


def _ts(v) -> str:
    if not v:
        return ""
    try:
        return datetime.fromisoformat(v).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        return str(v)


def _age(v) -> str:
    """A PostgreSQL interval as JSON text ('3 days 04:05:06.7'), without the fraction of a second."""
    return "" if v is None else str(v).split(".")[0]


def _print(h: dict) -> None:
    status = h["status"]
    srv = h.get("server") or {}
    console.print(
        f"[bold {_COLOUR[status]}]{status.upper()}[/]  {srv.get('database', '')} - PostgreSQL "
        f"{h['server_version'].split()[0]}, TimescaleDB {h['timescaledb_version']}, up {_age(srv.get('uptime'))}"
        f"{' (replica)' if srv.get('in_recovery') else ''}",
        highlight=False,
    )
    if h["problems"]:
        t = Table(title="problems")
        for col in ("status", "kind", "problem"):
            t.add_column(col)
        for p in h["problems"]:
            t.add_row(f"[{_COLOUR[p['status']]}]{p['status']}[/]", p["kind"], p["message"])
        console.print(t)

    t = Table(title="extensions and schedulers")
    for col in ("name", "version / state", "required"):
        t.add_column(col)
    for e in h["extensions"]:
        t.add_row(e["name"], e["version"] or "[red]missing[/]", "yes" if e["required"] else "")
    sch = h.get("schedulers") or {}
    t.add_row(
        "pg_cron launcher",
        ("running" if sch.get("pg_cron_launcher") else "[red]not running[/]")
        + f" (serves {sch.get('pg_cron_database')})",
        "",
    )
    t.add_row("TimescaleDB scheduler", "running" if sch.get("timescaledb_scheduler") else "[red]not running[/]", "")
    console.print(t)

    t = Table(title="jobs")
    for col in ("kind", "job", "schedule", "last run", "status", "last success", "failures (recent/total)"):
        t.add_column(col)
    cron = (h.get("pg_cron") or {}).get("jobs") or []
    for j in cron:
        st = j["last_status"] or "-"
        t.add_row(
            "pg_cron",
            j["job"],
            j["schedule"],
            _ts(j["last_start"]),
            f"[red]{st}[/]" if st == "failed" else st,
            _ts(j["last_success"]),
            f"{j['failures_recent']}/{j['failures_total']}",
        )
    for j in h["timescaledb_jobs"]:
        st = j["last_status"] or "-"
        t.add_row(
            "timescaledb",
            f"{j['job_id']} {j['proc'].rsplit('.', 1)[-1]} {j['hypertable'] or ''}".strip(),
            _age(j["schedule_interval"]),
            _ts(j["last_start"]),
            st if st in ("Success", "-") else f"[red]{st}[/]",
            _ts(j["last_success"]),
            f"{j['failures_recent']}/{j['total_failures']}",
        )
    console.print(t)
    if h.get("pg_cron") is None:
        console.print("pg_cron runs in another database of this cluster: its jobs are not listed here")

    t = Table(title="data freshness (expected fresh: series a live feed is responsible for)")
    for col in ("symbol", "interval", "class", "expected", "last bar (UTC)", "age", "feed", "state"):
        t.add_column(col)
    for f in h["freshness"]:
        state = "" if not f["expected"] else ("[red]stale[/]" if f["stale"] else "[green]fresh[/]")
        feed = f"{f['feed_id']} {f['source']}" if f["expected"] else (f["source"] or "")
        t.add_row(
            f["symbol"],
            f["interval"],
            f["asset_class"],
            "yes" if f["expected"] else "no",
            _ts(f["last_ts"]),
            _age(f["age"]),
            feed[:40],
            state,
        )
    console.print(t)

    if h["models"]:
        t = Table(title="active models")
        for col in ("model", "task", "symbols", "activated", "age", "last scheduled retrain", "state"):
            t.add_column(col)
        for m in h["models"]:
            state = (
                "[yellow]retrain failed[/]" if m["retrain_failed"] else ("[yellow]overdue[/]" if m["overdue"] else "ok")
            )
            t.add_row(
                f"{m['name']}:{m['version']}",
                m["task"],
                ",".join(m["symbols"]),
                _ts(m["activated_at"]),
                _age(m["age"]),
                f"{_ts(m['last_retrain'])} {m['last_retrain_decision'] or ''}".strip(),
                state,
            )
        console.print(t)

    a = h["alerts"]
    opened = ", ".join(f"{k} {a['open'][k]}" for k in ("CRITICAL", "HIGH", "MEDIUM", "LOW"))
    inc = ", ".join(f"{k} {n}" for k, n in sorted(h["incidents"].items())) or "none"
    console.print(f"open alerts (unacknowledged): {a['open_total']} ({opened}); open incidents: {inc}", highlight=False)


@main.command("health")
@click.option("--json", "as_json", is_flag=True, help="Print the health document as JSON.")
def health_cmd(as_json: bool) -> None:
    """Server, extensions, pg_cron and TimescaleDB jobs, data freshness, models, open alerts.

    Exit status 0 when ok, 1 when degraded, 2 when failing (also when the server cannot be reached); each
    problem is named on stderr.
    """
    try:
        with connect() as conn:
            h = conn.execute("SELECT ops.health()").fetchone()[0]
    except (DatabaseUnavailable, psycopg.OperationalError) as exc:
        msg = str(exc).strip().splitlines()[0]
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "status": "failing",
                        "problems": [{"kind": "server", "status": "failing", "message": msg}],
                        "server": {"up": False},
                    },
                    indent=2,
                )
            )
        err_console.print(f"[red]failing:[/red] server: {msg}", highlight=False, soft_wrap=True)
        sys.exit(EXIT["failing"])
    if as_json:
        emit_json(h)
    else:
        _print(h)
    for p in h["problems"]:
        colour = _COLOUR[p["status"]]
        err_console.print(f"[{colour}]{p['status']}:[/] {p['kind']}: {p['message']}", highlight=False, soft_wrap=True)
    sys.exit(EXIT[h["status"]])
