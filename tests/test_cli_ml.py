"""``pgtrade ml`` against the real database: train (in the server), list (table and --json), runs, activate,
export, import (a good model and a wrong width), evaluate --walk-forward, and the docs report. Each test commits
under names of its own."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from click.testing import CliRunner
from ml_series import daily_series, random_walk

from pgtrade.cli import main


@pytest.fixture
def series(monkeypatch, db_url):
    """A committed daily random walk of 600 bars under a symbol of its own."""
    monkeypatch.setenv("PGTRADE_DATABASE_URL", db_url)
    sym = f"T{uuid.uuid4().hex[:8].upper()}"
    with psycopg.connect(db_url) as conn:
        daily_series(conn, sym, random_walk(600, seed=3))
        conn.commit()
    return sym


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_train_list_activate_export_import(series, tmp_path):
    name = f"t-cli-{uuid.uuid4().hex[:6]}"
    r = run("ml", "train", "--model", "logreg", "--symbols", series, "--name", name, "--until", "2002-06-30")
    assert r.exit_code == 0, r.output
    assert f"{name}:1 candidate" in r.output and "buy and hold" in r.output and "yesterday's direction" in r.output
    listed = json.loads(run("ml", "list", "--name", name, "--json").output)
    assert [(m["version"], m["status"], m["origin"], m["kind"]) for m in listed] == [
        (1, "candidate", "trained", "logreg")
    ]
    assert "onnx" not in listed[0] and listed[0]["metrics"]["auc"] is not None
    assert name in run("ml", "list").output
    r = run("ml", "activate", f"{name}:1")
    assert r.exit_code == 0 and "is active" in r.output, r.output
    out = tmp_path / "m.onnx"
    r = run("ml", "export", name, "--out", out)
    assert r.exit_code == 0, r.output
    r = run("ml", "import", out, "--name", f"{name}-copy", "--symbols", series, "--kind", "logreg")
    assert r.exit_code == 0 and f"{name}-copy:1 (candidate" in r.output, r.output
    listed = json.loads(run("ml", "list", "--name", f"{name}-copy", "--json").output)
    assert (
        listed[0]["origin"] == "imported"
        and listed[0]["onnx_sha256"] == json.loads(run("ml", "list", "--name", name, "--json").output)[0]["onnx_sha256"]
    )
    r = run("ml", "runs", "--json")
    assert any(x["name"] == name and x["decision"] == "candidate" for x in json.loads(r.output))


def test_user_errors_are_one_line_and_exit_1(series, tmp_path):
    r = run("ml", "train", "--model", "svm", "--symbols", series)
    assert r.exit_code == 1 and "ML101" in r.output and "Traceback" not in r.output
    r = run("ml", "activate", "no-such-model:3")
    assert r.exit_code == 1 and "ML104" in r.output
    r = run("ml", "activate", "Bad Name")
    assert r.exit_code == 1 and "NAME:VERSION" in r.output
    bad = tmp_path / "junk.onnx"
    bad.write_bytes(b"junk")
    r = run("ml", "import", bad, "--name", "t-junk", "--symbols", series)
    assert r.exit_code == 1 and "ML106" in r.output


def test_evaluate_walk_forward(series):
    name = f"t-cli-wf-{uuid.uuid4().hex[:6]}"
    assert run("ml", "train", "--model", "gbm", "--symbols", series, "--name", name,
               "--params", '{"n_estimators": 20}').exit_code == 0  # fmt: skip
    r = run("ml", "evaluate", name, "--walk-forward", "--train", 200, "--test", 100, "--purge", 1, "--json")
    assert r.exit_code == 0, r.output
    (res,) = json.loads(r.output)
    # 600 bars, 49 of warmup, the last without a label: 550 rows; folds of 200 + 1 + 100 rolling by 100
    assert res["folds"] == 4 and res["n_test"] == 349 and res["kind"] == "gbm"
    assert set(res["baselines"]) == {"always_up", "yesterday", "buy_and_hold"}
    assert "always up" in run("ml", "evaluate", name, "--walk-forward", "--train", 200, "--test", 100).output


def test_report_rewrites_only_its_section(monkeypatch, tmp_path):
    from pgtrade import cli_ml

    doc = tmp_path / "ml.md"
    doc.write_text(
        f"# ML\n\n## Evaluation\n\n{cli_ml.REPORT_BEGIN}\nSTALE-TABLE\n{cli_ml.REPORT_END}\n\n## Other\nkept\n"
    )
    m = {"accuracy": 0.5, "balanced_accuracy": 0.5, "auc": 0.5, "net_return": 0.1, "exposure": 1.0, "trades": 1}
    res = {"kind": "logreg", "symbols": ["SPX"], "test_from": "2003-01-01", "test_until": "2018-12-31", "n_test": 10,
           "metrics": m, "baselines": {"always_up": m, "yesterday": m, "buy_and_hold": m}}  # fmt: skip
    cli_ml._write_report(doc, [res], 1000, 250, 1)
    text = doc.read_text()
    assert (
        "STALE-TABLE" not in text
        and "## Other\nkept" in text
        and "| SPX | 2003-01-01..2018-12-31 (10 rows) | logreg |" in text
    )
