-- pg_cron (only in the database pg_cron serves): every minute, mark failed the backtest runs left running by a
-- killed backend or a server restart (backtest.fail_interrupted_runs). Applied as pgtrade_jobs, so pg_cron runs it
-- as that role.
DO $$
BEGIN
  IF to_regnamespace('cron') IS NOT NULL THEN
    PERFORM cron.schedule('pgtrade-backtest-recovery', '* * * * *', 'SELECT backtest.fail_interrupted_runs()');
  END IF;
END
$$;
