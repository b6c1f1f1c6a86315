CREATE OR REPLACE FUNCTION api.cancel_order(order_id bigint)
RETURNS api.orders
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  -- administrators cancel any order; anyone else only orders of the account api.request_account_id() selects
  _mine bigint := CASE WHEN pg_has_role(CASE WHEN current_setting('role') = 'none' THEN session_user
                                             ELSE current_setting('role')::name END, 'pgtrade_admin', 'USAGE')
                       THEN NULL ELSE api.request_account_id() END;
  _owner bigint;
  _row api.orders;
BEGIN
  SELECT o.account_id INTO _owner FROM trading.orders o WHERE o.id = cancel_order.order_id;
  -- Another account's order is reported exactly like one that does not exist.
  IF NOT FOUND OR _owner <> coalesce(_mine, _owner) THEN
    RAISE EXCEPTION 'unknown order %', coalesce(cancel_order.order_id::text, 'NULL') USING ERRCODE = 'TR014',
      HINT = 'pass the id of an order of this account';
  END IF;
  PERFORM trading.cancel_order(cancel_order.order_id, 'cancelled on request');
  SELECT * INTO _row FROM api.orders v WHERE v.id = cancel_order.order_id;
  RETURN _row;
END
$$;
REVOKE ALL ON FUNCTION api.cancel_order(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api.cancel_order(bigint) TO trader, pgtrade_admin;
COMMENT ON FUNCTION api.cancel_order(bigint) IS
  'Cancel an open order of your account (the filled part stays); returns the order. Errors: TR014 unknown order (or another account''s), TR015 order already final. docs/errors.md.';
