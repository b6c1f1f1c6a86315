-- What market data the database holds (`pgtrade summary`).

CREATE OR REPLACE FUNCTION market.data_summary()
RETURNS TABLE (symbol text, "interval" text, bars bigint, first_ts timestamptz, last_ts timestamptz,
               last_close numeric)
LANGUAGE sql STABLE
AS $$
  SELECT b.symbol, b.interval, count(*), min(b.ts), max(b.ts), last(b.close, b.ts)
  FROM market.bars b
  GROUP BY b.symbol, b.interval
  ORDER BY b.symbol, b.interval
$$;
COMMENT ON FUNCTION market.data_summary IS 'Bars held per symbol and interval, with their range and last close.';
