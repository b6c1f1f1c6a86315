-- Structural guards for the api schema (pgTAP). Run by tests/test_pgtap.py inside a rolled-back transaction.
SELECT plan(13);

SELECT set_eq(
  $$SELECT c.relname::text FROM pg_class c WHERE c.relnamespace = 'api'::regnamespace AND c.relkind = 'v'$$,
  ARRAY['instruments', 'bars', 'rejected_bars', 'portfolio', 'positions', 'orders', 'fills', 'snapshots', 'events'],
  'api holds exactly the expected views');
SELECT is_empty(
  $$SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'api'::regnamespace AND c.relkind NOT IN ('v', 'c')$$,
  'api holds no tables, materialized views, sequences or indexes');
SELECT set_eq(
  $$SELECT p.proname::text FROM pg_proc p WHERE p.pronamespace = 'api'::regnamespace$$,
  ARRAY['request_account_id', 'place_order', 'cancel_order', 'close_position', 'pause_trading', 'resume_trading',
        'health'],
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
    AND c.relname NOT IN ('instruments', 'bars') AND c.relname <> 'rejected_bars'
    AND NOT coalesce('security_barrier=true' = ANY (c.reloptions), false)$$,
  'every account-filtered view is a security barrier');
SELECT is_empty(
  $$SELECT r.rolname, n.nspname FROM pg_roles r CROSS JOIN pg_namespace n
    WHERE r.rolname IN ('web_anon', 'trader', 'pgtrade_admin')
    AND n.nspname IN ('market', 'trading', 'ops', 'public', 'cron')
    AND has_schema_privilege(r.oid, n.oid, 'USAGE')$$,
  'the web roles have no USAGE on pgtrade''s private schemas');
SELECT is_empty(
  $$SELECT r.rolname, c.oid::regclass FROM pg_roles r CROSS JOIN pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE r.rolname IN ('web_anon', 'trader', 'pgtrade_admin') AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
    AND n.nspname NOT IN ('api', 'pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                    AND d.deptype = 'e')
    -- TimescaleDB's own catalog and cache tables are readable by PUBLIC (its design); chunks are not
    AND NOT (n.nspname ~ '^_?timescaledb' AND EXISTS (SELECT 1 FROM aclexplode(c.relacl) x WHERE x.grantee = 0))
    AND has_table_privilege(r.oid, c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')$$,
  'no table, view or chunk outside api (other than extension catalogs) grants anything to a web role');
SELECT is_empty(
  $$SELECT c.oid::regclass FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname IN ('market', 'trading', 'ops', 'public', 'api')
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                    AND d.deptype = 'e')  -- pgTAP (tests only) lives in public
    AND EXISTS (SELECT 1 FROM aclexplode(c.relacl) x WHERE x.grantee = 0)$$,
  'nothing of pgtrade''s grants anything to PUBLIC');
SELECT is(
  (SELECT string_agg(format('%s login=%s inherit=%s', rolname, rolcanlogin, rolinherit), ', ' ORDER BY rolname)
   FROM pg_roles WHERE rolname IN ('authenticator', 'pgtrade_admin', 'trader', 'web_anon')),
  'authenticator login=t inherit=f, pgtrade_admin login=f inherit=t, trader login=f inherit=t, web_anon login=f inherit=t',
  'authenticator logs in without inheriting; the web roles cannot log in');

SELECT * FROM finish();
