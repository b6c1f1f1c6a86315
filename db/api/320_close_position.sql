CREATE OR REPLACE FUNCTION api.close_position(symbol text, client_order_id text DEFAULT NULL, account text DEFAULT NULL)
RETURNS api.orders
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _o trading.orders;
  _row api.orders;
BEGIN
  _o := trading.close_position(api.request_account_id(close_position.account), close_position.symbol,
                               close_position.client_order_id);
  IF _o.status = 'rejected' THEN
    PERFORM set_config('response.status', '422', true);
  END IF;
  SELECT * INTO _row FROM api.orders v WHERE v.id = _o.id;
  RETURN _row;
END
$$;
REVOKE ALL ON FUNCTION api.close_position(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api.close_position(text, text, text) TO trader, pgtrade_admin;
COMMENT ON FUNCTION api.close_position(text, text, text) IS
  'Close a position of your account with a market order for its whole quantity (its bracket orders are cancelled when it fills); returns the order, with HTTP 422 when it was rejected (e.g. TR008 no fresh price). Errors: TR002 no open position. docs/errors.md.';
