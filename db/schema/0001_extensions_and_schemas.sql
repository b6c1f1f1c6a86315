-- Extensions and schemas. The migration runner has already checked that TimescaleDB is installed and preloaded.
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
  ELSE
    RAISE NOTICE 'pg_cron runs in database %, not %: jobs are not scheduled here',
      current_setting('cron.database_name'), current_database();
  END IF;
END
$$;

CREATE SCHEMA IF NOT EXISTS market;
COMMENT ON SCHEMA market IS 'Market data: instruments, OHLCV bars (TimescaleDB hypertable), rollups, rejected input';
CREATE SCHEMA IF NOT EXISTS ops;
COMMENT ON SCHEMA ops IS 'Operations: migration ledger, settings, job bookkeeping';

-- Nothing is reachable by default: every grant is explicit, next to its object.
REVOKE ALL ON SCHEMA public FROM PUBLIC;
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON ROUTINES FROM PUBLIC;
