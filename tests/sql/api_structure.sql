-- Structural guards for the api schema (pgTAP). Run by tests/test_pgtap.py inside a rolled-back transaction.
SELECT plan(11);

SELECT set_eq(
  $$SELECT c.relname::text FROM pg_class c WHERE c.relnamespace = 'api'::regnamespace AND c.relkind = 'v'$$,
  ARRAY['instruments', 'bars', 'rejected_bars', 'portfolio', 'positions', 'orders', 'fills', 'snapshots', 'events',
        'models', 'signals', 'anomalies', 'alerts', 'auto_trading',
        'backtests', 'backtest_trades', 'backtest_equity', 'strategies'],
  'api holds exactly the expected views');
SELECT is_empty(
  $$SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'api'::regnamespace AND c.relkind NOT IN ('v', 'c')$$,
  'api holds no tables, materialized views, sequences or indexes');
SELECT set_eq(
  $$SELECT p.proname::text FROM pg_proc p WHERE p.pronamespace = 'api'::regnamespace$$,
  ARRAY['request_account_id', 'request_accounts', 'place_order', 'cancel_order', 'close_position', 'pause_trading', 'resume_trading',
        'health', 'set_auto_trading', 'run_backtest'],
  'api holds exactly the expected functions');
SELECT is_empty(
  $$SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'api'::regnamespace
    GROUP BY p.proname HAVING count(*) > 1$$,
  'no api function is overloaded (PostgREST picks RPCs by name and argument names)');
SELECT is_empty(
  $$SELECT p.oid::regprocedure FROM pg_proc p WHERE p.pronamespace = 'api'::regnamespace AND p.prosecdef
    AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)$$,
  'every SECURITY DEFINER api function pins search_path = pg_catalog, pg_temp');
SELECT is_empty(
  $$SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'api'::regnamespace AND c.relkind = 'v'
    AND obj_description(c.oid, 'pg_class') IS NULL
    UNION ALL
    SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'api'::regnamespace
    AND obj_description(p.oid, 'pg_proc') IS NULL$$,
  'every api view and function has a COMMENT (PostgREST''s OpenAPI text)');
SELECT isnt(obj_description('api'::regnamespace, 'pg_namespace'), NULL, 'schema api has a COMMENT');
SELECT is_empty(
  $$SELECT p.oid::regprocedure FROM pg_proc p WHERE p.pronamespace = 'api'::regnamespace
    AND has_function_privilege('public', p.oid, 'EXECUTE')$$,
  'PUBLIC executes no api function (grants are explicit)');
SELECT is_empty(
  $$SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'api'::regnamespace AND c.relkind = 'v'
    AND c.relname NOT IN ('instruments', 'bars', 'models', 'signals', 'anomalies', 'strategies') AND c.relname <> 'rejected_bars'
    AND NOT coalesce('security_barrier=true' = ANY (c.reloptions), false)$$,
  'every account-filtered view is a security barrier');
SELECT is_empty(
  $$SELECT c.relname || '.' || a.attname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
    WHERE c.relnamespace = 'api'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
      AND a.atttypid = 'bytea'::regtype$$,
  'no api view serves raw bytes (the ONNX models stay in ml.models)');
-- Privileges outside api (schemas, tables, functions, PUBLIC) are guarded for every schema in privileges.sql.
SELECT is(
  (SELECT string_agg(format('%s login=%s inherit=%s', rolname, rolcanlogin, rolinherit), ', ' ORDER BY rolname)
   FROM pg_roles WHERE rolname IN ('authenticator', 'pgtrade_admin', 'trader', 'web_anon')),
  'authenticator login=t inherit=f, pgtrade_admin login=f inherit=t, trader login=f inherit=t, web_anon login=f inherit=t',
  'authenticator logs in without inheriting; the web roles cannot log in');

SELECT * FROM finish();
