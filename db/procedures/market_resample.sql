-- Resampling: OHLCV bars of a finer stored interval rolled up to a coarser one with time_bucket, for intervals the
-- continuous aggregates do not keep (market.rollup_between falls back to it).

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
