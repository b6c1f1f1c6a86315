-- The bar validation rules, in one place: NULL when a bar is valid, else the reason it is rejected.
-- market.ingest_staged() applies it to every incoming bar (symbols are checked there, against
-- market.instruments and market.is_valid_symbol); tests call it directly.
-- The first branch is the whole rule set as one conjunction, so a valid bar costs a handful of comparisons
-- (numeric NaN sorts above Infinity, so "high < Infinity" with high >= every other price excludes NaN and
-- infinities everywhere); the detailed branch only runs for bars that fail it, to name the reason.
CREATE OR REPLACE FUNCTION market.bar_problem(
  step interval, ts timestamptz,
  open numeric, high numeric, low numeric, close numeric, volume numeric)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT CASE
    WHEN bar_problem.low > 0
     AND bar_problem.high < 'Infinity'
     AND bar_problem.high >= greatest(bar_problem.open, bar_problem.close)
     AND bar_problem.low <= least(bar_problem.open, bar_problem.close)
     AND bar_problem.volume >= 0 AND bar_problem.volume < 'Infinity'
     AND date_bin(market.alignment_grid(bar_problem.step), bar_problem.ts, timestamptz '2000-01-03 00:00:00+00')
         = bar_problem.ts
      THEN NULL
    WHEN bar_problem.step IS NULL THEN 'unknown interval'
    WHEN bar_problem.ts IS NULL THEN 'missing timestamp'
    WHEN num_nulls(bar_problem.open, bar_problem.high, bar_problem.low, bar_problem.close) > 0
      THEN 'missing price'
    WHEN 'NaN' IN (bar_problem.open, bar_problem.high, bar_problem.low, bar_problem.close)
      THEN 'price is NaN'
    WHEN greatest(bar_problem.open, bar_problem.high, bar_problem.low, bar_problem.close) = 'Infinity'
      OR least(bar_problem.open, bar_problem.high, bar_problem.low, bar_problem.close) = '-Infinity'
      THEN 'price is infinite'
    WHEN least(bar_problem.open, bar_problem.high, bar_problem.low, bar_problem.close) <= 0
      THEN 'price is zero or negative'
    WHEN bar_problem.high < greatest(bar_problem.open, bar_problem.close, bar_problem.low)
      THEN 'high is below open, close or low'
    WHEN bar_problem.low > least(bar_problem.open, bar_problem.close)
      THEN 'low is above open or close'
    WHEN bar_problem.volume IS NULL THEN 'missing volume'
    WHEN bar_problem.volume = 'NaN' OR abs(bar_problem.volume) = 'Infinity' THEN 'volume is not finite'
    WHEN bar_problem.volume < 0 THEN 'volume is negative'
    ELSE 'timestamp is not aligned to the interval (UTC)'
  END
$$;

-- The grid a bar's open must sit on: its own step, except that bars longer than 30 minutes and shorter than a
-- day may also open on the half hour (US equity sessions open at 09:30, and vendors stamp hourly bars 09:30,
-- 10:30, ...). Daily bars are stamped at 00:00 UTC of their date.
CREATE OR REPLACE FUNCTION market.alignment_grid(step interval)
RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT CASE WHEN alignment_grid.step > interval '30 minutes' AND alignment_grid.step < interval '1 day'
              THEN interval '30 minutes' ELSE alignment_grid.step END
$$;
COMMENT ON FUNCTION market.bar_problem IS
  'Why a bar is invalid (NULL when valid): finite positive prices, high >= max(open, close, low), low <= min(open, close), finite volume >= 0, ts aligned to the interval grid (market.alignment_grid).';
