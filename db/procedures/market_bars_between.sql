-- Range reads. Half-open ranges [from, to). Bars stored at the asked interval win; otherwise 5m, 1h and 1d come
-- from the continuous aggregates and any other coarser interval is resampled from 1-minute bars.

CREATE OR REPLACE FUNCTION market.resample(
  symbol text, target_interval text, from_ts timestamptz, to_ts timestamptz, source_interval text DEFAULT '1m')
RETURNS SETOF market.ohlcv
LANGUAGE plpgsql STABLE
AS $$
DECLARE
  _step interval := market.interval_step(resample.target_interval);
  _source_step interval := market.interval_step(resample.source_interval);
BEGIN
  IF _step < _source_step OR date_bin(_step, timestamptz '2000-01-03', timestamptz '2000-01-03') IS NULL
     OR extract(epoch FROM _step)::numeric % extract(epoch FROM _source_step)::numeric <> 0 THEN
    RAISE EXCEPTION 'cannot resample % bars to %', resample.source_interval, resample.target_interval
      USING ERRCODE = '22023', HINT = 'the target interval must be a whole multiple of the source interval';
  END IF;
  RETURN QUERY
    SELECT b.symbol, resample.target_interval, time_bucket(_step, b.ts) AS bucket,
           first(b.open, b.ts), max(b.high), min(b.low), last(b.close, b.ts), sum(b.volume)
    FROM market.bars b
    WHERE b.symbol = resample.symbol AND b.interval = resample.source_interval
      AND b.ts >= time_bucket(_step, resample.from_ts) AND b.ts < resample.to_ts
    GROUP BY b.symbol, bucket
    HAVING time_bucket(_step, b.ts) >= time_bucket(_step, resample.from_ts)
    ORDER BY bucket;
END
$$;
COMMENT ON FUNCTION market.resample IS
  'OHLCV bars of symbol resampled from source_interval (default 1m) to target_interval with time_bucket, over [from_ts, to_ts).';

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

CREATE OR REPLACE FUNCTION market.apply_retention()
RETURNS TABLE (bar_interval text, deleted bigint)
LANGUAGE plpgsql
AS $$
DECLARE
  _r record;
  _n bigint;
BEGIN
  FOR _r IN SELECT r.interval, r.keep FROM market.retention r WHERE r.keep IS NOT NULL ORDER BY r.interval LOOP
    DELETE FROM market.bars b WHERE b.interval = _r.interval AND b.ts < now() - _r.keep;
    GET DIAGNOSTICS _n = ROW_COUNT;
    bar_interval := _r.interval;
    deleted := _n;
    RETURN NEXT;
  END LOOP;
END
$$;
COMMENT ON FUNCTION market.apply_retention IS
  'Delete raw bars older than market.retention.keep for each interval that has one (none by default). Run daily by pg_cron.';

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
