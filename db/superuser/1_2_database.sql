-- Superuser step (1): extensions and the database-level rights the owner role needs to build everything else.
-- TimescaleDB, PL/Python (an untrusted language) and pg_cron can only be created by a superuser; their objects
-- stay the superuser's (extension members), which the privilege guards in tests/sql/privileges.sql allow.
CREATE EXTENSION IF NOT EXISTS timescaledb;
CREATE EXTENSION IF NOT EXISTS plpython3u;

-- pg_cron lives in exactly one database per cluster (cron.database_name). That database gets it; another pgtrade
-- database on the same server (a scratch copy, a test database) gets everything else and no schedules.
DO $$
BEGIN
  IF current_setting('cron.database_name', true) IS NULL THEN
    RAISE EXCEPTION 'pg_cron is not loaded by this server'
      USING ERRCODE = '55000',
            HINT = 'set shared_preload_libraries = ''timescaledb,pg_cron'' and cron.database_name, then restart';
  ELSIF current_setting('cron.database_name') = current_database() THEN
    CREATE EXTENSION IF NOT EXISTS pg_cron;
  END IF;
END
$$;

-- The owner creates pgtrade's schemas (CREATE on the database) and uses TimescaleDB's functions, which live in
-- schema public (USAGE; PUBLIC has none there, 0001).
-- Temporary tables only for the owner (and the roles it is granted to): PostgreSQL grants TEMPORARY to PUBLIC
-- by default, which would let a web role create tables outside api.
DO $$
BEGIN
  EXECUTE format('GRANT CREATE, TEMPORARY ON DATABASE %I TO pgtrade_owner', current_database());
  EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
END
$$;
GRANT USAGE ON SCHEMA public TO pgtrade_owner;

-- No JIT compilation in this database, for every session (web requests, pg_cron and TimescaleDB jobs, the CLI and
-- loaders). A plan over market.bars spans the hypertable's chunks, hundreds of them, and its cost estimate passes
-- jit_optimize_above_cost even for a query that reads a few rows: PostgreSQL then compiles thousands of
-- functions before it runs. Measured on the bundled SPX daily series (244 chunks): anomaly detection over the
-- series 14.8 s with JIT, of which 13.6 s compiling 2,372 functions, 0.77 s without; a 1-minute load through the
-- ingest path (its closed-bar trigger runs that detection) bench/load_bench.py, docs/benchmarks.md. A session may
-- still SET jit = on for an analytic query of its own.
DO $$
BEGIN
  EXECUTE format('ALTER DATABASE %I SET jit = off', current_database());
END
$$;

-- Functions the owner creates start without EXECUTE for PUBLIC: every grant is explicit, next to its object.
ALTER DEFAULT PRIVILEGES FOR ROLE pgtrade_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE pgtrade_owner REVOKE EXECUTE ON ROUTINES FROM PUBLIC;

-- pg_cron: db/jobs schedules its jobs as pgtrade_jobs (migrate switches to that role for those files), so every
-- job runs as pgtrade_jobs, never as a superuser. pg_cron lets a role schedule its own jobs given USAGE on cron.
DO $$
BEGIN
  IF to_regnamespace('cron') IS NOT NULL THEN
    GRANT USAGE ON SCHEMA cron TO pgtrade_jobs;
  END IF;
END
$$;
