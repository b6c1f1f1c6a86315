"""``pgtrade ml``: the model registry from the command line (registered on the CLI).

Thin: training and evaluation run inside the database (ml.train / ml.evaluate call the ml package through
PL/Python), so this module only passes arguments, reads rows and prints them.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from rich.table import Table

from .cli import console, emit_json, err_console, main, user_errors
from .db import connect
from .errors import PgtradeError

_JSON = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
#: the bundled real series the evaluation report covers (pgtrade load sample)
REPORT_SYMBOLS = ("SPX", "IXIC", "GOOG")
REPORT_KINDS = ("logreg", "gbm", "rf")
REPORT_BEGIN, REPORT_END = "<!-- ml-evaluation:begin -->", "<!-- ml-evaluation:end -->"


def _symbols(value: str) -> list[str]:
    syms = [s.strip().upper() for s in value.split(",") if s.strip()]
    if not syms:
        raise click.BadParameter("give one symbol or several, comma-separated")
    return syms


def _name_version(ref: str, *, version_required: bool) -> tuple[str, int | None]:
    m = re.fullmatch(r"([a-z][a-z0-9_.-]{0,62})(?::(\d+))?", ref)
    if not m or (version_required and m.group(2) is None):
        form = "NAME:VERSION" if version_required else "NAME[:VERSION]"
        raise PgtradeError(f"expected {form} (e.g. spx-logreg:2), got {ref!r}")
    return m.group(1), int(m.group(2)) if m.group(2) else None


def _pct(v) -> str:
    return "" if v is None else f"{100 * v:.2f}%"


def _num(v, places: int = 4) -> str:
    return "" if v is None else f"{v:.{places}f}"


@main.group()
def ml() -> None:
    """Models: train in the database, list, activate, export, import, evaluate (walk-forward)."""


@ml.command("train")
@click.option("--model", "kind", required=True, help="Model kind: logreg, gbm, rf (direction), isolation_forest.")
@click.option("--symbols", required=True, help="One symbol, or several pooled (comma-separated).")
@click.option("--interval", default="1d", show_default=True)
@click.option("--from", "from_", default=None, help="First bar of the training window (default: the first).")
@click.option("--until", default=None, help="Last bar of the training window (default: the newest).")
@click.option("--name", default=None, help="Model name (default: SYMBOLS-KIND, lower case).")
@click.option("--params", default=None, help='JSON params, e.g. \'{"C": 0.5, "test_fraction": 0.25}\'.')
@click.option("--activate", is_flag=True, help="Activate it if it beats the active version and the baselines.")
@click.option("--force", is_flag=True, help="With --activate: activate it whatever it scored.")
@_JSON
@user_errors
def ml_train(kind, symbols, interval, from_, until, name, params, activate, force, as_json) -> None:
    """Train a new version in the server (ml.train) and register it; its out-of-sample result and the decision."""
    import json

    syms = _symbols(symbols)
    name = name or f"{'-'.join(syms).lower()}-{kind.replace('_', '-')}"
    try:
        params_obj = json.loads(params) if params else {}
    except json.JSONDecodeError as exc:
        raise PgtradeError(f"--params is not JSON: {exc}") from None
    if force and not activate:
        raise PgtradeError("--force goes with --activate")
    mode = "always" if force else "if_better" if activate else "never"
    with connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        with console.status(f"training {kind} on {','.join(syms)} {interval} in the database"):
            run = cur.execute(
                """SELECT * FROM ml.train(%s, %s, %s, %s, coalesce(%s::timestamptz, '-infinity'),
                                          coalesce(%s::timestamptz, 'infinity'), %s, %s, 'cli')""",
                (name, kind, syms, interval, from_, until, Jsonb(params_obj), mode),
            ).fetchone()
        version = None
        if run["model_id"]:
            version = cur.execute("SELECT version FROM ml.models WHERE id = %s", (run["model_id"],)).fetchone()
        conn.commit()
    if as_json:
        emit_json(run | {"version": version["version"] if version else None})
    else:
        _print_run(run, name, version["version"] if version else None)
    if run["decision"] == "failed":
        sys.exit(1)


def _print_run(run: dict, name: str, version: int | None) -> None:
    if run["decision"] == "failed":
        err_console.print(f"[red]training failed:[/red] {run['reason']}", highlight=False, soft_wrap=True)
        return
    res = run["metrics"]
    m, b = res.get("metrics", {}), res.get("baselines", {})
    console.print(f"{name}:{version} [bold]{run['decision']}[/bold] — {run['reason']}", highlight=False, soft_wrap=True)
    console.print(
        f"trained on {res['n_train']:,} rows {res['train_from'][:10]}..{res['train_until'][:10]}, "
        f"tested on {res['n_test']:,} rows {res['test_from'][:10]}..{res['test_until'][:10]}; "
        f"fit {res['fit_seconds']:.2f} s, export {res['export_seconds']:.2f} s",
        highlight=False,
    )
    if res.get("task") == "direction":
        console.print(_metrics_table("out of sample (held-out end of the window)", m, b, res.get("other_metrics")))


def _metrics_table(title: str, m: dict, b: dict, active: dict | None = None) -> Table:
    t = Table(title=title)
    for c in ("", "accuracy", "balanced acc.", "AUC", "net return", "exposure", "trades"):
        t.add_column(c, justify="left" if not c else "right")
    rows = [("model", m)]
    if active:
        rows.append(("active version", active))
    rows += [("always up", b.get("always_up", {})), ("yesterday's direction", b.get("yesterday", {}))]
    rows.append(("buy and hold", b.get("buy_and_hold", {})))
    for label, r in rows:
        t.add_row(
            label,
            _num(r.get("accuracy")),
            _num(r.get("balanced_accuracy")),
            _num(r.get("auc")),
            _pct(r.get("net_return")),
            _pct(r.get("exposure")),
            str(r.get("trades", "")),
        )
    return t


_LIST = """SELECT m.name, m.version, m.status, m.task, m.kind, m.origin, m.symbols, m."interval", m.train_from,
                  m.train_until, m.metrics, m.baselines, m.buy_threshold, m.sell_threshold, m.output_name,
                  m.output_column, m.feature_version, m.onnx_sha256, length(m.onnx) AS onnx_bytes, m.created_at,
                  m.activated_at, m.retired_at
           FROM ml.models m WHERE (%(name)s::text IS NULL OR m.name = %(name)s) ORDER BY m.name, m.version"""


@ml.command("list")
@click.option("--name", default=None, help="Only this model's versions.")
@_JSON
@user_errors
def ml_list(name, as_json) -> None:
    """Every registered version (ml.models, without the ONNX bytes) and its out-of-sample metrics."""
    with connect() as conn:
        rows = conn.cursor(row_factory=dict_row).execute(_LIST, {"name": name}).fetchall()
    if as_json:
        emit_json(rows)
        return
    t = Table(title="models")
    for c in (
        "name",
        "ver",
        "status",
        "kind",
        "symbols",
        "interval",
        "trained until",
        "bal. acc.",
        "AUC",
        "net ret.",
        "buy&hold",
        "origin",
    ):
        t.add_column(c, justify="right" if c in {"ver", "bal. acc.", "AUC", "net ret.", "buy&hold"} else "left")
    for r in rows:
        m, b = r["metrics"] or {}, r["baselines"] or {}
        t.add_row(
            r["name"], str(r["version"]), r["status"], r["kind"], ",".join(r["symbols"]), r["interval"],
            r["train_until"].strftime("%Y-%m-%d") if r["train_until"] else "",
            _num(m.get("balanced_accuracy")), _num(m.get("auc")), _pct(m.get("net_return")),
            _pct((b.get("buy_and_hold") or {}).get("net_return")), r["origin"],
        )  # fmt: skip
    console.print(t)


@ml.command("runs")
@click.option("--limit", default=20, show_default=True)
@_JSON
@user_errors
def ml_runs(limit, as_json) -> None:
    """The latest training runs (CLI, schedule, evaluation) and their decisions (ml.training_runs)."""
    with connect() as conn:
        rows = (
            conn.cursor(row_factory=dict_row)
            .execute(
                """SELECT r.id, r.started_at, r.finished_at, r.trigger, r.name, r.kind, r.symbols, r."interval",
                      m.version, r.decision, r.reason
               FROM ml.training_runs r LEFT JOIN ml.models m ON m.id = r.model_id ORDER BY r.id DESC LIMIT %s""",
                (limit,),
            )
            .fetchall()
        )
    if as_json:
        emit_json(rows)
        return
    t = Table(title="training runs")
    for c in ("id", "started", "trigger", "name", "ver", "decision", "reason"):
        t.add_column(c)
    for r in rows:
        t.add_row(str(r["id"]), r["started_at"].strftime("%Y-%m-%d %H:%M"), r["trigger"], r["name"],
                  str(r["version"] or ""), r["decision"] or "", r["reason"] or "")  # fmt: skip
    console.print(t)


@ml.command("activate")
@click.argument("ref")
@user_errors
def ml_activate(ref) -> None:
    """Make NAME:VERSION the active version of its name (the one before is retired)."""
    name, version = _name_version(ref, version_required=True)
    with connect() as conn:
        conn.execute("SELECT ml.activate(%s, %s)", (name, version))
        conn.commit()
    console.print(f"{name}:{version} is active", highlight=False)


@ml.command("retire")
@click.argument("ref")
@user_errors
def ml_retire(ref) -> None:
    """Retire NAME:VERSION (kept in the registry, no longer scored)."""
    name, version = _name_version(ref, version_required=True)
    with connect() as conn:
        conn.execute("SELECT ml.retire(%s, %s)", (name, version))
        conn.commit()
    console.print(f"{name}:{version} is retired", highlight=False)


@ml.command("export")
@click.argument("ref")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, writable=True, path_type=Path))
@user_errors
def ml_export(ref, out: Path) -> None:
    """Write a model's ONNX bytes to a file (NAME: the active version, else the newest)."""
    name, version = _name_version(ref, version_required=False)
    with connect() as conn:
        row = conn.execute(
            """SELECT version, onnx FROM ml.models WHERE name = %s AND (%s::int IS NULL OR version = %s)
               ORDER BY (status = 'active') DESC, version DESC LIMIT 1""",
            (name, version, version),
        ).fetchone()
    if row is None:
        raise PgtradeError(f"no model {ref} (pgtrade ml list shows the registered ones)")
    out.write_bytes(bytes(row[1]))
    console.print(f"{name}:{row[0]} -> {out} ({len(row[1]):,} bytes)", highlight=False)


