-- Gap detection: expected bars by the instrument's session calendar (market.is_trading_time) that are not stored.

CREATE OR REPLACE FUNCTION market.missing_bars(
  symbol text, bar_interval text, from_ts timestamptz, to_ts timestamptz)
RETURNS TABLE (ts timestamptz)
LANGUAGE sql STABLE
AS $$
  WITH step AS (SELECT market.interval_step(missing_bars.bar_interval) AS s),
  expected AS (
    SELECT g AS ts
    FROM step,
         generate_series(date_bin(step.s, missing_bars.from_ts, timestamptz '2000-01-03')
                           + CASE WHEN date_bin(step.s, missing_bars.from_ts, timestamptz '2000-01-03')
                                       < missing_bars.from_ts THEN step.s ELSE interval '0' END,
                         missing_bars.to_ts - interval '1 microsecond', step.s) AS g
    WHERE market.is_trading_time(missing_bars.symbol, g, step.s)
  )
  SELECT e.ts FROM expected e
  WHERE NOT EXISTS (SELECT 1 FROM market.bars b
                    WHERE b.symbol = missing_bars.symbol AND b.interval = missing_bars.bar_interval AND b.ts = e.ts)
  ORDER BY e.ts
$$;
COMMENT ON FUNCTION market.missing_bars IS
  'Bar timestamps expected in [from_ts, to_ts) by the instrument''s session calendar (market.is_trading_time) but absent from market.bars. Holidays show up as gaps.';
