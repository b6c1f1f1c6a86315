"""market.instruments.tick_size (migration 0014): positive, never NULL, by default 0.01 and 0.00001 for fx (the
trigger fills it in when an insert gives none, and carries a default tick along when the asset class changes),
an explicit tick kept; api.instruments shows it."""

from __future__ import annotations

import psycopg
import pytest
from trading_support import D, instrument


def tick(db, symbol: str):
    return db.execute("SELECT tick_size FROM market.instruments WHERE symbol = %s", (symbol,)).fetchone()[0]


def test_default_tick_by_asset_class(db):
    instrument(db, "TRDTKS")
    instrument(db, "TRDTKFX", asset_class="fx", qty_step="0.01")
    instrument(db, "TRDTKC", asset_class="crypto", qty_step="0.0001")
    assert (tick(db, "TRDTKS"), tick(db, "TRDTKFX"), tick(db, "TRDTKC")) == (D("0.01"), D("0.00001"), D("0.01"))
    # auto-registered by an ingest as fx
    db.execute("INSERT INTO market.instruments (symbol, asset_class, auto_registered) VALUES ('TRDTKAUTO', 'fx', true)")
    assert tick(db, "TRDTKAUTO") == D("0.00001")


def test_explicit_tick_is_kept_and_a_default_one_follows_the_class(db):
    db.execute("INSERT INTO market.instruments (symbol, asset_class, tick_size) VALUES ('TRDTKJPY', 'fx', 0.001)")
    assert tick(db, "TRDTKJPY") == D("0.001")
    instrument(db, "TRDTKMOVE")  # a stock at the cent ...
    instrument(db, "TRDTKMOVE", asset_class="fx")  # ... re-registered as fx by upsert_instrument
    assert tick(db, "TRDTKMOVE") == D("0.00001")
    db.execute("UPDATE market.instruments SET asset_class = 'stock' WHERE symbol = 'TRDTKJPY'")
    assert tick(db, "TRDTKJPY") == D("0.001")  # set on purpose: stays


@pytest.mark.parametrize("bad", ["0", "-0.01", "'Infinity'", "NULL"])
def test_tick_must_be_positive_and_finite(db, bad):
    instrument(db, "TRDTKBAD")
    with pytest.raises((psycopg.errors.CheckViolation, psycopg.errors.NotNullViolation)):
        with db.transaction():
            db.execute(f"UPDATE market.instruments SET tick_size = {bad}::numeric WHERE symbol = 'TRDTKBAD'")


def test_api_instruments_show_the_tick(db):
    instrument(db, "TRDTKAPI", asset_class="fx", qty_step="0.01")
    db.execute("SET LOCAL ROLE web_anon")
    got = db.execute("SELECT tick_size FROM api.instruments WHERE symbol = 'TRDTKAPI'").fetchone()[0]
    assert got == D("0.00001")