@ml.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True)
@click.option("--symbols", required=True)
@click.option("--interval", default="1d", show_default=True)
@click.option("--kind", default="imported", show_default=True, help="What the model is (free text).")
@click.option("--task", type=click.Choice(["direction", "anomaly"]), default="direction", show_default=True)
@click.option("--output", "output_name", default=None, help="Output to score (default probabilities / scores).")
@click.option("--output-column", type=int, default=None, help="Its column (default 1 for direction, else 0).")
@user_errors
def ml_import(file: Path, name, symbols, interval, kind, task, output_name, output_column) -> None:
    """Register an ONNX model trained elsewhere as a candidate, after checking its input width against the feature
    list and running it on a real feature row in the server (ml.import_model)."""
    with connect() as conn:
        model_id = conn.execute(
            "SELECT ml.import_model(%s, %s, %s, %s, %s, %s, %s, %s)",
            (name, _symbols(symbols), interval, file.read_bytes(), kind, task, output_name, output_column),
        ).fetchone()[0]
        version = conn.execute("SELECT version FROM ml.models WHERE id = %s", (model_id,)).fetchone()[0]
        conn.commit()
    console.print(f"imported {file} as {name}:{version} (candidate; pgtrade ml activate {name}:{version})",
                  highlight=False)  # fmt: skip


