-- Health: readable without a token. STABLE, so PostgREST runs it in a read-only transaction (GET works).
-- pg_cron lives in one database per cluster (cron.database_name): elsewhere its jobs are reported as absent.
-- status is 'ok' only when the last finished run of every pg_cron job of this database succeeded and the last run
-- of every TimescaleDB policy (and user job) ended 'Success'; otherwise 'failing', and `problems` names each job
-- whose last run failed. A job that has not finished a run yet is not a problem (the daily retention job has no
-- run until its first 03:17); a run in progress is judged by the one before it. Error texts are not shown here
-- (the caller may be anonymous): cron.job_run_details and the server log have them.
CREATE OR REPLACE FUNCTION api.health()
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _cron jsonb;
  _tsdb jsonb;
  _bar jsonb;
  _problems jsonb;
BEGIN
  IF to_regnamespace('cron') IS NOT NULL THEN  -- pg_cron serves this database
    SELECT coalesce(jsonb_agg(jsonb_build_object(
             'job', j.jobname, 'schedule', j.schedule, 'active', j.active,
             'last_status', j.last_status, 'last_start', j.last_start, 'last_end', j.last_end)
             ORDER BY j.jobname), '[]')
      INTO _cron
    FROM ops.cron_jobs() j;
  END IF;
  SELECT coalesce(jsonb_agg(jsonb_build_object(
           'job_id', j.job_id, 'proc', j.proc_schema || '.' || j.proc_name,
           'hypertable', j.hypertable_schema || '.' || j.hypertable_name, 'scheduled', j.scheduled,
           'schedule_interval', j.schedule_interval, 'last_status', s.last_run_status, 'job_status', s.job_status,
           'last_start', s.last_run_started_at, 'last_success', s.last_successful_finish, 'next_start', s.next_start,
           'total_failures', s.total_failures)
           ORDER BY j.job_id), '[]')
  INTO _tsdb
  FROM timescaledb_information.jobs j
  LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id
  WHERE j.job_id >= 1000;  -- policies and user jobs; ids below 1000 are TimescaleDB's own housekeeping
  SELECT coalesce(jsonb_agg(p.problem ORDER BY p.kind, p.name), '[]') INTO _problems
  FROM (
    SELECT 'pg_cron' AS kind, c->>'job' AS name,
           jsonb_build_object('kind', 'pg_cron', 'job', c->'job', 'last_status', c->'last_status',
                              'last_start', c->'last_start') AS problem
    FROM jsonb_array_elements(coalesce(_cron, '[]')) c
    WHERE c->>'last_status' = 'failed'
    UNION ALL
    SELECT 'timescaledb', t->>'proc' || ' ' || (t->>'job_id'),
           jsonb_build_object('kind', 'timescaledb', 'job_id', t->'job_id', 'proc', t->'proc',
                              'hypertable', t->'hypertable', 'last_status', t->'last_status',
                              'last_start', t->'last_start', 'total_failures', t->'total_failures')
    FROM jsonb_array_elements(_tsdb) t
    WHERE t->>'last_status' IS DISTINCT FROM 'Success' AND t->>'last_status' IS NOT NULL
  ) p;
  SELECT jsonb_build_object('symbol', b.symbol, 'interval', b.interval, 'ts', b.ts) INTO _bar
  FROM market.bars b ORDER BY b.ts DESC LIMIT 1;
  RETURN jsonb_build_object(
    'status', CASE WHEN jsonb_array_length(_problems) = 0 THEN 'ok' ELSE 'failing' END,
    'problems', _problems,
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
  'Server status: ''ok'' when the last finished run of every pg_cron job of this database succeeded and the last run of every TimescaleDB policy ended Success, else ''failing'' with `problems` naming each job whose last run failed (kind, job, last status, when; the error text stays in cron.job_run_details and the server log, away from anonymous callers); also the time, PostgreSQL and TimescaleDB versions, pgtrade''s pg_cron jobs with their last finished run (null when pg_cron runs in another database), TimescaleDB policy jobs with their last status, and the latest bar (symbol, interval, open time). Readable without a token.';
