-- New or corrected bars act on live accounts: fire their resting orders of the symbol, then mark their
-- positions to market. Statement-level with transition tables, so a bulk load runs this once per statement.
-- Only bars at or after the latest bar already seen for their symbol and interval act (trading.live_watermarks):
-- backfills and corrections of history fire nothing. Note: an upsert that lands in a compressed chunk does not
-- fire the UPDATE trigger (TimescaleDB); that only concerns corrections of old bars, which act on nothing anyway.
-- One pass over the new bars computes what every step needs: the watermarks, each symbol's low/high (are any
-- resting orders in reach?) and its latest bar (the mark). The bars array for internal.match_orders is built only for
-- symbols where some live resting order is in reach of the bars (internal.may_act, the same candidate rule
-- match_orders applies), so a batch that crosses no order costs one scan and a few aggregates.
CREATE OR REPLACE FUNCTION trading.tg_bars__fire_live_orders()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _bars market.ohlcv[];
  _syms text[];
  _closes numeric[];
  _close_ats timestamptz[];
BEGIN
  WITH traded AS MATERIALIZED (
    -- the statement's symbols that live accounts have resting orders in or hold: index probes per symbol, not a
    -- scan of every open order and position (one bar of one symbol is the live feed's common case)
    SELECT s.symbol FROM (SELECT DISTINCT n.symbol FROM new_bars n) s
    WHERE EXISTS (SELECT FROM trading.orders o JOIN trading.accounts a ON a.id = o.account_id
                  WHERE o.symbol = s.symbol AND o.status IN ('accepted', 'partially_filled') AND o.type <> 'market'
                    AND a.kind = 'live')
       OR EXISTS (SELECT FROM trading.positions p JOIN trading.accounts a ON a.id = p.account_id
                  WHERE p.symbol = s.symbol AND p.qty <> 0 AND a.kind = 'live')
  ), nb AS MATERIALIZED (
    -- their bars at or after the watermark (as it was before this statement)
    SELECT n.symbol, n.interval, n.ts, n.open, n.high, n.low, n.close, n.volume, n.ts + iv.step AS close_at, iv.step
    FROM new_bars n
    JOIN traded t ON t.symbol = n.symbol
    JOIN market.intervals iv ON iv.code = n.interval
    LEFT JOIN trading.live_watermarks w ON w.symbol = n.symbol AND w.interval = n.interval
    WHERE n.ts >= coalesce(w.ts, '-infinity')
  ), wm AS (
    INSERT INTO trading.live_watermarks AS w (symbol, interval, ts)
    SELECT nb.symbol, nb.interval, max(nb.ts) FROM nb GROUP BY nb.symbol, nb.interval
    ON CONFLICT (symbol, interval) DO UPDATE SET ts = greatest(w.ts, excluded.ts)
  ), per_symbol AS (
    SELECT nb.symbol, min(nb.low) AS lo, max(nb.high) AS hi, max(nb.close_at) AS close_at FROM nb GROUP BY nb.symbol
  ), in_reach AS (
    SELECT s.symbol FROM per_symbol s
    WHERE EXISTS (SELECT FROM trading.orders o JOIN trading.accounts a ON a.id = o.account_id
                  WHERE o.symbol = s.symbol AND o.status IN ('accepted', 'partially_filled') AND o.type <> 'market'
                    AND a.kind = 'live'
                    AND internal.may_act(o.type, o.side, o.triggered, o.limit_price, o.stop_price, s.lo, s.hi))
  ), latest AS (
    -- the latest bar of each symbol by close time, the shorter interval on a tie (as internal.mark_positions)
    SELECT DISTINCT ON (nb.symbol) nb.symbol, nb.close, nb.close_at
    FROM nb JOIN per_symbol s ON s.symbol = nb.symbol AND s.close_at = nb.close_at
    ORDER BY nb.symbol, nb.step
  )
  SELECT (SELECT array_agg(ROW(nb.symbol, nb.interval, nb.ts, nb.open, nb.high, nb.low, nb.close, nb.volume)::market.ohlcv)
          FROM nb WHERE nb.symbol IN (SELECT r.symbol FROM in_reach r)),
         l.syms, l.closes, l.close_ats
    INTO _bars, _syms, _closes, _close_ats
  FROM (SELECT array_agg(latest.symbol) AS syms, array_agg(latest.close) AS closes,
               array_agg(latest.close_at) AS close_ats FROM latest) l;
  IF _syms IS NULL THEN
    RETURN NULL;
  END IF;
  IF _bars IS NOT NULL THEN
    PERFORM internal.match_orders(_bars, NULL);
  END IF;
  PERFORM internal.mark_latest(_syms, _closes, _close_ats, NULL);
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION trading.tg_bars__fire_live_orders IS
  'Statement trigger on market.bars: match live accounts'' resting orders against the new bars and mark their positions to market.';

CREATE OR REPLACE TRIGGER _100_trading_live_on_insert
  AFTER INSERT ON market.bars REFERENCING NEW TABLE AS new_bars
  FOR EACH STATEMENT EXECUTE FUNCTION trading.tg_bars__fire_live_orders();
CREATE OR REPLACE TRIGGER _100_trading_live_on_update
  AFTER UPDATE ON market.bars REFERENCING NEW TABLE AS new_bars
  FOR EACH STATEMENT EXECUTE FUNCTION trading.tg_bars__fire_live_orders();
