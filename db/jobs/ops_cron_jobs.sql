-- What pg_cron did with pgtrade's jobs, for api.health and operators: each job with its last finished run (a run
-- in progress is judged by the one before it). pg_cron's row-level security shows a job and
-- its runs only to the role that runs it, so this function is defined here, in db/jobs, which migrate applies as
-- pgtrade_jobs: it is owned by that role and, SECURITY DEFINER, reads exactly pgtrade's jobs. Only the owner role
-- may call it (api.health runs as the owner).
CREATE OR REPLACE FUNCTION ops.cron_jobs()
RETURNS TABLE (jobname text, schedule text, command text, active boolean, last_status text,
               last_start timestamptz, last_end timestamptz, last_message text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF to_regnamespace('cron') IS NULL THEN
    RETURN;  -- pg_cron serves another database of this cluster
  END IF;
  RETURN QUERY EXECUTE $q$
    SELECT j.jobname::text, j.schedule, j.command, j.active, r.status, r.start_time, r.end_time, r.return_message
    FROM cron.job j
    LEFT JOIN LATERAL (SELECT d.status, d.start_time, d.end_time, d.return_message FROM cron.job_run_details d
                       WHERE d.jobid = j.jobid AND d.status IN ('succeeded', 'failed')
                       ORDER BY d.runid DESC LIMIT 1) r ON true
    WHERE j.database = current_database()
    ORDER BY j.jobid $q$;
END
$$;
REVOKE ALL ON FUNCTION ops.cron_jobs() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ops.cron_jobs() TO pgtrade_owner;
COMMENT ON FUNCTION ops.cron_jobs() IS
  'pgtrade''s pg_cron jobs in this database with their last finished run (status, start, end, message); empty where pg_cron runs in another database.';
