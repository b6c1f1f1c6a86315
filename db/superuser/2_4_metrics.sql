-- Superuser step (2): pg_stat_statements, the source of the key procedures' latency (ops.metrics_statements).
-- Only a superuser may create it; its objects are extension members owned by the superuser (the privilege guards
-- leave extension members alone). The server must preload it (pgtrade/cluster.py's settings); on a server that
-- does not, the extension still installs and ops.metrics_statements() returns no rows instead of failing.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = 'pg_stat_statements') THEN
    CREATE EXTENSION IF NOT EXISTS pg_stat_statements SCHEMA public;
  END IF;
END
$$;

-- The view lives in schema public, on which PUBLIC has no USAGE (0001). pgtrade_monitor (pg_monitor: may read
-- every statement's statistics) calls ops.metrics_statements() with its own rights, so it needs USAGE there. Every
-- function of public belongs to an extension (TimescaleDB, pg_stat_statements); the USAGE opens no table of pgtrade.
GRANT USAGE ON SCHEMA public TO pgtrade_monitor;
-- The view calls the function pg_stat_statements(boolean) with its reader's rights, and this server creates
-- functions without EXECUTE for PUBLIC (0001's default privileges): the monitor gets it by name.
DO $$
BEGIN
  IF to_regprocedure('public.pg_stat_statements(boolean)') IS NOT NULL THEN
    GRANT EXECUTE ON FUNCTION public.pg_stat_statements(boolean) TO pgtrade_monitor;
  END IF;
END
$$;
