-- The bar validation rules, in one place: NULL when a bar is valid, else the reason it is rejected.
-- market.ingest_staged() applies it to every incoming bar; tests call it directly.
CREATE OR REPLACE FUNCTION market.bar_problem(
  symbol text, step interval, ts timestamptz,
  open numeric, high numeric, low numeric, close numeric, volume numeric)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT CASE
    WHEN NOT coalesce(market.is_valid_symbol(bar_problem.symbol), false)
      THEN 'invalid symbol (1-32 characters of A-Z 0-9 . _ / = ^ -)'
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
    WHEN date_bin(bar_problem.step, bar_problem.ts, timestamptz '2000-01-03 00:00:00+00') <> bar_problem.ts
      THEN 'timestamp is not aligned to the interval (UTC)'
  END
$$;
COMMENT ON FUNCTION market.bar_problem IS
  'Why a bar is invalid (NULL when valid): finite positive prices, high >= max(open, close, low), low <= min(open, close), finite volume >= 0, ts aligned to the interval.';

-- A bar stamped later than the present (plus one step) means a wrong timezone or clock; checked separately
-- because it depends on now().
CREATE OR REPLACE FUNCTION market.bar_in_future(ts timestamptz, step interval)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT bar_in_future.ts > now() + bar_in_future.step $$;
