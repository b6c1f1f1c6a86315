-- Market data store: instruments, bar intervals, the bars hypertable, rejected input, retention settings.

CREATE TABLE market.intervals (
  code        text PRIMARY KEY,
  step        interval NOT NULL UNIQUE,
  description text NOT NULL
);
COMMENT ON TABLE market.intervals IS 'Bar intervals pgtrade knows; a bar''s ts must be a multiple of its step (UTC).';
INSERT INTO market.intervals (code, step, description) VALUES
  ('1m',  '1 minute',   'one minute'),
  ('5m',  '5 minutes',  'five minutes'),
  ('15m', '15 minutes', 'fifteen minutes'),
  ('30m', '30 minutes', 'thirty minutes'),
  ('1h',  '1 hour',     'one hour'),
  ('4h',  '4 hours',    'four hours'),
  ('1d',  '1 day',      'one day (ts is the UTC calendar date at 00:00)');

-- Symbols: upper case, 1-32 characters of A-Z 0-9 . _ / = ^ - (BRK.B, EURUSD=X, ^GSPC, BTC/USD, BTC-USD).
CREATE FUNCTION market.is_valid_symbol(symbol text)
RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT is_valid_symbol.symbol ~ '^[A-Z0-9^][A-Z0-9._/=^-]{0,31}$' $$;
COMMENT ON FUNCTION market.is_valid_symbol IS 'Whether a text is a well-formed pgtrade symbol (upper case; A-Z 0-9 . _ / = ^ -; 1-32 characters).';

CREATE TABLE market.instruments (
  symbol          text PRIMARY KEY CONSTRAINT instruments_symbol_format CHECK (market.is_valid_symbol(symbol)),
  name            text,
  asset_class     text NOT NULL DEFAULT 'stock'
                  CONSTRAINT instruments_asset_class CHECK (asset_class IN ('stock', 'etf', 'index', 'fx', 'crypto')),
  currency        text NOT NULL DEFAULT 'USD' CONSTRAINT instruments_currency CHECK (currency ~ '^[A-Z]{3}$'),
  exchange        text,
  active          boolean NOT NULL DEFAULT true,
  qty_step        numeric NOT NULL DEFAULT 1 CONSTRAINT instruments_qty_step CHECK (qty_step > 0),
  session_tz      text NOT NULL DEFAULT 'UTC',
  session_open    time,
  session_close   time,
  trades_weekends boolean NOT NULL DEFAULT false,
  auto_registered boolean NOT NULL DEFAULT false,
  created_at      timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT instruments_session CHECK ((session_open IS NULL) = (session_close IS NULL))
);
COMMENT ON TABLE market.instruments IS 'Tradable instruments. Symbols are upper case; auto_registered marks symbols first seen in a data load.';
COMMENT ON COLUMN market.instruments.qty_step IS 'Order quantities are multiples of this (1 for whole shares, fractions for fx and crypto).';
COMMENT ON COLUMN market.instruments.session_tz IS 'IANA time zone of the trading session (e.g. America/New_York).';
COMMENT ON COLUMN market.instruments.session_open IS 'Regular session open in session_tz; NULL means the instrument trades around the clock.';
COMMENT ON COLUMN market.instruments.trades_weekends IS 'True for instruments that trade on Saturdays and Sundays (crypto).';

-- No row-level foreign keys or CHECK constraints on market.bars: at bulk-load rates they cost more than the insert
-- itself (measured on 200,000 rows: the two foreign keys 1.45 s of a 2.27 s insert; the CHECKs 0.4 s of 0.74 s),
-- and they would repeat the rules of market.bar_problem(). The ingest path validates every bar with it; a
-- statement-level trigger (db/triggers/market_bars_validate.sql) applies the same rules and the reference checks
-- to any other write; an instrument that still has bars cannot be deleted (trigger below).
CREATE TABLE market.bars (
  symbol      text        NOT NULL,
  interval    text        NOT NULL,
  ts          timestamptz NOT NULL,
  open        numeric     NOT NULL,
  high        numeric     NOT NULL,
  low         numeric     NOT NULL,
  close       numeric     NOT NULL,
  volume      numeric     NOT NULL DEFAULT 0,
  source      text        NOT NULL,
  ingested_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (symbol, interval, ts)
);
COMMENT ON TABLE market.bars IS 'OHLCV bars, ts = bar open (UTC). A TimescaleDB hypertable in 30-day chunks, compressed by symbol and interval.';

-- 30-day chunks: the table holds minute and daily bars together. A month of 1-minute bars for 500 US stocks is
-- ~4M rows (a few hundred MB with the index), far under the 25%-of-memory guide, and 20 years of daily bars stay
-- ~240 chunks instead of ~1,000 with weekly chunks. Compressed segments (symbol, interval) then hold up to
-- 43,200 minute bars, enough for full 1,000-row compressed batches.
SELECT create_hypertable('market.bars', 'ts', chunk_time_interval => interval '30 days');
ALTER TABLE market.bars SET (
  timescaledb.compress,
  timescaledb.compress_segmentby = 'symbol, interval',
  timescaledb.compress_orderby = 'ts'
);
-- Chunks older than 60 days are compressed; live trading and the continuous aggregates work on fresher chunks.
SELECT add_compression_policy('market.bars', compress_after => interval '60 days');

-- The row type of range reads (market.bars_between, market.resample).
CREATE TYPE market.ohlcv AS (
  symbol text, "interval" text, ts timestamptz, open numeric, high numeric, low numeric, close numeric, volume numeric);

CREATE FUNCTION market.tg_instruments__refuse_delete_with_bars() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM market.bars b WHERE b.symbol = OLD.symbol) THEN
    RAISE EXCEPTION 'instrument % still has bars', OLD.symbol
      USING ERRCODE = '23503', HINT = 'delete its bars first, or set the instrument inactive';
  END IF;
  RETURN OLD;
END
$$;
CREATE TRIGGER _100_refuse_delete_with_bars BEFORE DELETE ON market.instruments
  FOR EACH ROW EXECUTE FUNCTION market.tg_instruments__refuse_delete_with_bars();

CREATE TABLE market.rejected_bars (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  rejected_at timestamptz NOT NULL DEFAULT now(),
  source      text NOT NULL,
  reason      text NOT NULL,
  symbol      text,
  interval    text,
  ts          timestamptz,
  open        numeric,
  high        numeric,
  low         numeric,
  close       numeric,
  volume      numeric,
  raw         text
);
COMMENT ON TABLE market.rejected_bars IS 'Every bar the ingest path refused, with the reason; nothing is dropped silently.';
COMMENT ON COLUMN market.rejected_bars.raw IS 'The input as received when it could not be parsed into typed columns.';
CREATE INDEX rejected_bars_rejected_at ON market.rejected_bars (rejected_at);
CREATE INDEX rejected_bars_symbol ON market.rejected_bars (symbol, interval, ts);

CREATE TABLE market.retention (
  interval text PRIMARY KEY REFERENCES market.intervals (code),
  keep     interval CONSTRAINT retention_keep_positive CHECK (keep IS NULL OR keep > interval '0')
);
COMMENT ON TABLE market.retention IS 'How long raw bars of each interval are kept; NULL keeps them forever (the default for every interval).';
INSERT INTO market.retention (interval, keep) SELECT code, NULL FROM market.intervals;
