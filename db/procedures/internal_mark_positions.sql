-- Marking positions to market: the marking rule (internal.mark_latest) and its form for a set of bars.

-- The marking rule, in one place: open positions (of live accounts, or of one account) in these symbols take the
-- close of that symbol's latest bar, never moving backwards in time.
CREATE OR REPLACE FUNCTION internal.mark_latest(symbols text[], closes numeric[], close_ats timestamptz[],
                                                account_id bigint DEFAULT NULL)
RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  -- Live accounts (account_id NULL: the bar trigger): a position row is marked only under its account's lock,
  -- as every other writer of positions holds it (place_order, cancel_order, match_orders: account first, then its
  -- rows). Marking rows without it let an upsert's INSERT trigger hold them while its UPDATE trigger (same
  -- transaction) waited in match_orders for an account whose order, placed meanwhile, waited for one of those
  -- rows: a deadlock (40P01), found with 100 API clients and the live feed (tests/test_load.py). An account
  -- locked by another transaction right now (an order being placed) is skipped, not waited for: its positions
  -- keep their mark until the next bar of the symbol (waiting made the feed queue behind every busy account and
  -- every request behind the feed). The caller with an account_id holds that account's lock already. NO KEY
  -- UPDATE, the account lock of every writer (trading.place_order says why not FOR UPDATE).
  WITH live AS MATERIALIZED (
    SELECT a.id FROM trading.accounts a
    WHERE mark_latest.account_id IS NULL AND a.kind = 'live'
      AND EXISTS (SELECT FROM trading.positions p
                  WHERE p.account_id = a.id AND p.symbol = ANY (mark_latest.symbols) AND p.qty <> 0)
    ORDER BY a.id
    FOR NO KEY UPDATE SKIP LOCKED
  ), upd AS (
    UPDATE trading.positions p
       SET last_price = l.close, last_price_at = l.close_at
      FROM unnest(mark_latest.symbols, mark_latest.closes, mark_latest.close_ats) l(symbol, close, close_at)
     WHERE p.symbol = l.symbol AND p.qty <> 0
       AND CASE WHEN mark_latest.account_id IS NULL THEN p.account_id IN (SELECT live.id FROM live)
                ELSE p.account_id = mark_latest.account_id END
       AND (p.last_price_at IS NULL OR p.last_price_at <= l.close_at)
    RETURNING 1
  )
  SELECT count(*)::int FROM upd
$$;
COMMENT ON FUNCTION internal.mark_latest IS
  'Internal: mark open positions (of live accounts, or of one account) in the given symbols to the given close and close time (the latest bar of each symbol), never backwards. Live accounts are marked under their account lock (taken in id order); one locked by another transaction at the moment is skipped until the next bar.';

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
