-- Health: readable without a token. STABLE, so PostgREST runs it in a read-only transaction (GET works).
-- pg_cron lives in one database per cluster (cron.database_name): elsewhere its jobs are reported as absent.
CREATE OR REPLACE FUNCTION api.health()
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _cron jsonb;
  _tsdb jsonb;
  _bar jsonb;
BEGIN
  IF to_regnamespace('cron') IS NOT NULL THEN  -- pg_cron serves this database
    SELECT coalesce(jsonb_agg(jsonb_build_object(
             'job', j.jobname, 'schedule', j.schedule, 'active', j.active,
             'last_status', j.last_status, 'last_start', j.last_start, 'last_end', j.last_end)), '[]')
      INTO _cron
    FROM ops.cron_jobs() j;
  END IF;
  SELECT coalesce(jsonb_agg(jsonb_build_object(
           'job_id', j.job_id, 'proc', j.proc_schema || '.' || j.proc_name,
           'hypertable', j.hypertable_schema || '.' || j.hypertable_name, 'scheduled', j.scheduled,
           'schedule_interval', j.schedule_interval, 'last_status', s.last_run_status, 'job_status', s.job_status,
           'last_success', s.last_successful_finish, 'next_start', s.next_start, 'total_failures', s.total_failures)
           ORDER BY j.job_id), '[]')
  INTO _tsdb
  FROM timescaledb_information.jobs j
  LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id
  WHERE j.job_id >= 1000;  -- policies; ids below 1000 are TimescaleDB's own housekeeping
  SELECT jsonb_build_object('symbol', b.symbol, 'interval', b.interval, 'ts', b.ts) INTO _bar
  FROM market.bars b ORDER BY b.ts DESC LIMIT 1;
  RETURN jsonb_build_object(
    'status', 'ok',
    'time', now(),
    'server_version', current_setting('server_version'),
    'timescaledb_version', (SELECT e.extversion FROM pg_extension e WHERE e.extname = 'timescaledb'),
    'pg_cron', CASE WHEN _cron IS NULL THEN NULL ELSE jsonb_build_object('jobs', _cron) END,
    'timescaledb_jobs', _tsdb,
    'latest_bar', _bar);
END
$$;
REVOKE ALL ON FUNCTION api.health() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api.health() TO web_anon, trader, pgtrade_admin;
COMMENT ON FUNCTION api.health() IS
  'Server status: time, PostgreSQL and TimescaleDB versions, pgtrade''s pg_cron jobs with their last run (null when pg_cron runs in another database), TimescaleDB policy jobs with their last status, and the latest bar (symbol, interval, open time). Readable without a token.';
