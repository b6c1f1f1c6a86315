-- Pause and resume: one topic, two functions.
CREATE OR REPLACE FUNCTION api.pause_trading(account text DEFAULT NULL)
RETURNS api.portfolio
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _id bigint := api.request_account_id(pause_trading.account);
  _row api.portfolio;
BEGIN
  PERFORM trading.set_paused(_id, true);
  SELECT * INTO _row FROM api.portfolio v WHERE v.account_id = _id;
  RETURN _row;
END
$$;
REVOKE ALL ON FUNCTION api.pause_trading(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api.pause_trading(text) TO trader, pgtrade_admin;
COMMENT ON FUNCTION api.pause_trading(text) IS
  'Pause trading on your account: new orders are rejected (TR007) until rpc/resume_trading; resting orders stay. Returns the portfolio row.';

CREATE OR REPLACE FUNCTION api.resume_trading(account text DEFAULT NULL)
RETURNS api.portfolio
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _id bigint := api.request_account_id(resume_trading.account);
  _row api.portfolio;
BEGIN
  PERFORM trading.set_paused(_id, false);
  SELECT * INTO _row FROM api.portfolio v WHERE v.account_id = _id;
  RETURN _row;
END
$$;
REVOKE ALL ON FUNCTION api.resume_trading(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api.resume_trading(text) TO trader, pgtrade_admin;
COMMENT ON FUNCTION api.resume_trading(text) IS 'Resume trading on your account after rpc/pause_trading. Returns the portfolio row.';
