-- Least-privilege guards over every schema of the database (pgTAP), not only api. Each query lists the objects
-- that break a rule, so a failure names them. "Ours" is everything that is not PostgreSQL's own
-- (pg_catalog, information_schema, pg_toast, temp schemas) and not a member of an extension (TimescaleDB, pg_cron,
-- PL/Python, pgTAP create and own their objects; TimescaleDB's chunks, compressed tables and materialized
-- hypertables are not extension members and do count). New schemas and objects are covered without anyone listing
-- them. tests/test_privileges.py breaks each rule on purpose and shows the guard failing.
-- Run by tests/test_pgtap.py inside a rolled-back transaction.
SELECT plan(14);

CREATE TEMP VIEW ours AS
  SELECT 'pg_namespace'::regclass AS classid, n.oid AS objid, n.oid AS nsp, n.nspowner AS owner
  FROM pg_namespace n
  UNION ALL
  SELECT 'pg_class'::regclass, c.oid, c.relnamespace, c.relowner FROM pg_class c
  WHERE c.relkind NOT IN ('i', 'I', 't')  -- indexes and TOAST tables belong to their table
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                    AND d.deptype IN ('a', 'i'))  -- identity sequences belong to their column
  UNION ALL
  SELECT 'pg_proc'::regclass, p.oid, p.pronamespace, p.proowner FROM pg_proc p
  UNION ALL
  SELECT 'pg_type'::regclass, t.oid, t.typnamespace, t.typowner FROM pg_type t
  WHERE t.typtype IN ('d', 'e', 'r', 'm')
     OR (t.typtype = 'c' AND (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c');
CREATE TEMP VIEW our_objects AS
  SELECT o.classid, o.objid, o.owner, pg_describe_object(o.classid, o.objid, 0) AS object,
         CASE WHEN o.classid = 'pg_namespace'::regclass THEN o.objid ELSE o.nsp END AS nsp
  FROM ours o
  JOIN pg_namespace n ON n.oid = CASE WHEN o.classid = 'pg_namespace'::regclass THEN o.objid ELSE o.nsp END
  WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = o.classid AND d.objid = o.objid AND d.deptype = 'e')
    -- an extension's own schema (e.g. _timescaledb_internal holds both: its chunks do count)
    AND NOT (o.classid = 'pg_namespace'::regclass AND EXISTS (
               SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass AND d.objid = o.objid
               AND d.deptype = 'e'))
    AND NOT (o.classid = 'pg_namespace'::regclass AND n.nspname = 'public');  -- owned by pg_database_owner
CREATE TEMP VIEW web_roles AS
  SELECT r.oid, r.rolname FROM pg_roles r WHERE r.rolname IN ('web_anon', 'trader', 'pgtrade_admin');
-- Functions of ours in pgtrade's own schemas (public holds only extensions' functions)
CREATE TEMP VIEW our_functions AS
  SELECT p.oid, p.oid::regprocedure AS fn, p.prosecdef, p.proconfig, n.nspname
  FROM our_objects o JOIN pg_proc p ON p.oid = o.objid JOIN pg_namespace n ON n.oid = p.pronamespace
  WHERE o.classid = 'pg_proc'::regclass;

SELECT is_empty(
  $$SELECT f.fn FROM our_functions f
    WHERE f.prosecdef AND NOT EXISTS (SELECT 1 FROM unnest(f.proconfig) c
                                      WHERE c ~ '^search_path=pg_catalog(, *[a-z_]+)*, *pg_temp$')$$,
  'every SECURITY DEFINER function pins search_path (pg_catalog first, pg_temp last)');

SELECT is_empty(
  $$SELECT o.object, r.rolname FROM our_objects o JOIN pg_roles r ON r.oid = o.owner
    WHERE r.rolsuper AND o.object NOT IN (SELECT s.object FROM ops.superuser_objects s)$$,
  'no object is owned by a superuser unless ops.superuser_objects lists it with its reason');

SELECT is_empty(
  $$SELECT s.object FROM ops.superuser_objects s
    JOIN our_objects o ON o.object = s.object
    WHERE s.exposed_reason IS NULL AND o.classid = 'pg_proc'::regclass
      AND ((SELECT p.prosecdef FROM pg_proc p WHERE p.oid = o.objid)
           OR EXISTS (SELECT 1 FROM web_roles w WHERE has_function_privilege(w.oid, o.objid, 'EXECUTE'))
           OR has_function_privilege('public', o.objid, 'EXECUTE'))$$,
  'a superuser-owned function is neither SECURITY DEFINER nor executable by a web role unless the list says why');

SELECT is_empty(
  $$SELECT o.object, r.rolname FROM our_objects o JOIN pg_roles r ON r.oid = o.owner
    WHERE r.rolname NOT IN ('pgtrade_owner', 'pgtrade_jobs') AND NOT r.rolsuper$$,
  'everything of ours is owned by pgtrade_owner (pgtrade_jobs: its own pg_cron report)');

