-- Health: readable without a token. STABLE, so PostgREST runs it in a read-only transaction (GET works).
-- The rules are in ops.health() (db/procedures/ops_health.sql; docs/operations.md "Health"): status 'ok',
-- 'degraded' or 'failing', `problems` naming each thing wrong (kind, message, figures), the server, extensions,
-- every pg_cron and TimescaleDB job with its last run and failures, data freshness of the live-fed series, active
-- models' age, open alerts by severity. This wrapper is what an anonymous caller may see: no error texts (they stay
-- in cron.job_run_details, TimescaleDB's job history and the server log; `pgtrade health` shows them to operators),
-- and no account data (ops.health has none: alerts are counted by severity only).
-- pg_cron lives in one database per cluster (cron.database_name): elsewhere its jobs are reported as absent (null).
CREATE OR REPLACE FUNCTION api.health()
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _h jsonb := ops.health();
BEGIN
  RETURN _h
    || jsonb_build_object(
         'problems', (SELECT coalesce(jsonb_agg(p - 'error' ORDER BY n), '[]')
                      FROM jsonb_array_elements(_h->'problems') WITH ORDINALITY q(p, n)),
         'timescaledb_jobs', (SELECT coalesce(jsonb_agg(j - 'error' ORDER BY n), '[]')
                              FROM jsonb_array_elements(_h->'timescaledb_jobs') WITH ORDINALITY q(j, n)),
         'pg_cron', CASE WHEN jsonb_typeof(_h->'pg_cron') = 'object' THEN jsonb_build_object('jobs',
                      (SELECT coalesce(jsonb_agg(j - 'error' ORDER BY n), '[]')
                       FROM jsonb_array_elements(_h->'pg_cron'->'jobs') WITH ORDINALITY q(j, n))) END);
END
$$;
REVOKE ALL ON FUNCTION api.health() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api.health() TO web_anon, trader, pgtrade_admin;
COMMENT ON FUNCTION api.health() IS
  'Server status: ''failing'' when a required extension is missing, a pg_cron or TimescaleDB job''s last run failed, or a live-fed symbol is stale; ''degraded'' when a job failed recently but its last run succeeded, or an active model is overdue for retraining; else ''ok''. `problems` names each thing wrong (kind, status, message, figures). Also the server (up, start time, recovery), extensions with versions, every pg_cron job (null where pg_cron runs in another database) and TimescaleDB job with last run, status and failures (recent, total), data freshness per live-fed series (age, bars due) and the newest bar of other symbols, active models and their age, open alerts by severity, open incidents by kind, the latest bar. No error texts and no account data. Readable without a token.';
