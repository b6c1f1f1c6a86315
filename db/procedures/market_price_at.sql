-- The one definition of "last price": the close of the latest bar of the symbol, of any interval, whose close
-- time (ts + step) is at or before `at`. Ties between intervals go to the shorter one. `not_before` bounds the
-- search (a price that closed earlier is not wanted).
-- Dynamic SQL with the times as literals, on purpose: TimescaleDB then excludes chunks while planning, so a
-- lookup plans and runs over one or two chunks (~0.3 ms). A cached generic plan would have to start up and
-- exclude every chunk of the hypertable at run time (3-15 ms on the bundled decades of history).
DROP FUNCTION IF EXISTS market.price_at(text, timestamptz);  -- the first, unbounded signature
CREATE OR REPLACE FUNCTION market.price_at(
  symbol text, at timestamptz, not_before timestamptz DEFAULT '-infinity', OUT price numeric, OUT as_of timestamptz)
RETURNS record
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
BEGIN
  EXECUTE format($q$
    SELECT b.close, b.ts + iv.step
    FROM market.intervals iv
    CROSS JOIN LATERAL (
      SELECT x.ts, x.close
      FROM market.bars x
      WHERE x.symbol = %1$L AND x.interval = iv.code
        AND x.ts <= %2$L::timestamptz - iv.step AND x.ts <= %2$L::timestamptz
        AND x.ts >= %3$L::timestamptz - iv.step AND x.ts >= %4$L::timestamptz
      ORDER BY x.ts DESC
      LIMIT 1) b
    ORDER BY b.ts + iv.step DESC, iv.step
    LIMIT 1 $q$,
    price_at.symbol, price_at.at, price_at.not_before, price_at.not_before - interval '1 day')
  INTO price_at.price, price_at.as_of;
END
$$;
COMMENT ON FUNCTION market.price_at IS
  'Last price of a symbol at a time: close of the latest bar (any interval) that had closed by then, and that close time (as_of). NULLs when there is none (or none closing at or after not_before).';

-- The opening price of a bar: the open of the symbol's bar of this interval that opens exactly at `at` (NULL when
-- none does). What a market-on-open order trades at (trading.accounts.market_fill = 'open'). Dynamic SQL with the
-- time as a literal for the same reason as price_at: chunk exclusion at planning time.
CREATE OR REPLACE FUNCTION market.open_at(symbol text, "interval" text, at timestamptz)
RETURNS numeric
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
  _open numeric;
BEGIN
  EXECUTE format('SELECT b.open FROM market.bars b WHERE b.symbol = %L AND b.interval = %L AND b.ts = %L::timestamptz',
                 open_at.symbol, open_at."interval", open_at.at)
    INTO _open;
  RETURN _open;
END
$$;
COMMENT ON FUNCTION market.open_at IS
  'Open of the symbol''s bar of this interval that opens at `at` (the price of a market-on-open order); NULL when no such bar.';
