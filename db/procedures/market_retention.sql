-- Retention of raw bars per interval (market.retention); run daily by pg_cron (db/jobs/market_retention.sql).

CREATE OR REPLACE FUNCTION market.apply_retention()
RETURNS TABLE (bar_interval text, deleted bigint)
LANGUAGE plpgsql
AS $$
DECLARE
  _r record;
  _n bigint;
  _revisions text := current_setting('pgtrade.bar_revisions', true);
BEGIN
  -- dropping history is not a correction: no copy of the dropped bars in market.bar_revisions
  PERFORM set_config('pgtrade.bar_revisions', 'off', true);
  FOR _r IN SELECT r.interval, r.keep FROM market.retention r WHERE r.keep IS NOT NULL ORDER BY r.interval LOOP
    DELETE FROM market.bars b WHERE b.interval = _r.interval AND b.ts < now() - _r.keep;
    GET DIAGNOSTICS _n = ROW_COUNT;
    bar_interval := _r.interval;
    deleted := _n;
    RETURN NEXT;
  END LOOP;
  PERFORM set_config('pgtrade.bar_revisions', coalesce(_revisions, ''), true);
END
$$;
COMMENT ON FUNCTION market.apply_retention IS
  'Delete raw bars older than market.retention.keep for each interval that has one (none by default), without recording them as bar revisions. Run daily by pg_cron.';
