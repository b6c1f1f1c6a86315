-- The price tick of each instrument: the smallest step its prices move in. Screens show prices at the tick (the
-- pgtrade CLI rounds to it; --json keeps the exact stored values). Defaults by asset class: 0.00001 for fx (the
-- fifth decimal, a pipette), 0.01 for everything else (a cent). An instrument inserted without a tick gets its
-- class's default from market.default_tick_size (trigger _050_default_tick_size, db/triggers/
-- market_instruments_tick_size.sql), and follows its class when that changes while it still has the old class's
-- default; a tick set explicitly (a JPY pair's 0.001, a stock's 0.0001 below one dollar) stays.
ALTER TABLE market.instruments ADD COLUMN tick_size numeric;
-- Existing rows, with the rule market.default_tick_size states (that function is a repeatable file, applied after
-- the numbered migrations, so it does not exist yet on a new database).
UPDATE market.instruments SET tick_size = CASE asset_class WHEN 'fx' THEN 0.00001 ELSE 0.01 END;
ALTER TABLE market.instruments
  ALTER COLUMN tick_size SET NOT NULL,
  ADD CONSTRAINT instruments_tick_size CHECK (tick_size > 0 AND tick_size < 'Infinity');
COMMENT ON COLUMN market.instruments.tick_size IS
  'Smallest price step (positive). Default by asset class when not given: 0.00001 for fx, 0.01 otherwise. Prices are shown rounded to it.';
