-- The one definition of "last price": the close of the latest bar of the symbol, of any interval, whose close
-- time (ts + step) is at or before `at`. Ties between intervals go to the shorter one.
CREATE OR REPLACE FUNCTION market.price_at(symbol text, at timestamptz, OUT price numeric, OUT as_of timestamptz)
RETURNS record
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT b.close, b.ts + iv.step
  FROM market.intervals iv
  CROSS JOIN LATERAL (
    SELECT x.ts, x.close
    FROM market.bars x
    WHERE x.symbol = price_at.symbol AND x.interval = iv.code AND x.ts <= price_at.at - iv.step
    ORDER BY x.ts DESC
    LIMIT 1) b
  ORDER BY b.ts + iv.step DESC, iv.step
  LIMIT 1
$$;
COMMENT ON FUNCTION market.price_at IS
  'Last price of a symbol at a time: close of the latest bar (any interval) that had closed by then, and that close time (as_of). NULLs when there is none.';
