-- What pg_cron did with pgtrade's jobs, for api.health and operators: each job with its last finished run (a run
-- in progress is judged by the one before it). pg_cron's row-level security shows a job and
-- its runs only to the role that runs it, so this function is defined here, in db/jobs, which migrate applies as
-- pgtrade_jobs: it is owned by that role and, SECURITY DEFINER, reads exactly pgtrade's jobs. Only the owner role
-- may call it (api.health runs as the owner).
-- failures_since (default: now - ops.health_settings.failure_window) bounds failures_recent; failures_total counts
-- the failed runs pg_cron still keeps in cron.job_run_details. Not-started runs (no free worker) count as failures.
DROP FUNCTION IF EXISTS ops.cron_jobs();
CREATE OR REPLACE FUNCTION ops.cron_jobs(failures_since timestamptz DEFAULT NULL)
RETURNS TABLE (jobname text, schedule text, command text, active boolean, last_status text,
               last_start timestamptz, last_end timestamptz, last_message text, last_success timestamptz,
               failures_recent bigint, failures_total bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _since timestamptz := coalesce(cron_jobs.failures_since,
                                 now() - (SELECT s.failure_window FROM ops.health_settings s));
BEGIN
  IF to_regnamespace('cron') IS NULL THEN
    RETURN;  -- pg_cron serves another database of this cluster
  END IF;
  RETURN QUERY EXECUTE $q$
    SELECT j.jobname::text, j.schedule, j.command, j.active, r.status, r.start_time, r.end_time, r.return_message,
           f.last_success, coalesce(f.recent, 0), coalesce(f.total, 0)
    FROM cron.job j
    LEFT JOIN LATERAL (SELECT d.status, d.start_time, d.end_time, d.return_message FROM cron.job_run_details d
                       WHERE d.jobid = j.jobid AND d.status IN ('succeeded', 'failed')
                       ORDER BY d.runid DESC LIMIT 1) r ON true
    LEFT JOIN (SELECT d.jobid, max(d.end_time) FILTER (WHERE d.status = 'succeeded') AS last_success,
                      count(*) FILTER (WHERE d.status = 'failed' AND coalesce(d.start_time, d.end_time, $1) >= $1) AS recent,
                      count(*) FILTER (WHERE d.status = 'failed') AS total
               FROM cron.job_run_details d GROUP BY d.jobid) f ON f.jobid = j.jobid
    WHERE j.database = current_database()
    ORDER BY j.jobid $q$ USING _since;
END
$$;
REVOKE ALL ON FUNCTION ops.cron_jobs(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ops.cron_jobs(timestamptz) TO pgtrade_owner;
COMMENT ON FUNCTION ops.cron_jobs(timestamptz) IS
  'pgtrade''s pg_cron jobs in this database with their last finished run (status, start, end, message), last success, failed runs since failures_since (default: the health failure window) and in all kept history; empty where pg_cron runs in another database.';

-- The daily purge of that history: pgtrade's runs that ended (or, never started, were recorded) longer ago than
-- ops.health_settings.job_history_keep. pg_cron's row-level security lets a role delete its own runs only; this
-- file is applied as pgtrade_jobs, which runs every pgtrade job, so its runs are exactly pgtrade's. The job itself
-- runs as pgtrade_jobs: no SECURITY DEFINER. Returns the number of runs deleted.
CREATE OR REPLACE FUNCTION ops.purge_cron_history()
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _n bigint;
BEGIN
  IF to_regnamespace('cron') IS NULL THEN
    RETURN 0;  -- pg_cron serves another database of this cluster
  END IF;
  EXECUTE $q$
    DELETE FROM cron.job_run_details d
    WHERE d.username = current_user AND d.status IN ('succeeded', 'failed')
      AND coalesce(d.end_time, d.start_time) < now() - (SELECT s.job_history_keep FROM ops.health_settings s) $q$;
  GET DIAGNOSTICS _n = ROW_COUNT;
  RETURN _n;
END
$$;
REVOKE ALL ON FUNCTION ops.purge_cron_history() FROM PUBLIC;
COMMENT ON FUNCTION ops.purge_cron_history() IS
  'Delete pg_cron''s finished runs of pgtrade''s jobs older than ops.health_settings.job_history_keep (the daily job pgtrade-cron-history, as pgtrade_jobs); returns how many.';

DO $$
BEGIN
  IF to_regnamespace('cron') IS NOT NULL THEN
    PERFORM cron.schedule('pgtrade-cron-history', '47 3 * * *', 'SELECT ops.purge_cron_history()');
  END IF;
END
$$;
