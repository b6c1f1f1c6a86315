"""The CLI: help everywhere, one-line user errors with non-zero exit, JSON output, loads through the ingest path."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from pgtrade.cli import main


def all_commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        yield (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from all_commands(cmd, (*prefix, name))


@pytest.mark.parametrize("path", [(), *all_commands(main)], ids=lambda p: " ".join(p) or "pgtrade")
def test_every_command_has_help(path):
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_unreachable_database_is_one_line_and_exit_1(monkeypatch):
    monkeypatch.setenv("PGTRADE_DATABASE_URL", "postgresql://nobody:secret@127.0.0.1:1/nope")
    result = CliRunner().invoke(main, ["summary"])
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "cannot connect to the database" in lines[0] and "Connection refused" in lines[0]
    assert "secret" not in result.output
    assert "Traceback" not in result.output


def test_missing_file_and_unknown_interval(monkeypatch, db_url, tmp_path):
    monkeypatch.setenv("PGTRADE_DATABASE_URL", db_url)
    result = CliRunner().invoke(main, ["load", "csv", str(tmp_path / "nope.csv"), "--symbol", "X", "--interval", "1d"])
    assert result.exit_code == 1 and "no such file" in result.output
    path = tmp_path / "x.csv"
    path.write_text("Date,Open,High,Low,Close,Volume\n2024-01-02,1,1,1,1,1\n")
    result = CliRunner().invoke(main, ["load", "csv", str(path), "--symbol", "X", "--interval", "7m"])
    assert result.exit_code == 1
    assert "22023 unknown interval '7m'" in result.output and "hint: use one of: 1m" in result.output
    assert "Traceback" not in result.output


def test_load_csv_json_report_and_reload(monkeypatch, db_url, tmp_path, unique_symbol):
    monkeypatch.setenv("PGTRADE_DATABASE_URL", db_url)
    path = tmp_path / "bars.csv"
    path.write_text(
        "Date,Open,High,Low,Close,Volume\n2024-01-02,10,11,9,10.5,100\n2024-01-03,10,9,9,10,5\n"
        "2024-01-04,10,12,9,11,7\n"
    )
    args = ["load", "csv", str(path), "--symbol", unique_symbol, "--interval", "1d", "--json"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    report = json.loads(first.output)
    assert report["total"] == {"inserted": 2, "updated": 0, "unchanged": 0, "rejected": 1}
    again = json.loads(CliRunner().invoke(main, args).output)
    assert again["total"] == {"inserted": 0, "updated": 0, "unchanged": 2, "rejected": 1}


def test_db_status_json(monkeypatch, db_url):
    monkeypatch.setenv("PGTRADE_DATABASE_URL", db_url)
    result = CliRunner().invoke(main, ["db", "status", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["extensions"]["timescaledb"] == "2.28.3"
    assert "plpython3u" in info["extensions"]
    assert info["pending_migrations"] == []


def test_managing_an_external_server_is_refused(monkeypatch, db_url):
    monkeypatch.setenv("PGTRADE_DATABASE_URL", db_url)
    result = CliRunner().invoke(main, ["db", "up"])
    assert result.exit_code == 1 and "PGTRADE_DATABASE_URL is set" in result.output