@ml.command("evaluate")
@click.argument("name", required=False)
@click.option("--walk-forward", is_flag=True, required=True, help="Walk-forward out of sample (the only mode).")
@click.option("--train", default=1000, show_default=True, help="Bars in each rolling training window.")
@click.option("--test", default=250, show_default=True, help="Bars predicted after each training window.")
@click.option("--purge", default=1, show_default=True, help="Bars left out between training and test.")
@click.option("--until", default=None, help="Use the history up to this date only.")
@click.option("--all", "all_", is_flag=True, help=f"Every kind ({', '.join(REPORT_KINDS)}) on each of "
              f"{', '.join(REPORT_SYMBOLS)} and pooled over them (the docs/ml.md evaluation).")  # fmt: skip
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --all: write the result into this markdown file's evaluation section.")  # fmt: skip
@_JSON
@user_errors
def ml_evaluate(name, walk_forward, train, test, purge, until, all_, report, as_json) -> None:
    """Walk-forward evaluation in the server (ml.evaluate): the model NAME's kind, symbols and params (active
    version, else the newest), or with --all every kind on the bundled real series, beside the naive baselines."""
    if bool(name) == all_:
        raise PgtradeError("give a model NAME or --all")
    if report and not all_:
        raise PgtradeError("--report goes with --all")
    with connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        if all_:
            jobs = [(f"eval-{s.lower()}-{k}", k, [s]) for s in REPORT_SYMBOLS for k in REPORT_KINDS]
            jobs += [(f"eval-pooled-{k}", k, list(REPORT_SYMBOLS)) for k in REPORT_KINDS]
            params = {}
            interval = "1d"
        else:
            cfg = cur.execute(
                """SELECT kind, symbols, "interval", params FROM ml.models WHERE name = %s AND task = 'direction'
                   ORDER BY (status = 'active') DESC, version DESC LIMIT 1""",
                (name,),
            ).fetchone()
            if cfg is None:
                raise PgtradeError(f"no direction model {name!r} (pgtrade ml list shows the registered ones)")
            jobs = [(name, cfg["kind"], cfg["symbols"])]
            params, interval = cfg["params"], cfg["interval"]
        results = []
        for job_name, kind, syms in jobs:
            with console.status(f"walk-forward {kind} on {','.join(syms)} {interval} in the database"):
                res = cur.execute(
                    "SELECT ml.evaluate(%s, %s, %s, %s, %s, %s, %s, %s, coalesce(%s::timestamptz, 'infinity')) AS r",
                    (job_name, kind, syms, interval, Jsonb(params), train, test, purge, until),
                ).fetchone()["r"]
            conn.commit()
            results.append({"name": job_name, "kind": kind, "symbols": syms, "interval": interval} | res)
    if as_json:
        emit_json(results)
    else:
        for r in results:
            console.print(_metrics_table(
                f"{r['name']}: {r['kind']} on {','.join(r['symbols'])} {r['interval']}, {r['folds']} folds, "
                f"{r['n_test']:,} test bars {r['test_from'][:10]}..{r['test_until'][:10]}",
                r["metrics"], r["baselines"]))  # fmt: skip
    if report:
        _write_report(report, results, train, test, purge)
        console.print(f"wrote the evaluation section of {report}", highlight=False)


