-- Superuser step (2): the failed runs of TimescaleDB jobs, for health and the alert watcher. TimescaleDB keeps each
-- run in _timescaledb_internal.bgw_job_stat_history, which only a superuser may read; its view
-- timescaledb_information.job_errors shows a run only to members of the job's owner (pgtrade_jobs for pgtrade's
-- policies, which pgtrade_owner is not: pgtrade_jobs is a member of pgtrade_owner, not the reverse). This function
-- reads the failed runs of the policy and user jobs (ids >= 1000: not TimescaleDB's own housekeeping) since a time.
-- It is SECURITY DEFINER so pgtrade_owner (ops.job_health) may call it; no web role may.
CREATE OR REPLACE FUNCTION ops.timescaledb_job_errors(since timestamptz)
RETURNS TABLE (job_id integer, start_time timestamptz, finish_time timestamptz, sqlerrcode text, message text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT h.job_id, h.execution_start, h.execution_finish, h.data -> 'error_data' ->> 'sqlerrcode',
         CASE WHEN h.succeeded IS NULL AND h.execution_finish IS NULL AND h.pid IS NULL
              THEN 'job crash detected, see server logs'
              ELSE h.data -> 'error_data' ->> 'message' END
  FROM _timescaledb_internal.bgw_job_stat_history h
  WHERE h.job_id >= 1000 AND h.execution_start >= timescaledb_job_errors.since
    AND (h.succeeded IS FALSE OR (h.succeeded IS NULL AND h.execution_finish IS NULL AND h.pid IS NULL))
$$;
REVOKE ALL ON FUNCTION ops.timescaledb_job_errors(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ops.timescaledb_job_errors(timestamptz) TO pgtrade_owner;
COMMENT ON FUNCTION ops.timescaledb_job_errors(timestamptz) IS
  'Failed runs of TimescaleDB policy and user jobs (id >= 1000) started since a time: job, start, finish, SQLSTATE, message (a crashed run: ''job crash detected''). For ops.job_health; owner only.';

-- The schedulers behind the jobs: which database pg_cron serves (cron.database_name is readable by superusers only),
-- whether its launcher runs and whether TimescaleDB's job scheduler runs for this database (pg_stat_activity shows
-- other roles' background workers without their backend type to pgtrade_owner).
CREATE OR REPLACE FUNCTION ops.job_schedulers()
RETURNS TABLE (cron_database text, pg_cron_launcher boolean, timescaledb_scheduler boolean)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT current_setting('cron.database_name', true),
         EXISTS (SELECT FROM pg_stat_activity a WHERE a.backend_type = 'pg_cron launcher'),
         EXISTS (SELECT FROM pg_stat_activity a WHERE a.backend_type = 'TimescaleDB Background Worker Scheduler'
                                                 AND a.datname = current_database())
$$;
REVOKE ALL ON FUNCTION ops.job_schedulers() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ops.job_schedulers() TO pgtrade_owner;
COMMENT ON FUNCTION ops.job_schedulers() IS
  'Which database pg_cron serves, whether its launcher runs, and whether TimescaleDB''s job scheduler runs for this database. For ops.health; owner only.';

INSERT INTO ops.superuser_objects (object, reason, exposed_reason) VALUES
  ('function ops.job_schedulers()',
   'reads cron.database_name and the background workers in pg_stat_activity (superuser only) so health can tell whether the job schedulers run',
   'SECURITY DEFINER: that is its purpose (a superuser''s read for pgtrade_owner); returns a database name and two booleans, takes no input; executable by pgtrade_owner only, no web role'),
  ('function ops.timescaledb_job_errors(timestamp with time zone)',
   'reads _timescaledb_internal.bgw_job_stat_history (superuser only) so health can count and show failed runs of every TimescaleDB job',
   'SECURITY DEFINER: that is its purpose (a superuser''s read for pgtrade_owner); a fixed query of failed job runs since a time; executable by pgtrade_owner only, no web role (api.health drops the error texts)')
ON CONFLICT (object) DO UPDATE SET reason = excluded.reason, exposed_reason = excluded.exposed_reason;
