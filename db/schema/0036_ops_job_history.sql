-- How long pg_cron's run history of pgtrade's jobs is kept (issue 14's notes: nothing purged it). pg_cron writes a
-- row to cron.job_run_details for every run, ~5,800 a day for pgtrade's four every-minute jobs, and health and the
-- watcher (every minute) aggregate the table: measured with 700,000 rows (four months) ops.cron_jobs() took 310 ms
-- instead of 1.4 ms, api.health() 525 ms, ops.watch() 364 ms. ops.purge_cron_history (the daily pg_cron job
-- pgtrade-cron-history, db/jobs/ops_cron_jobs.sql) deletes the runs older than this.
ALTER TABLE ops.health_settings
  ADD COLUMN job_history_keep interval NOT NULL DEFAULT interval '7 days';
ALTER TABLE ops.health_settings
  ADD CONSTRAINT health_settings_job_history_keep CHECK (job_history_keep >= failure_window);
COMMENT ON COLUMN ops.health_settings.job_history_keep IS
  'pg_cron''s run history of pgtrade''s jobs older than this is deleted daily (ops.purge_cron_history); at least failure_window, so recent failures are all counted. Health''s failures_total counts the failures kept.';
