-- Every status change of an order (and every change of its filled quantity) is kept in trading.order_history.
CREATE OR REPLACE FUNCTION trading.tg_orders__record_history()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp  -- its own path: cached plans survive callers with different paths
AS $$
BEGIN
  INSERT INTO trading.order_history (order_id, ts, status, filled_qty, reason)
  VALUES (NEW.id, NEW.updated_at, NEW.status, NEW.filled_qty, coalesce(NEW.reject_reason, NEW.status_reason));
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION trading.tg_orders__record_history IS 'Row trigger on trading.orders: append the new status to trading.order_history.';

CREATE OR REPLACE TRIGGER _100_record_history_on_insert
  AFTER INSERT ON trading.orders
  FOR EACH ROW EXECUTE FUNCTION trading.tg_orders__record_history();
CREATE OR REPLACE TRIGGER _100_record_history_on_update
  AFTER UPDATE ON trading.orders
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.filled_qty IS DISTINCT FROM NEW.filled_qty)
  EXECUTE FUNCTION trading.tg_orders__record_history();
