-- A rejected order is recorded by trading.place_order and returned, never raised (a raise would roll the record
-- back). The HTTP client still gets a 4xx: PostgREST answers with the status in the transaction-scoped setting
-- response.status (PostgREST docs, Transactions > Response Status Code) and commits.
CREATE OR REPLACE FUNCTION api.place_order(
  symbol text, side text, qty numeric, type text DEFAULT 'market', limit_price numeric DEFAULT NULL,
  stop_price numeric DEFAULT NULL, tif text DEFAULT 'day', client_order_id text DEFAULT NULL,
  stop_loss numeric DEFAULT NULL, take_profit numeric DEFAULT NULL, account text DEFAULT NULL)
RETURNS api.orders
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _o trading.orders;
  _row api.orders;
BEGIN
  _o := trading.place_order(api.request_account_id(place_order.account), place_order.symbol, place_order.side,
                            place_order.qty, place_order.type, place_order.limit_price, place_order.stop_price,
                            place_order.tif, place_order.client_order_id, place_order.stop_loss,
                            place_order.take_profit, 'manual');
  IF _o.status = 'rejected' THEN
    PERFORM set_config('response.status', '422', true);
  END IF;
  SELECT * INTO _row FROM api.orders v WHERE v.id = _o.id;
  RETURN _row;
END
$$;
REVOKE ALL ON FUNCTION api.place_order(text, text, numeric, text, numeric, numeric, text, text, numeric, numeric, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api.place_order(text, text, numeric, text, numeric, numeric, text, text, numeric, numeric, text)
  TO trader, pgtrade_admin;
COMMENT ON FUNCTION api.place_order(text, text, numeric, text, numeric, numeric, text, text, numeric, numeric, text) IS
  'Place an order on your account: side buy|sell, type market|limit|stop|stop_limit (limit_price / stop_price as the type needs), tif day|gtc, optional bracket levels stop_loss / take_profit, optional client_order_id (resending it returns the same order). Market orders fill at once. Returns the order. A rejected order (a risk rule failed) is recorded and returned with HTTP 422 and its reject_code / reject_reason. Errors: TR012 client_order_id reused with other parameters, TR013 unknown account (admins pass account). docs/errors.md.';
