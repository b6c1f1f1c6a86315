-- The trading-session calendar, in one place: gap detection and (later) day-order expiry both use it.
-- Rules per instrument: weekends (in session_tz) are closed unless trades_weekends; intraday bars fall inside
-- [session_open, session_close) when a session is set; fx trades from Sunday 17:00 to Friday 17:00 New York time.
-- Exchange holidays are not modelled (no holiday calendar ships with pgtrade): a holiday shows as a gap.
CREATE OR REPLACE FUNCTION market.is_trading_time(symbol text, ts timestamptz, step interval DEFAULT interval '1 minute')
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT CASE
    WHEN i.symbol IS NULL THEN NULL
    WHEN i.trades_weekends THEN true
    WHEN i.asset_class = 'fx' AND is_trading_time.step < interval '1 day' THEN
      -- the fx week: Sunday 17:00 to Friday 17:00 America/New_York
      CASE extract(isodow FROM (is_trading_time.ts AT TIME ZONE 'America/New_York'))
        WHEN 6 THEN false
        WHEN 7 THEN (is_trading_time.ts AT TIME ZONE 'America/New_York')::time >= time '17:00'
        WHEN 5 THEN (is_trading_time.ts AT TIME ZONE 'America/New_York')::time < time '17:00'
        ELSE true
      END
    WHEN is_trading_time.step >= interval '1 day' THEN
      -- daily bars are stamped with their UTC calendar date
      extract(isodow FROM (is_trading_time.ts AT TIME ZONE 'UTC')) < 6
    ELSE
      extract(isodow FROM (is_trading_time.ts AT TIME ZONE i.session_tz)) < 6
      AND (i.session_open IS NULL
           OR ((is_trading_time.ts AT TIME ZONE i.session_tz)::time >= i.session_open
               AND (is_trading_time.ts AT TIME ZONE i.session_tz)::time < i.session_close))
  END
  FROM (SELECT is_trading_time.symbol AS wanted) w
  LEFT JOIN market.instruments i ON i.symbol = w.wanted
$$;
COMMENT ON FUNCTION market.is_trading_time IS
  'Whether a bar of this step starting at ts falls in the instrument''s trading session (weekends, session hours, the fx week); NULL for an unknown symbol. Holidays are not modelled.';

CREATE OR REPLACE FUNCTION market.interval_step(interval_code text)
RETURNS interval
LANGUAGE plpgsql STABLE
AS $$
DECLARE
  _step interval;
BEGIN
  SELECT iv.step INTO _step FROM market.intervals iv WHERE iv.code = interval_step.interval_code;
  IF _step IS NULL THEN
    RAISE EXCEPTION 'unknown interval %', coalesce(quote_literal(interval_step.interval_code), 'NULL')
      USING ERRCODE = '22023',
            HINT = 'use one of: ' || (SELECT string_agg(code, ', ' ORDER BY step) FROM market.intervals);
  END IF;
  RETURN _step;
END
$$;
COMMENT ON FUNCTION market.interval_step IS 'The step of an interval code (1m -> 1 minute); SQLSTATE 22023 for an unknown code.';

-- When a day order placed at `at` expires: the end of the first session that ends after `at` (same weekday rules
-- as market.is_trading_time; instruments without session hours end their day at midnight in session_tz; the fx
-- day ends 17:00 America/New_York). Holidays are not modelled.
CREATE OR REPLACE FUNCTION market.session_end(symbol text, at timestamptz)
RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT min(e.ends)
  FROM market.instruments i
  CROSS JOIN LATERAL (SELECT CASE WHEN i.asset_class = 'fx' AND NOT i.trades_weekends
                                  THEN 'America/New_York' ELSE i.session_tz END AS tz) z
  CROSS JOIN LATERAL generate_series(((session_end.at AT TIME ZONE z.tz)::date - 1)::timestamp,
                                     ((session_end.at AT TIME ZONE z.tz)::date + 8)::timestamp, interval '1 day') g(d)
  CROSS JOIN LATERAL (SELECT CASE
                        WHEN i.asset_class = 'fx' AND NOT i.trades_weekends THEN (g.d + time '17:00') AT TIME ZONE z.tz
                        WHEN i.session_close IS NOT NULL THEN (g.d + i.session_close) AT TIME ZONE z.tz
                        ELSE (g.d + interval '1 day') AT TIME ZONE z.tz
                      END AS ends) e
  WHERE i.symbol = session_end.symbol
    AND (i.trades_weekends OR extract(isodow FROM g.d) < 6)
    AND e.ends > session_end.at
$$;
COMMENT ON FUNCTION market.session_end IS
  'End of the first trading session of the instrument ending after `at` (day-order expiry); NULL for an unknown symbol. Holidays are not modelled.';
