-- The alert watcher (pg_cron every minute: db/jobs/ops_watch.sql). It finds the conditions a person must be told
-- about and keeps one incident per (kind, subject) in ops.incidents: a condition that appears opens an incident and
-- raises ONE alert (ops.alerts: NOTIFY pgtrade_alerts, delivered by `pgtrade alerts follow`); while it persists
-- or repeats the incident stays open and raises nothing more; when it clears the incident closes with a LOW
-- "resolved" alert; a new occurrence opens a new incident and raises a new alert. docs/operations.md ("Alerts").

-- The conditions, each rule in one place:
--   job_failed      HIGH      a pg_cron or TimescaleDB job whose last finished run failed (ops.job_health)
--   stale_data      HIGH      live-fed series that are stale (ops.data_freshness, the health rule), one incident
--                             per feed (a dead feed is one thing to fix, however many symbols it fed)
--   drawdown        CRITICAL  a live account whose latest portfolio snapshot (trading.portfolio_snapshots, every
--                             minute) is max_drawdown or more below its peak
--   rejection_burst MEDIUM    a live account with rejection_burst or more orders rejected within rejection_window
--                             of its clock
CREATE OR REPLACE FUNCTION ops.watch_conditions()
RETURNS TABLE (kind text, subject text, severity text, symbol text, account_id bigint, message text, details jsonb)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _st ops.health_settings;
BEGIN
  SELECT * INTO _st FROM ops.health_settings;
  RETURN QUERY
  SELECT 'job_failed'::text, j.kind || ':' || coalesce(j.job_id::text, j.job), 'HIGH'::text, NULL::text,
         NULL::bigint,
         format('%s job %s failed: %s failures in the last %s, %s in all; last run started %s',
                CASE j.kind WHEN 'pg_cron' THEN 'pg_cron' ELSE 'TimescaleDB' END,
                CASE WHEN j.job_id IS NULL THEN j.job ELSE format('%s (%s)', j.job_id, j.job) END,
                j.failures_recent, _st.failure_window, j.failures_total,
                to_char(j.last_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"')),
         jsonb_build_object('job_kind', j.kind, 'job', j.job, 'job_id', j.job_id, 'last_start', j.last_start,
                            'failures_recent', j.failures_recent, 'failures_total', j.failures_total,
                            'error', j.error)
  FROM ops.job_health() j
  WHERE j.failing;
  RETURN QUERY
  -- one incident per feed: a feed that dies makes all its series stale at once, and that is one thing to fix
  SELECT 'stale_data'::text, 'feed:' || g.feed_id, 'HIGH'::text, CASE WHEN g.n = 1 THEN g.symbols[1] END,
         NULL::bigint,
         CASE WHEN g.n = 1
              THEN ops.stale_message(g.symbols[1], g.iv, g.last_ts, g.age, g.feed_id, g.source)
              ELSE format('stale data: %s series of feed %s (%s, %s) have no new bar for %s or more: %s (last bar %s)',
                          g.n, g.feed_id, g.source, g.iv, date_trunc('second', g.age),
                          array_to_string(g.symbols[1:20], ', ') || CASE WHEN g.n > 20 THEN ', ...' ELSE '' END,
                          coalesce(to_char(g.last_ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"'), 'none yet'))
         END,
         jsonb_build_object('feed_id', g.feed_id, 'source', g.source, 'interval', g.iv, 'symbols', to_jsonb(g.symbols),
                            'stale', g.n, 'last_ts', g.last_ts, 'age_s', round(extract(epoch FROM g.age)),
                            'speed', g.speed)
  FROM (SELECT f.feed_id, min(f.source) AS source, min(f."interval") AS iv, min(f.speed) AS speed, count(*)::int AS n,
               array_agg(f.symbol ORDER BY f.symbol) AS symbols, max(f.last_ts) AS last_ts, min(f.age) AS age
        FROM ops.data_freshness(false) f
        WHERE f.expected AND f.stale
        GROUP BY f.feed_id) g;
  RETURN QUERY
  SELECT 'drawdown'::text, 'account:' || a.id, 'CRITICAL'::text, NULL::text, a.id,
         format('account %s: drawdown %s%% is beyond its limit %s%% (value %s, peak %s at %s)', a.name,
                round(s.drawdown * 100, 2), round(a.max_drawdown * 100, 2), round(s.total_value, 2),
                round(s.peak_value, 2), to_char(s.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"')),
         jsonb_build_object('account', a.name, 'drawdown', s.drawdown, 'max_drawdown', a.max_drawdown,
                            'total_value', s.total_value, 'peak_value', s.peak_value, 'snapshot_ts', s.ts)
  FROM trading.accounts a
  CROSS JOIN LATERAL (SELECT ps.ts, ps.drawdown, ps.total_value, ps.peak_value FROM trading.portfolio_snapshots ps
                      WHERE ps.account_id = a.id ORDER BY ps.ts DESC LIMIT 1) s
  WHERE a.kind = 'live' AND a.max_drawdown IS NOT NULL AND s.drawdown >= a.max_drawdown;
  RETURN QUERY
  SELECT 'rejection_burst'::text, 'account:' || a.id, 'MEDIUM'::text, NULL::text, a.id,
         format('account %s: %s orders rejected in the last %s (%s)', a.name, r.n, _st.rejection_window, r.codes),
         jsonb_build_object('account', a.name, 'rejected', r.n, 'window', _st.rejection_window, 'by_code', r.by_code,
                            'first_id', r.first_id, 'last_id', r.last_id)
  FROM trading.accounts a
  CROSS JOIN LATERAL (
    SELECT sum(c.n)::integer AS n, string_agg(c.reject_code || ' x' || c.n, ', ' ORDER BY c.n DESC, c.reject_code) AS codes,
           jsonb_object_agg(c.reject_code, c.n) AS by_code, min(c.first_id) AS first_id, max(c.last_id) AS last_id
    FROM (SELECT o.reject_code, count(*) AS n, min(o.id) AS first_id, max(o.id) AS last_id
          FROM trading.orders o
          WHERE o.account_id = a.id AND o.status = 'rejected'
            AND o.created_at > trading.account_now(a.id) - _st.rejection_window
          GROUP BY o.reject_code) c) r
  WHERE a.kind = 'live' AND r.n >= _st.rejection_burst;
END
$$;
REVOKE ALL ON FUNCTION ops.watch_conditions() FROM PUBLIC;
COMMENT ON FUNCTION ops.watch_conditions() IS
  'The conditions the watcher alerts on now: failed jobs (HIGH), stale live-fed series by feed (HIGH), live accounts beyond their drawdown limit (CRITICAL), rejection bursts (MEDIUM); each with its subject, message and figures.';

-- One run of the watcher: open an incident (and raise its alert) for each new condition, keep the open ones that
-- persist (last_seen_at, checks, the latest message and figures; no alert), close those that cleared (a LOW
-- resolved alert). Runs one at a time (an advisory lock): a manual run and the pg_cron one never both open the same
-- incident (the unique index would refuse it anyway). Returns {opened, closed, open}.
CREATE OR REPLACE FUNCTION ops.watch()
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _c record;
  _i ops.incidents;
  _alert bigint;
  _opened integer := 0;
  _closed integer := 0;
  _seen text[] := ARRAY[]::text[];  -- kind || ' ' || subject of the conditions found now
  _interrupted integer;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('pgtrade:ops.watch'));
  -- backtest runs left running by a killed backend or a server restart are marked failed first (within a minute of
  -- a restart: the watcher is the every-minute housekeeping job, one pg_cron slot instead of two)
  _interrupted := backtest.fail_interrupted_runs();
  FOR _c IN SELECT * FROM ops.watch_conditions() LOOP
    _seen := _seen || (_c.kind || ' ' || _c.subject);
    UPDATE ops.incidents i SET last_seen_at = now(), checks = i.checks + 1, message = _c.message, details = _c.details
    WHERE i.kind = _c.kind AND i.subject = _c.subject AND i.closed_at IS NULL;
    IF NOT FOUND THEN
      INSERT INTO ops.alerts (kind, severity, symbol, account_id, message, details)
      VALUES (_c.kind, _c.severity, _c.symbol, _c.account_id, _c.message, _c.details)
      RETURNING id INTO _alert;
      INSERT INTO ops.incidents (kind, subject, severity, symbol, account_id, message, details, alert_id)
      VALUES (_c.kind, _c.subject, _c.severity, _c.symbol, _c.account_id, _c.message, _c.details, _alert);
      _opened := _opened + 1;
    END IF;
  END LOOP;
  FOR _i IN SELECT i.* FROM ops.incidents i
            WHERE i.closed_at IS NULL
              AND NOT (i.kind || ' ' || i.subject = ANY (_seen))
            ORDER BY i.id LOOP
    INSERT INTO ops.alerts (kind, severity, symbol, account_id, message, details)
    VALUES (_i.kind, 'LOW', _i.symbol, _i.account_id,
            format('resolved after %s: %s', date_trunc('second', now() - _i.opened_at),
                   CASE _i.kind
                     WHEN 'job_failed' THEN format('job %s no longer failing (its last run succeeded, or it was removed)',
                                                   coalesce(_i.details->>'job_id', _i.details->>'job'))
                     WHEN 'stale_data' THEN format('feed %s (%s): %s', _i.details->>'feed_id', _i.details->>'source',
                       CASE WHEN EXISTS (SELECT FROM ops.fed_series s WHERE s.feed_id = (_i.details->>'feed_id')::bigint)
                            THEN 'its series are fresh again'
                            ELSE 'its series are no longer fed by it (it ended, or a new feed took them over)' END)
                     WHEN 'drawdown' THEN format('account %s is back within its drawdown limit', _i.details->>'account')
                     ELSE format('account %s: rejections back under the burst threshold', _i.details->>'account')
                   END),
            -- what was resolved (the incident's last figures), and that it is a resolution
            _i.details || jsonb_build_object('resolved', true, 'subject', _i.subject, 'incident_id', _i.id,
                                             'alert_id', _i.alert_id, 'opened_at', _i.opened_at, 'checks', _i.checks))
    RETURNING id INTO _alert;
    UPDATE ops.incidents i SET closed_at = now(), resolved_alert_id = _alert WHERE i.id = _i.id;
    _closed := _closed + 1;
  END LOOP;
  RETURN jsonb_build_object('opened', _opened, 'closed', _closed,
                            'open', (SELECT count(*) FROM ops.incidents i WHERE i.closed_at IS NULL),
                            'interrupted_backtests', _interrupted);
END
$$;
REVOKE ALL ON FUNCTION ops.watch() FROM PUBLIC;
COMMENT ON FUNCTION ops.watch() IS
  'The alert watcher (pg_cron, every minute): first marks backtest runs interrupted by a killed backend or a restart failed (backtest.fail_interrupted_runs); then one incident and one alert per new condition (ops.watch_conditions), nothing more while it persists, a LOW resolved alert when it clears. Returns {opened, closed, open, interrupted_backtests}.';