def _write_report(path: Path, results: list[dict], train: int, test: int, purge: int) -> None:
    """Replace the text between the evaluation markers of ``path`` by a table of ``results``."""
    lines = [
        REPORT_BEGIN,
        f"Walk-forward: train {train} bars, purge {purge}, test {test}, rolling; daily bars; costs 10 bps per side "
        "(ml/metrics.py). Net return over the whole out-of-sample span; a pooled model's is the mean over its "
        "symbols. Generated by `pgtrade ml evaluate --all --walk-forward --report docs/ml.md`.",
        "",
        "| series | test span | model | accuracy | balanced acc. | AUC | net return | exposure | trades |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    by_series: dict[str, list[dict]] = {}
    for r in results:
        by_series.setdefault(",".join(r["symbols"]), []).append(r)
    for series, rs in by_series.items():
        span = f"{rs[0]['test_from'][:10]}..{rs[0]['test_until'][:10]} ({rs[0]['n_test']:,} rows)"
        rows = [(r["kind"], r["metrics"]) for r in rs]
        b = rs[0]["baselines"]
        rows += [("always up", b["always_up"]), ("yesterday's direction", b["yesterday"]),
                 ("buy and hold", b["buy_and_hold"])]  # fmt: skip
        for i, (label, m) in enumerate(rows):
            lines.append(
                f"| {series if i == 0 else ''} | {span if i == 0 else ''} | {label} | {_num(m.get('accuracy'))} | "
                f"{_num(m.get('balanced_accuracy'))} | {_num(m.get('auc'))} | {_pct(m.get('net_return'))} | "
                f"{_pct(m.get('exposure'))} | {m.get('trades', '')} |"
            )
    lines.append(REPORT_END)
    text = path.read_text() if path.exists() else ""
    block = "\n".join(lines)
    if REPORT_BEGIN in text and REPORT_END in text:
        head, rest = text.split(REPORT_BEGIN, 1)
        text = head + block + rest.split(REPORT_END, 1)[1]
    else:
        text = text + ("\n" if text and not text.endswith("\n") else "") + block + "\n"
    path.write_text(text)
