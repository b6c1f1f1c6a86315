-- Close an open order as cancelled or expired (no lock on the account needed: no cash moves).
CREATE OR REPLACE FUNCTION internal.end_order(order_id bigint, status text, reason text)
RETURNS trading.orders
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp  -- its own path: cached plans survive callers with different paths
AS $$
DECLARE
  _o trading.orders;
  _now timestamptz;
BEGIN
  SELECT * INTO _o FROM trading.orders o WHERE o.id = end_order.order_id FOR UPDATE;
  IF _o.status NOT IN ('new', 'accepted', 'partially_filled') THEN
    RETURN _o;
  END IF;
  _now := trading.account_now(_o.account_id);
  UPDATE trading.orders o
     SET status = end_order.status, status_reason = end_order.reason, updated_at = _now, closed_at = _now
   WHERE o.id = _o.id
  RETURNING * INTO _o;
  PERFORM internal.emit(_o.account_id, CASE end_order.status WHEN 'expired' THEN 'order_expired' ELSE 'order_cancelled' END,
                        _o.id, _now, jsonb_build_object('symbol', _o.symbol, 'reason', end_order.reason,
                                                        'filled_qty', _o.filled_qty));
  RETURN _o;
END
$$;
COMMENT ON FUNCTION internal.end_order IS
  'Internal: mark an open order cancelled or expired with a reason and emit the event; a final order is returned unchanged.';

REVOKE ALL ON FUNCTION internal.end_order(bigint, text, text) FROM PUBLIC;
