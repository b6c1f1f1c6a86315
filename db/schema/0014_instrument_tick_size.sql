-- The price tick of each instrument: the smallest step its prices move in. Screens show prices at the tick (the
-- pgtrade CLI rounds to it; --json keeps the exact stored values). The default is the asset class's, kept beside
-- its other defaults in market.asset_classes (0013): 0.00001 for fx (the fifth decimal, a pipette), 0.01 for
-- everything else (a cent). An instrument inserted without a tick gets its class's (market.default_tick_size,
-- trigger _050_default_tick_size in db/triggers/market_instruments_tick_size.sql), and follows its class when that
-- changes while it still has the old class's default; a tick set explicitly (a JPY pair's 0.001, a stock's 0.0001
-- below one dollar) stays.
ALTER TABLE market.asset_classes ADD COLUMN tick_size numeric NOT NULL DEFAULT 0.01
  CONSTRAINT asset_classes_tick_size CHECK (tick_size > 0 AND tick_size < 'Infinity');
UPDATE market.asset_classes SET tick_size = 0.00001 WHERE asset_class = 'fx';
COMMENT ON COLUMN market.asset_classes.tick_size IS 'Default price tick of the class''s instruments.';

ALTER TABLE market.instruments ADD COLUMN tick_size numeric;
UPDATE market.instruments i SET tick_size = a.tick_size FROM market.asset_classes a WHERE a.asset_class = i.asset_class;
ALTER TABLE market.instruments
  ALTER COLUMN tick_size SET NOT NULL,
  ADD CONSTRAINT instruments_tick_size CHECK (tick_size > 0 AND tick_size < 'Infinity');
COMMENT ON COLUMN market.instruments.tick_size IS
  'Smallest price step (positive). When not given, the asset class''s (market.asset_classes.tick_size). Prices are shown rounded to it.';
