-- pgtrade's objects (those a superuser owns) move from the superuser that created them to pgtrade_owner (db/superuser/1_roles.sql), so a
-- web request inside an api SECURITY DEFINER function runs with the owner's rights, never a superuser's.
-- The last migration that runs as the superuser (pgtrade/migrate.py LAST_SUPERUSER_MIGRATION): 0001-0010 were
-- written before the owner role existed, and on a new database they still create their objects as the superuser
-- first, so a new database and an existing one go through the same history and end the same.
-- TimescaleDB carries a hypertable's owner over to its chunks, its compressed table and its policies, and a
-- continuous aggregate's to its materialized hypertable and internal views.
CREATE TABLE ops.superuser_objects (
  object         text PRIMARY KEY,
  reason         text NOT NULL CONSTRAINT superuser_objects_reason CHECK (length(btrim(reason)) > 0),
  exposed_reason text
);
COMMENT ON TABLE ops.superuser_objects IS
  'The objects of pgtrade that a superuser owns, and why (e.g. PL/Python functions: plpython3u is untrusted). Filled by the db/superuser/ file that creates each; tests/sql/privileges.sql fails for any superuser-owned object not listed here.';
COMMENT ON COLUMN ops.superuser_objects.object IS 'pg_describe_object() of the object, e.g. ''function ml.score_bars(text,text)''.';
COMMENT ON COLUMN ops.superuser_objects.exposed_reason IS
  'Why the object may be SECURITY DEFINER or executable by a web role; NULL (the default) means it may be neither.';

DO $$
DECLARE
  _o record;
BEGIN
  FOR _o IN
    SELECT n.nspname FROM pg_namespace n WHERE n.nspname IN ('market', 'trading', 'ops')
  LOOP
    EXECUTE format('ALTER SCHEMA %I OWNER TO pgtrade_owner', _o.nspname);
  END LOOP;

  -- Tables (their identity sequences and row types follow), views, continuous aggregates; the api schema is
  -- rebuilt by every migrate and is the owner's from then on.
  FOR _o IN
    SELECT x.rel, x.kind FROM (
      SELECT c.oid, c.oid::regclass AS rel, c.relkind,
             CASE WHEN c.relkind = 'v' AND EXISTS (SELECT 1 FROM timescaledb_information.continuous_aggregates a
                                                    WHERE a.view_schema = n.nspname AND a.view_name = c.relname)
                    THEN 'MATERIALIZED VIEW'
                  WHEN c.relkind = 'v' THEN 'VIEW'
                  WHEN c.relkind = 'm' THEN 'MATERIALIZED VIEW'
                  WHEN c.relkind = 'S' THEN 'SEQUENCE'
                  ELSE 'TABLE' END AS kind
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname IN ('market', 'trading', 'ops', 'api') AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
        AND c.relowner IN (SELECT r.oid FROM pg_roles r WHERE r.rolsuper)
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                        AND d.deptype IN ('e', 'a', 'i'))  -- extension members; sequences owned by a column
    ) x
    -- continuous aggregates first, the last-built first (a refresh job locks an aggregate's materialization and
    -- then reads its source: taking them in the same order waits for a running job instead of deadlocking with
    -- it), then tables, then plain views
    ORDER BY x.kind <> 'MATERIALIZED VIEW', x.relkind = 'v',
             CASE WHEN x.kind = 'MATERIALIZED VIEW' THEN -x.oid::bigint ELSE x.oid::bigint END
  LOOP
    EXECUTE format('ALTER %s %s OWNER TO pgtrade_owner', _o.kind, _o.rel);
  END LOOP;

  FOR _o IN
    SELECT p.oid::regprocedure AS fn FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname IN ('market', 'trading', 'ops', 'api') AND p.proowner IN (SELECT r.oid FROM pg_roles r WHERE r.rolsuper)
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                      AND d.deptype = 'e')
  LOOP
    EXECUTE format('ALTER ROUTINE %s OWNER TO pgtrade_owner', _o.fn);
  END LOOP;

  -- Standalone composite types (market.ohlcv, trading.bar_event), enums and domains; a table's row type moved with
  -- its table.
  FOR _o IN
    SELECT t.oid::regtype AS typ FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE n.nspname IN ('market', 'trading', 'ops', 'api') AND t.typowner IN (SELECT r.oid FROM pg_roles r WHERE r.rolsuper)
      AND (t.typtype IN ('e', 'd') OR (t.typtype = 'c' AND (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c'))
  LOOP
    EXECUTE format('ALTER TYPE %s OWNER TO pgtrade_owner', _o.typ);
  END LOOP;

  -- pg_cron jobs scheduled by the superuser before this migration: db/jobs schedules them again as pgtrade_jobs.
  IF to_regnamespace('cron') IS NOT NULL THEN
    PERFORM cron.unschedule(j.jobid) FROM cron.job j
    WHERE j.jobname LIKE 'pgtrade-%' AND j.username <> 'pgtrade_jobs';
  END IF;
END
$$;
