"""Session defaults per asset class (market.asset_classes): the same session whichever loader registers a symbol."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import psycopg
import pytest

from loaders.csv_loader import load_csv
from loaders.sample import register_instrument
from pgtrade.ingest import Bar, ingest
from pgtrade.migrate import migrate

MONDAY = datetime(2024, 6, 3, tzinfo=UTC)
NY_HOURS = (time(9, 30), time(16, 0))
SESSION = ("session_tz", "session_open", "session_close", "trades_weekends", "qty_step", "asset_class")


def instrument(conn, symbol):
    return conn.execute(f"SELECT {', '.join(SESSION)} FROM market.instruments WHERE symbol = %s", (symbol,)).fetchone()


@pytest.mark.parametrize("asset_class", ["stock", "etf", "index", "fx", "crypto"])
def test_every_loader_gives_a_new_symbol_its_class_session(db, tmp_path, unique_symbol, asset_class):
    sample, auto, csv = (f"{unique_symbol}{k}" for k in "SAC")
    register_instrument(db, symbol=sample, name="sample loader", asset_class=asset_class)
    ingest(
        db,
        [Bar(auto, "1m", MONDAY + timedelta(hours=14, minutes=30), "1", "1", "1", "1", "1")],
        source="test:auto",
        auto_register=True,
        asset_class=asset_class,
    )
    db.execute("SELECT market.upsert_instrument(%s::text, NULL::text, %s::text)", (csv, asset_class))
    ingest(  # the same bar for the two registered by hand: the gaps below must then agree
        db,
        [Bar(s, "1m", MONDAY + timedelta(hours=14, minutes=30), "1", "1", "1", "1", "1") for s in (sample, csv)],
        source="test:registered",
    )
    want = db.execute(
        f"SELECT {', '.join(SESSION)} FROM market.asset_classes WHERE asset_class = %s", (asset_class,)
    ).fetchone()
    assert instrument(db, sample) == instrument(db, auto) == instrument(db, csv) == want
    # gap detection and day-order expiry agree whichever loader registered the symbol
    day = (MONDAY, MONDAY + timedelta(days=1))
    gaps = [
        db.execute("SELECT count(*) FROM market.missing_bars(%s, '1m', %s, %s)", (s, *day)).fetchone()[0]
        for s in (sample, auto, csv)
    ]
    ends = [
        db.execute("SELECT market.session_end(%s, %s)", (s, MONDAY + timedelta(hours=15))).fetchone()[0]
        for s in (sample, auto, csv)
    ]
    assert len(set(gaps)) == 1 and len(set(ends)) == 1
    if asset_class == "stock":
        assert gaps[0] == 390 - 1  # the regular New York session, less the one bar loaded
        assert ends[0] == MONDAY + timedelta(hours=20)  # 16:00 New York (EDT) on that day
    if asset_class == "crypto":
        assert gaps[0] == 1440 - 1


def test_csv_auto_registration_uses_the_class_session(db_url, tmp_path, unique_symbol):
    path = tmp_path / "x.csv"
    path.write_text("ts,open,high,low,close\n2024-06-03T14:30:00Z,1,1,1,1\n")
    with psycopg.connect(db_url) as conn:
        load_csv(conn, path, symbol=unique_symbol, interval="1m", auto_register=True, asset_class="etf")
        assert instrument(conn, unique_symbol)[:3] == ("America/New_York", *NY_HOURS)


def test_an_unknown_asset_class_is_a_clear_error(db):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="unknown asset class 'bond'"):
        db.execute("SELECT market.upsert_instrument('BOND1'::text, NULL::text, 'bond'::text)")


def test_migration_gives_auto_registered_instruments_their_class_session(scratch_db):
    """Instruments as the ingest path registered them before 0013 (the table's defaults: 24 hours UTC, weekdays,
    step 1) get their class's session from 0013; one registered by hand keeps its own. The later migrations'
    objects stay: 0013 runs again over them, as written."""
    with psycopg.connect(scratch_db, autocommit=True) as conn:
        migrate(conn)
        conn.execute(
            "INSERT INTO market.instruments (symbol, asset_class, auto_registered, session_tz, session_open, "
            "session_close, trades_weekends, qty_step) VALUES ('AUTO1', 'stock', true, 'UTC', NULL, NULL, false, 1), "
            "('AUTO2', 'crypto', true, 'UTC', NULL, NULL, false, 1)"
        )
        conn.execute(
            "INSERT INTO market.instruments (symbol, asset_class, session_tz) VALUES ('MINE', 'stock', 'Europe/Berlin')"
        )
        assert instrument(conn, "AUTO1")[:3] == ("UTC", None, None)
        conn.execute("DELETE FROM ops.schema_migrations WHERE version = '0013'")
        assert migrate(conn).applied == ["0013_market_asset_classes.sql"]
        assert instrument(conn, "AUTO1")[:4] == ("America/New_York", *NY_HOURS, False)
        assert instrument(conn, "AUTO2")[3:5] == (True, Decimal("0.00000001"))
        assert instrument(conn, "MINE")[:3] == ("Europe/Berlin", None, None)  # registered by hand: kept
