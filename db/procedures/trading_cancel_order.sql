CREATE OR REPLACE FUNCTION trading.cancel_order(order_id bigint, reason text DEFAULT 'cancelled on request')
RETURNS trading.orders
LANGUAGE plpgsql
AS $$
DECLARE
  _o trading.orders;
BEGIN
  SELECT * INTO _o FROM trading.orders o WHERE o.id = cancel_order.order_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown order %', coalesce(cancel_order.order_id::text, 'NULL') USING ERRCODE = 'TR014',
      HINT = 'pass the id of an order of this account';
  END IF;
  PERFORM 1 FROM trading.accounts a WHERE a.id = _o.account_id FOR NO KEY UPDATE;
  SELECT * INTO _o FROM trading.orders o WHERE o.id = cancel_order.order_id FOR UPDATE;
  IF _o.status NOT IN ('new', 'accepted', 'partially_filled') THEN
    RAISE EXCEPTION 'order % is already %', _o.id, _o.status USING ERRCODE = 'TR015',
      DETAIL = format('filled %s of %s', _o.filled_qty, _o.qty),
      HINT = 'only accepted or partially filled orders can be cancelled';
  END IF;
  RETURN internal.end_order(_o.id, 'cancelled', coalesce(cancel_order.reason, 'cancelled on request'));
END
$$;
COMMENT ON FUNCTION trading.cancel_order IS
  'Cancel an open order (the filled part stays). Raises TR014 for an unknown order, TR015 for an order that is already final.';
