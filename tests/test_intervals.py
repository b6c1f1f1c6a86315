"""The interval catalog as Python sees it: read from market.intervals, once per connection."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pgtrade.errors import PgtradeError
from pgtrade.intervals import interval_step, interval_steps


def test_the_catalog_is_the_database_table_read_once_per_connection(db):
    steps = interval_steps(db)
    assert steps == dict(db.execute("SELECT code, step FROM market.intervals").fetchall())
    assert steps["1m"] == timedelta(minutes=1) and list(steps) == sorted(steps, key=steps.get)
    db.execute("INSERT INTO market.intervals (code, step, description) VALUES ('2m', '2 minutes', 'test')")
    assert interval_steps(db) is steps and "2m" not in steps  # cached for this connection


def test_an_unknown_code_names_the_known_ones(db):
    with pytest.raises(PgtradeError, match=r"unknown interval '7m'; use one of: 1m, 5m, .*1d"):
        interval_step(db, "7m")
