-- Session defaults per asset class, in one place (0014 adds the price tick). The sample loader, the SQL auto-registration
-- (market.ingest_staged(..., auto_register => true, asset_class => ...)) and market.upsert_instrument all take an
-- instrument's session and quantity step from here unless told otherwise. Before this, an auto-registered stock got
-- a 24-hour UTC session while the sample loader gave stocks New York hours, so gap detection (market.missing_bars)
-- and day-order expiry (market.session_end) depended on which loader first saw the symbol.

CREATE TABLE IF NOT EXISTS market.asset_classes (
  asset_class     text PRIMARY KEY,
  session_tz      text NOT NULL,
  session_open    time,
  session_close   time,
  trades_weekends boolean NOT NULL,
  qty_step        numeric NOT NULL CONSTRAINT asset_classes_qty_step CHECK (qty_step > 0),
  description     text NOT NULL,
  CONSTRAINT asset_classes_session CHECK ((session_open IS NULL) = (session_close IS NULL))
);
COMMENT ON TABLE market.asset_classes IS
  'Asset classes with the session and quantity step their instruments get by default (registration, auto-registration, the sample loader).';
COMMENT ON COLUMN market.asset_classes.session_open IS
  'Regular session open in session_tz; NULL means around the clock (fx: its Sunday-Friday week, see market.is_trading_time).';

INSERT INTO market.asset_classes (asset_class, session_tz, session_open, session_close, trades_weekends, qty_step,
                                  description) VALUES
  ('stock',  'America/New_York', '09:30', '16:00', false, 1, 'US equities: regular session 09:30-16:00 New York time, weekdays'),
  ('etf',    'America/New_York', '09:30', '16:00', false, 1, 'US exchange-traded funds: regular session 09:30-16:00 New York time, weekdays'),
  ('index',  'America/New_York', '09:30', '16:00', false, 1, 'US equity indexes: computed during the 09:30-16:00 New York session, weekdays'),
  ('fx',     'America/New_York', NULL, NULL, false, 0.01, 'Foreign exchange: 24x5, Sunday 17:00 to Friday 17:00 New York time'),
  ('crypto', 'UTC', NULL, NULL, true, 0.00000001, 'Crypto assets: 24x7')
ON CONFLICT (asset_class) DO NOTHING;

-- The instruments' asset class is now a reference to this table (it was a CHECK with the same five names).
ALTER TABLE market.instruments DROP CONSTRAINT IF EXISTS instruments_asset_class;
ALTER TABLE market.instruments ADD CONSTRAINT instruments_asset_class
  FOREIGN KEY (asset_class) REFERENCES market.asset_classes (asset_class);
CREATE INDEX IF NOT EXISTS instruments_asset_class ON market.instruments (asset_class);

-- Instruments registered by a data load got the table's defaults (24 hours UTC, weekdays, step 1): give them
-- their class's session and step, as a registration through any loader now does.
UPDATE market.instruments i
   SET session_tz = a.session_tz, session_open = a.session_open, session_close = a.session_close,
       trades_weekends = a.trades_weekends, qty_step = a.qty_step
  FROM market.asset_classes a
 WHERE a.asset_class = i.asset_class AND i.auto_registered;
