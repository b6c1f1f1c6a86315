-- Marking positions to market: the marking rule (internal.mark_latest) and its form for a set of bars.

-- The marking rule, in one place: open positions (of live accounts, or of one account) in these symbols take the
-- close of that symbol's latest bar, never moving backwards in time.
CREATE OR REPLACE FUNCTION internal.mark_latest(symbols text[], closes numeric[], close_ats timestamptz[],
                                                account_id bigint DEFAULT NULL)
RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  WITH upd AS (
    UPDATE trading.positions p
       SET last_price = l.close, last_price_at = l.close_at
      FROM unnest(mark_latest.symbols, mark_latest.closes, mark_latest.close_ats) l(symbol, close, close_at),
           trading.accounts a
     WHERE p.symbol = l.symbol AND a.id = p.account_id AND p.qty <> 0
       AND CASE WHEN mark_latest.account_id IS NULL THEN a.kind = 'live' ELSE a.id = mark_latest.account_id END
       AND (p.last_price_at IS NULL OR p.last_price_at <= l.close_at)
    RETURNING 1
  )
  SELECT count(*)::int FROM upd
$$;
COMMENT ON FUNCTION internal.mark_latest IS
  'Internal: mark open positions (of live accounts, or of one account) in the given symbols to the given close and close time (the latest bar of each symbol), never backwards.';

-- Mark positions to the latest of these bars (by close time), never backwards.
CREATE OR REPLACE FUNCTION internal.mark_positions(bars market.ohlcv[], account_id bigint DEFAULT NULL)
RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT internal.mark_latest(array_agg(l.symbol), array_agg(l.close), array_agg(l.close_at), mark_positions.account_id)
  FROM (
    SELECT DISTINCT ON (x.symbol) x.symbol, x.close, x.ts + iv.step AS close_at
    FROM unnest(mark_positions.bars) x JOIN market.intervals iv ON iv.code = x.interval
    ORDER BY x.symbol, x.ts + iv.step DESC, iv.step
  ) l
$$;
COMMENT ON FUNCTION internal.mark_positions IS
  'Internal: mark open positions (of live accounts, or of one account) to the close of the latest of the given bars per symbol.';

REVOKE ALL ON FUNCTION internal.mark_latest(text[], numeric[], timestamptz[], bigint),
  internal.mark_positions(market.ohlcv[], bigint) FROM PUBLIC;
