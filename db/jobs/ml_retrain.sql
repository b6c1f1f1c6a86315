-- pg_cron (only in the database pg_cron serves): every day at 02:30 UTC retrain every active direction model on its
-- rolling window (ml.retrain_all); a new version becomes active only if it beats the active one and the naive
-- baselines out of sample. Applied as pgtrade_jobs, so pg_cron runs it as that role.
DO $$
BEGIN
  IF to_regnamespace('cron') IS NOT NULL THEN
    PERFORM cron.schedule('pgtrade-ml-retrain', '30 2 * * *', 'SELECT ml.retrain_all()');
  END IF;
END
$$;
