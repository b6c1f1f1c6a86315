-- Day orders end with their session (the pg_cron job for live accounts; trading.advance_clock for backtests).
CREATE OR REPLACE FUNCTION trading.expire_orders(account_id bigint DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
  _id bigint;
  _n integer := 0;
BEGIN
  FOR _id IN
    SELECT o.id FROM trading.orders o JOIN trading.accounts a ON a.id = o.account_id
    WHERE o.status IN ('accepted', 'partially_filled') AND o.tif = 'day'
      AND CASE WHEN expire_orders.account_id IS NULL THEN a.kind = 'live' ELSE a.id = expire_orders.account_id END
      AND o.expires_at <= trading.account_now(a.id)
    ORDER BY o.id
  LOOP
    PERFORM internal.end_order(_id, 'expired', 'day order: the session ended');
    _n := _n + 1;
  END LOOP;
  RETURN _n;
END
$$;
COMMENT ON FUNCTION trading.expire_orders IS
  'Expire open day orders whose session has ended by the account clock (all live accounts when account_id is NULL; the pg_cron job runs it every minute).';
