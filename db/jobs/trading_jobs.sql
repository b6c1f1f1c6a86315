-- pg_cron (only in the database pg_cron serves): snapshot live portfolios and expire day orders every minute.
-- Applied as pgtrade_jobs (pgtrade/migrate.py), so pg_cron runs these jobs as that role.
DO $$
BEGIN
  IF to_regnamespace('cron') IS NOT NULL THEN
    PERFORM cron.schedule('pgtrade-trading-snapshots', '* * * * *', 'SELECT trading.snapshot_live_portfolios()');
    PERFORM cron.schedule('pgtrade-trading-expire-day-orders', '* * * * *', 'SELECT trading.expire_orders()');
  END IF;
END
$$;
