-- pg_cron (only in the database pg_cron serves): every minute, process bars closed by the clock since the last
-- statement on their series (ml.process_closed_bars). Applied as pgtrade_jobs, so pg_cron runs it as that role.
DO $$
BEGIN
  IF to_regnamespace('cron') IS NOT NULL THEN
    PERFORM cron.schedule('pgtrade-ml-closed-bars', '* * * * *', 'SELECT ml.process_closed_bars()');
  END IF;
END
$$;
