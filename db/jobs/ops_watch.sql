-- pg_cron (only in the database pg_cron serves): every minute, the alert watcher (ops.watch,
-- db/procedures/ops_watch.sql) opens and closes incidents and raises their alerts. Applied as pgtrade_jobs, so
-- pg_cron runs it as that role. It also marks interrupted backtest runs failed (it replaced the separate
-- pgtrade-backtest-recovery job, unscheduled here where an earlier migrate had scheduled it).
DO $$
BEGIN
  IF to_regnamespace('cron') IS NOT NULL THEN
    PERFORM cron.schedule('pgtrade-ops-watch', '* * * * *', 'SELECT ops.watch()');
    PERFORM cron.unschedule(j.jobid) FROM cron.job j WHERE j.jobname = 'pgtrade-backtest-recovery';
  END IF;
END
$$;
