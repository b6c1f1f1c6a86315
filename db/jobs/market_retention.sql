-- pg_cron runs pgtrade's own jobs (TimescaleDB's scheduler runs its compression and rollup policies).
-- Only in the database pg_cron serves: elsewhere (a scratch or test database) nothing is scheduled.
DO $$
BEGIN
  IF to_regnamespace('cron') IS NOT NULL THEN
    PERFORM cron.schedule('pgtrade-market-retention', '17 3 * * *', 'SELECT * FROM market.apply_retention()');
  END IF;
END
$$;
