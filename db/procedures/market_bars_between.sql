-- Range reads. Half-open ranges [from, to). Bars stored at the asked interval win; otherwise 5m, 1h and 1d come
-- from the continuous aggregates and any other coarser interval is resampled from 1-minute bars
-- (market.resample, db/procedures/market_resample.sql).

-- The three continuous aggregates as one relation, labelled with their interval. A reader that filters on
-- "interval" only touches the matching aggregate (the others become one-time filters that skip them).
CREATE OR REPLACE VIEW market.bar_rollups AS
  SELECT r.symbol, '5m'::text AS "interval", r.ts, r.open, r.high, r.low, r.close, r.volume, r.bars
  FROM market.bars_5m r
  UNION ALL
  SELECT r.symbol, '1h'::text, r.ts, r.open, r.high, r.low, r.close, r.volume, r.bars FROM market.bars_1h r
  UNION ALL
  SELECT r.symbol, '1d'::text, r.ts, r.open, r.high, r.low, r.close, r.volume, r.bars FROM market.bars_1d r;
COMMENT ON VIEW market.bar_rollups IS
  'market.bars_5m, bars_1h and bars_1d (continuous aggregates of 1-minute bars, real-time) with their interval code; bars = 1-minute bars behind each row.';

-- Coarser bars when none are stored at the asked interval: the continuous aggregates for 5m/1h/1d, else resampled.
CREATE OR REPLACE FUNCTION market.rollup_between(
  symbol text, bar_interval text, from_ts timestamptz, to_ts timestamptz)
RETURNS SETOF market.ohlcv
LANGUAGE plpgsql STABLE
AS $$
BEGIN
  PERFORM market.interval_step(rollup_between.bar_interval);  -- SQLSTATE 22023 for an unknown interval
  IF rollup_between.bar_interval IN ('5m', '1h', '1d') THEN
    RETURN QUERY
      SELECT r.symbol, r.interval, r.ts, r.open, r.high, r.low, r.close, r.volume FROM market.bar_rollups r
      WHERE r.interval = rollup_between.bar_interval AND r.symbol = rollup_between.symbol
        AND r.ts >= rollup_between.from_ts AND r.ts < rollup_between.to_ts
      ORDER BY r.ts;
  ELSIF rollup_between.bar_interval <> '1m' THEN
    RETURN QUERY SELECT * FROM market.resample(rollup_between.symbol, rollup_between.bar_interval,
                                               rollup_between.from_ts, rollup_between.to_ts);
  END IF;
END
$$;
COMMENT ON FUNCTION market.rollup_between IS
  'Bars over [from_ts, to_ts) rolled up from 1-minute bars: the continuous aggregates for 5m/1h/1d (market.bar_rollups), market.resample for other intervals.';

-- A plain SQL function so the planner inlines it: the stored-bars branch then plans like a direct query on the
-- hypertable (chunk exclusion, ordered append, no tuplestore), which is the hot path. An unknown interval has no
-- stored bars, so it reaches market.rollup_between, which raises.
CREATE OR REPLACE FUNCTION market.bars_between(
  symbol text, bar_interval text, from_ts timestamptz, to_ts timestamptz)
RETURNS SETOF market.ohlcv
LANGUAGE sql STABLE
AS $$
  (SELECT b.symbol, b.interval, b.ts, b.open, b.high, b.low, b.close, b.volume
   FROM market.bars b
   WHERE b.symbol = bars_between.symbol AND b.interval = bars_between.bar_interval
     AND b.ts >= bars_between.from_ts AND b.ts < bars_between.to_ts
   ORDER BY b.ts)
  UNION ALL
  (SELECT r.* FROM market.rollup_between(bars_between.symbol, bars_between.bar_interval,
                                         bars_between.from_ts, bars_between.to_ts) r
   WHERE NOT EXISTS (SELECT 1 FROM market.bars b
                     WHERE b.symbol = bars_between.symbol AND b.interval = bars_between.bar_interval
                       AND b.ts >= bars_between.from_ts AND b.ts < bars_between.to_ts))
$$;
COMMENT ON FUNCTION market.bars_between IS
  'Bars of one symbol and interval over [from_ts, to_ts), oldest first: stored bars of that interval when there are any in the range, else rolled up from 1-minute bars (continuous aggregates for 5m/1h/1d). SQLSTATE 22023 for an unknown interval.';
