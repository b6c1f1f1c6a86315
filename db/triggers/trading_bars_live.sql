-- New or corrected bars act on live accounts: fire their resting orders of the symbol, then mark their
-- positions to market. Statement-level with transition tables, so a bulk load runs this once per statement.
-- Only bars at or after the latest bar already seen for their symbol and interval act (trading.live_watermarks):
-- backfills and corrections of history fire nothing. Note: an upsert that lands in a compressed chunk does not
-- fire the UPDATE trigger (TimescaleDB); that only concerns corrections of old bars, which act on nothing anyway.
CREATE OR REPLACE FUNCTION trading.tg_bars__fire_live_orders()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _bars market.ohlcv[];
BEGIN
  SELECT array_agg(ROW(n.symbol, n.interval, n.ts, n.open, n.high, n.low, n.close, n.volume)::market.ohlcv)
    INTO _bars
  FROM new_bars n
  LEFT JOIN trading.live_watermarks w ON w.symbol = n.symbol AND w.interval = n.interval
  WHERE n.ts >= coalesce(w.ts, '-infinity')
    AND n.symbol IN (SELECT o.symbol FROM trading.orders o JOIN trading.accounts a ON a.id = o.account_id
                     WHERE o.status IN ('accepted', 'partially_filled') AND a.kind = 'live'
                     UNION
                     SELECT p.symbol FROM trading.positions p JOIN trading.accounts a ON a.id = p.account_id
                     WHERE p.qty <> 0 AND a.kind = 'live');
  IF _bars IS NULL THEN
    RETURN NULL;
  END IF;
  INSERT INTO trading.live_watermarks AS w (symbol, interval, ts)
  SELECT x.symbol, x.interval, max(x.ts) FROM unnest(_bars) x GROUP BY x.symbol, x.interval
  ON CONFLICT (symbol, interval) DO UPDATE SET ts = greatest(w.ts, excluded.ts);
  PERFORM trading.match_orders(_bars, NULL);
  PERFORM trading.mark_positions(_bars, NULL);
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
