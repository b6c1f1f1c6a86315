-- Which account a request acts on. PostgREST puts the JWT claims in request.jwt.claims and switches to the JWT's
-- role with SET LOCAL ROLE; inside this SECURITY DEFINER function current_user is the owner, but the role setting
-- still names the caller's role ('none' outside PostgREST: then the session user, e.g. psql's superuser).
CREATE OR REPLACE FUNCTION api.request_account_id(account text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _role name := CASE WHEN current_setting('role') = 'none' THEN session_user
                     ELSE current_setting('role')::name END;
  _claim text := nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'account';
  _name text;
  _id bigint;
BEGIN
  IF pg_has_role(_role, 'pgtrade_admin', 'USAGE') THEN
    _name := coalesce(request_account_id.account, _claim);
    IF _name IS NULL THEN
      RAISE EXCEPTION 'no account given' USING ERRCODE = 'TR013',
        HINT = 'pass the account name (argument account), or put the claim "account" in the token';
    END IF;
    SELECT a.id INTO _id FROM trading.accounts a WHERE a.name = _name;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'unknown account %', quote_literal(_name) USING ERRCODE = 'TR013',
        HINT = 'pass the name of an existing trading account';
    END IF;
    RETURN _id;
  END IF;
  IF NOT pg_has_role(_role, 'trader', 'USAGE') THEN
    RAISE EXCEPTION 'role % has no trading account', _role USING ERRCODE = '42501',
      HINT = 'send a trader token: {"role": "trader", "account": "<account name>"}';
  END IF;
  IF _claim IS NULL THEN
    RAISE EXCEPTION 'the token names no trading account' USING ERRCODE = '28000',
      HINT = 'a trader token carries the claim "account": "<account name>" (docker/make_jwt.py --account NAME)';
  END IF;
  SELECT a.id INTO _id FROM trading.accounts a WHERE a.name = _claim;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'the token''s account % does not exist', quote_literal(_claim) USING ERRCODE = '28000',
      HINT = 'ask an administrator to create the account (trading.create_account)';
  END IF;
  IF request_account_id.account IS NOT NULL AND request_account_id.account IS DISTINCT FROM _claim THEN
    RAISE EXCEPTION 'a trader acts only on its own account' USING ERRCODE = '42501',
      DETAIL = format('the token names %s, the request %s', quote_literal(_claim),
                      quote_literal(request_account_id.account)),
      HINT = 'leave out the account argument';
  END IF;
  RETURN _id;
END
$$;
REVOKE ALL ON FUNCTION api.request_account_id(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api.request_account_id(text) TO trader, pgtrade_admin;
COMMENT ON FUNCTION api.request_account_id(text) IS
  'The id of the trading account this request acts on. trader: the account named by the JWT claim "account" (403 when the token names none or an unknown one; 403 when another account is asked for). pgtrade_admin: the account argument, else the claim (TR013 when neither names an existing account).';

-- The account visibility rule, in one place: the accounts a request may see. pgtrade_admin (and a superuser in
-- psql) every account; a trader the one api.request_account_id() names (403 otherwise). Every account-scoped api
-- view filters with `account_id = ANY ((SELECT api.request_accounts())::bigint[])`: the array is computed once per
-- query (an initplan) and a trader's id becomes an index condition on the view's table.
-- Measured with bench/visibility_bench.py on an idle 2-core machine (1,000,000 orders of 200 accounts, requests
-- run as PostgREST runs them, variants interleaved, p50 of two runs; docs/benchmarks.md): a trader's newest 100
-- orders 1.9-3.6 ms this way, 3.1-3.3 ms as `IN (SELECT unnest(...))`, 118-122 ms with row-level security (a view
-- owner role under a policy with the same predicate), 189-197 ms with the CASE predicate each view used to repeat;
-- an admin's count of all orders 130-152 ms, RLS 34-96 ms, CASE 252-272 ms. Row-level security wins only for an
-- admin reading everything, and it would need FORCE on the trading tables (its policy then runs inside every query
-- of the trading core) or a second role owning the views with SELECT on the tables; this keeps web roles without
-- any table rights and the trading core without policies.
CREATE OR REPLACE FUNCTION api.request_accounts()
RETURNS bigint[]
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF pg_has_role(CASE WHEN current_setting('role') = 'none' THEN session_user ELSE current_setting('role')::name END,
                 'pgtrade_admin', 'USAGE') THEN
    RETURN (SELECT coalesce(array_agg(a.id), '{}') FROM trading.accounts a);
  END IF;
  RETURN ARRAY[api.request_account_id()];
END
$$;
REVOKE ALL ON FUNCTION api.request_accounts() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api.request_accounts() TO trader, pgtrade_admin;
COMMENT ON FUNCTION api.request_accounts() IS
  'The ids of the accounts this request may see (the visibility rule of every account view): all for pgtrade_admin, the token''s account for a trader (403 when the token names none or an unknown one).';
