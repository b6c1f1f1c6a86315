CREATE OR REPLACE FUNCTION trading.close_position(account_id bigint, symbol text, client_order_id text DEFAULT NULL)
RETURNS trading.orders
LANGUAGE plpgsql
AS $$
DECLARE
  _qty numeric;
BEGIN
  PERFORM 1 FROM trading.accounts a WHERE a.id = close_position.account_id FOR NO KEY UPDATE;
  SELECT p.qty INTO _qty FROM trading.positions p
  WHERE p.account_id = close_position.account_id AND p.symbol = upper(btrim(close_position.symbol));
  IF coalesce(_qty, 0) = 0 THEN
    RAISE EXCEPTION 'no open position in % on account %', close_position.symbol, close_position.account_id
      USING ERRCODE = 'TR002', HINT = 'list open positions in trading.positions (qty <> 0)';
  END IF;
  RETURN trading.place_order(close_position.account_id, close_position.symbol,
                             CASE WHEN _qty > 0 THEN 'sell' ELSE 'buy' END, abs(_qty), 'market',
                             client_order_id => close_position.client_order_id);
END
$$;
COMMENT ON FUNCTION trading.close_position IS
  'Close a position with a market order for its whole quantity (cancels its bracket orders when it fills); the order row is returned (it may be rejected, e.g. TR008 without a fresh price). Raises TR002 when there is no open position.';