SELECT is_empty(
  $$SELECT w.rolname, n.nspname FROM web_roles w CROSS JOIN pg_namespace n
    WHERE n.nspname NOT IN ('api', 'pg_catalog', 'information_schema')
      AND (has_schema_privilege(w.oid, n.oid, 'CREATE')
           OR (has_schema_privilege(w.oid, n.oid, 'USAGE')
               -- extensions' schemas that grant USAGE to PUBLIC by design (e.g. timescaledb_information)
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass
                               AND d.objid = n.oid AND d.deptype = 'e')
               AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'))$$,
  'web roles may use no schema but api (and the system''s and extensions'' public ones)');

SELECT is_empty(
  $$SELECT w.rolname, o.object FROM web_roles w CROSS JOIN our_objects o
    JOIN pg_namespace n ON n.oid = o.nsp
    WHERE n.nspname <> 'api' AND o.classid = 'pg_class'::regclass
      AND has_table_privilege(w.oid, o.objid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')$$,
  'web roles hold no privilege on any table, view or chunk of ours outside api');

SELECT is_empty(
  $$SELECT w.rolname, o.object FROM web_roles w CROSS JOIN our_objects o
    JOIN pg_namespace n ON n.oid = o.nsp
    WHERE n.nspname <> 'api' AND o.classid = 'pg_class'::regclass
      AND (SELECT c.relkind FROM pg_class c WHERE c.oid = o.objid) = 'S'
      AND has_sequence_privilege(w.oid, o.objid, 'USAGE, SELECT, UPDATE')$$,
  'web roles hold no privilege on any sequence of ours');

SELECT is_empty(
  $$SELECT w.rolname, f.fn FROM web_roles w CROSS JOIN our_functions f
    WHERE f.nspname <> 'api' AND has_function_privilege(w.oid, f.oid, 'EXECUTE')$$,
  'web roles execute no function of ours outside api');

SELECT is_empty(
  $$SELECT f.fn FROM our_functions f WHERE has_function_privilege('public', f.oid, 'EXECUTE')$$,
  'PUBLIC executes no function of ours (every grant is explicit)');

SELECT is_empty(
  $$SELECT o.object FROM our_objects o
    WHERE o.classid = 'pg_class'::regclass
      AND EXISTS (SELECT 1 FROM pg_class c, aclexplode(c.relacl) x WHERE c.oid = o.objid AND x.grantee = 0)$$,
  'no table, view or sequence of ours grants anything to PUBLIC');

SELECT is_empty(
  $$SELECT w.rolname, p.privilege FROM web_roles w
    CROSS JOIN unnest(ARRAY['CREATE', 'TEMPORARY']) p(privilege)
    WHERE has_database_privilege(w.oid, current_database(), p.privilege)$$,
  'web roles may neither create schemas nor temporary tables in the database');

SELECT is_empty(
  $$SELECT r.rolname, g.rolname AS member_of FROM pg_auth_members m
    JOIN pg_roles r ON r.oid = m.member JOIN pg_roles g ON g.oid = m.roleid
    WHERE r.rolname IN ('web_anon', 'trader', 'pgtrade_admin')
       OR (g.rolname IN ('web_anon', 'trader', 'pgtrade_admin') AND r.rolname <> 'authenticator')
       OR (g.rolname = 'pgtrade_owner' AND r.rolname <> 'pgtrade_jobs')$$,
  'web roles belong to no role and only authenticator may become them; only pgtrade_jobs acts as the owner');

SELECT is(
  (SELECT string_agg(format('%s login=%s super=%s bypassrls=%s createrole=%s createdb=%s password=%s',
                            r.rolname, r.rolcanlogin, r.rolsuper, r.rolbypassrls, r.rolcreaterole, r.rolcreatedb,
                            a.rolpassword IS NOT NULL), '; ' ORDER BY r.rolname)
   FROM pg_roles r JOIN pg_authid a ON a.oid = r.oid WHERE r.rolname IN ('pgtrade_owner', 'pgtrade_jobs')),
  'pgtrade_jobs login=t super=f bypassrls=f createrole=f createdb=f password=f; '
  'pgtrade_owner login=f super=f bypassrls=f createrole=f createdb=f password=f',
  'the owner cannot log in; the jobs role has no password (LOGIN only for background workers); neither is privileged');

SELECT is_empty(
  $$SELECT r.rolname FROM web_roles r
    WHERE NOT EXISTS (SELECT 1 FROM pg_db_role_setting s, unnest(s.setconfig) c
                      WHERE s.setrole = r.oid AND s.setdatabase = 0 AND c LIKE 'statement_timeout=%')$$,
  'every web role has a statement_timeout (PostgREST applies it per request)');

SELECT * FROM finish();
