"""Run the pgTAP files in tests/sql/ against the test database, each in a rolled-back transaction."""

from __future__ import annotations

from pathlib import Path

import pytest

SQL_DIR = Path(__file__).parent / "sql"


@pytest.mark.parametrize("path", sorted(SQL_DIR.glob("*.sql")), ids=lambda p: p.stem)
def test_pgtap_file(db, path):
    lines: list[str] = []
    with db.cursor() as cur:
        cur.execute(path.read_text())
        while True:
            if cur.description:
                lines.extend(str(row[0]) for row in cur.fetchall())
            if not cur.nextset():
                break
    tap = "\n".join(lines)
    plan = [ln for ln in lines if ln.startswith("1..")]
    assert plan, f"no TAP plan in output:\n{tap}"
    failed = [ln for ln in lines if ln.startswith("not ok")]
    assert not failed, tap
    assert not any("Looks like" in ln for ln in lines), tap
    assert sum(ln.startswith("ok ") for ln in lines) == int(plan[0][3:]), tap
