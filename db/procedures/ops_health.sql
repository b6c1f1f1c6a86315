-- Health: the rules of api.health / `pgtrade health` and of the conditions the alert watcher raises (ops.watch,
-- db/procedures/ops_watch.sql), each in one function here. Thresholds: ops.health_settings. docs/operations.md
-- ("Health", "Alerts") states the rules.

-- Live feeds register the series they are responsible for (pgtrade stream calls these; ops.fed_series).
CREATE OR REPLACE FUNCTION ops.feed_started(source text, symbols text[], "interval" text, speed numeric DEFAULT 1,
                                            client text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _id bigint;
BEGIN
  INSERT INTO ops.feeds (source, "interval", speed, symbols, client)
  VALUES (feed_started.source, feed_started."interval", feed_started.speed,
          ARRAY(SELECT DISTINCT upper(btrim(s)) FROM unnest(feed_started.symbols) s WHERE btrim(s) <> ''),
          feed_started.client)
  RETURNING id INTO _id;
  -- the newest feed of a series takes it over (a feed that died keeps nothing a new one now feeds)
  INSERT INTO ops.fed_series AS f (symbol, "interval", feed_id)
  SELECT s, feed_started."interval", _id FROM unnest((SELECT fd.symbols FROM ops.feeds fd WHERE fd.id = _id)) s
  ON CONFLICT ON CONSTRAINT fed_series_pkey DO UPDATE SET feed_id = excluded.feed_id;
  RETURN _id;
END
$$;
REVOKE ALL ON FUNCTION ops.feed_started(text, text[], text, numeric, text) FROM PUBLIC;
COMMENT ON FUNCTION ops.feed_started(text, text[], text, numeric, text) IS
  'A live feed starts: record the run (ops.feeds) and make its series expected fresh (ops.fed_series, taken over from any earlier feed). Returns the feed id for ops.feed_ended.';

CREATE OR REPLACE FUNCTION ops.feed_ended(feed_id bigint, stopped_by text)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _n integer;
BEGIN
  UPDATE ops.feeds f SET ended_at = now(), stopped_by = feed_ended.stopped_by
  WHERE f.id = feed_ended.feed_id AND f.ended_at IS NULL;
  DELETE FROM ops.fed_series s WHERE s.feed_id = feed_ended.feed_id;
  GET DIAGNOSTICS _n = ROW_COUNT;
  RETURN _n;
END
$$;
REVOKE ALL ON FUNCTION ops.feed_ended(bigint, text) FROM PUBLIC;
COMMENT ON FUNCTION ops.feed_ended(bigint, text) IS
  'A live feed ended as asked (duration, max bars, source exhausted, Ctrl-C, SIGTERM): its series are no longer expected fresh. Returns how many series it released. A feed that dies never calls this: its series go stale.';

-- Every pg_cron job of this database and every TimescaleDB policy or user job (id >= 1000): last run, last status,
-- last success, failures in the failure window and in all kept history, and whether it is failing. The rule: a job
-- is failing while its last finished run failed (a run in progress is judged by the one before it; a job that has
-- not finished a run yet is not failing). error: the last failure's message (for operators; api.health leaves it out).
CREATE OR REPLACE FUNCTION ops.job_health()
RETURNS TABLE (kind text, job text, job_id bigint, schedule text, active boolean, hypertable text, last_status text,
               last_start timestamptz, last_end timestamptz, last_success timestamptz, next_start timestamptz,
               failures_recent bigint, failures_total bigint, failing boolean, error text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _since timestamptz := now() - (SELECT s.failure_window FROM ops.health_settings s);
BEGIN
  RETURN QUERY
  SELECT 'pg_cron'::text, c.jobname, NULL::bigint, c.schedule, c.active, NULL::text, c.last_status, c.last_start,
         c.last_end, c.last_success, NULL::timestamptz, c.failures_recent, c.failures_total,
         coalesce(c.last_status = 'failed', false),
         CASE WHEN c.last_status = 'failed' THEN left(c.last_message, 500) END
  FROM ops.cron_jobs(_since) c;
  RETURN QUERY
  SELECT 'timescaledb'::text, j.proc_schema || '.' || j.proc_name, j.job_id::bigint, j.schedule_interval::text,
         j.scheduled, j.hypertable_schema || '.' || j.hypertable_name, s.last_run_status::text,
         s.last_run_started_at, s.last_run_started_at + s.last_run_duration, s.last_successful_finish, s.next_start,
         coalesce(e.recent, 0), coalesce(s.total_failures, 0),
         coalesce(s.last_run_status IS DISTINCT FROM 'Success' AND s.last_run_status IS NOT NULL, false),
         CASE WHEN s.last_run_status IS DISTINCT FROM 'Success' AND s.last_run_status IS NOT NULL
              THEN left(e.last_error, 500) END
  FROM timescaledb_information.jobs j
  LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id
  LEFT JOIN (SELECT x.job_id, count(*) AS recent,
                    (array_agg(coalesce(x.sqlerrcode || ': ', '') || x.message ORDER BY x.start_time DESC))[1] AS last_error
             FROM ops.timescaledb_job_errors(_since) x GROUP BY x.job_id) e ON e.job_id = j.job_id
  WHERE j.job_id >= 1000  -- policies and user jobs; ids below 1000 are TimescaleDB's own housekeeping
  ORDER BY 2, 3;
END
$$;
REVOKE ALL ON FUNCTION ops.job_health() FROM PUBLIC;
COMMENT ON FUNCTION ops.job_health() IS
  'Every pg_cron job of this database and TimescaleDB policy/user job: last run and status, last success, failures (recent: within ops.health_settings.failure_window; total), failing (its last finished run failed) and the last error text.';

-- How many bars of a series are due and missing at `at`, counting at most `up_to`: walking back from the newest
-- closed slot (a bar of this step whose close ts + step is at or before `at`) to the slot after the last bar
-- (`after`), the slots in the instrument's trading session (market.is_trading_time, the one calendar rule). The walk
-- stops at up_to slots found and goes back at most 20,000 slots (two weeks of minutes): a series silent for
-- longer than that is past any threshold anyway.
CREATE OR REPLACE FUNCTION ops.bars_due(symbol text, step interval, after timestamptz, at timestamptz, up_to integer)
RETURNS integer
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT count(*)::integer FROM (
    SELECT 1
    FROM generate_series(date_bin(bars_due.step, bars_due.at, timestamptz '2000-01-03') - bars_due.step,
                         greatest(bars_due.after + bars_due.step,
                                  date_bin(bars_due.step, bars_due.at, timestamptz '2000-01-03') - 20000 * bars_due.step),
                         -bars_due.step) g(ts)
    WHERE g.ts > bars_due.after AND market.is_trading_time(bars_due.symbol, g.ts, bars_due.step)
    LIMIT bars_due.up_to) x
$$;
REVOKE ALL ON FUNCTION ops.bars_due(text, interval, timestamptz, timestamptz, integer) FROM PUBLIC;
COMMENT ON FUNCTION ops.bars_due(text, interval, timestamptz, timestamptz, integer) IS
  'Bars of a series (this step) due by `at` after its last bar `after`: closed slots in the instrument''s trading session (market.is_trading_time), newest first, counted up to up_to.';

-- The newest bar of an instrument none of whose series ml.watermarks knows (bars loaded before issue 12's
-- closed-bar trigger): every chunk of the hypertable is planned (on the dev cluster's 245 compressed chunks, six
-- such instruments: 55-82 ms). PL/pgSQL, so that a query calling it never plans this unless it runs it.
CREATE OR REPLACE FUNCTION ops.newest_bar_unwatched(symbol text, OUT "interval" text, OUT last_ts timestamptz,
                                                    OUT last_ingested_at timestamptz, OUT last_source text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  SELECT b."interval", b.ts, b.ingested_at, b.source INTO "interval", last_ts, last_ingested_at, last_source
  FROM market.bars b WHERE b.symbol = newest_bar_unwatched.symbol ORDER BY b.ts DESC LIMIT 1;
END
$$;
REVOKE ALL ON FUNCTION ops.newest_bar_unwatched(text) FROM PUBLIC;
COMMENT ON FUNCTION ops.newest_bar_unwatched(text) IS
  'The newest bar (interval, time, arrival, source) of an instrument, over every chunk; for instruments whose series ml.watermarks does not know (ops.data_freshness).';

-- The freshness rule. Expected fresh: the series a live feed is responsible for (ops.fed_series) of active
-- instruments. A series fed in real time (speed 1) is stale when its stale_bars most recent bars that are due are
-- all missing: walking back from now over the bar slots that have closed (ts + step <= now) and fall in the
-- instrument's trading session (market.is_trading_time: an equity's session hours and weekdays, the fx week, crypto
-- around the clock), at least stale_bars of them lie after the series' last bar (or, before its first bar, after
-- the feed started). So an equity's daily bar is not stale over a weekend, its minute bars not overnight, and a
-- crypto series is stale minutes after its feed stops. A feed faster than real time stamps its bars in the
-- simulated past: it is stale when no bar of the series arrived for max(stale_wall, stale_bars x step / speed).
-- with_unfed adds every other active instrument's newest bar (expected false, never stale): the bundled history,
-- one-off loads. A series that is no longer fed (its feed ended) is not expected fresh.
CREATE OR REPLACE FUNCTION ops.data_freshness(with_unfed boolean DEFAULT false)
RETURNS TABLE (symbol text, "interval" text, asset_class text, expected boolean, feed_id bigint, source text,
               speed numeric, last_ts timestamptz, last_arrival timestamptz, age interval, bars_due integer,
               stale boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _k integer;
  _wall interval;
BEGIN
  SELECT s.stale_bars, s.stale_wall INTO _k, _wall FROM ops.health_settings s;
  RETURN QUERY
  WITH fed AS (
    SELECT fs.symbol, fs."interval", i.asset_class, f.id AS feed_id, f.source, f.speed, f.started_at, iv.step,
           b.last_ts, b.last_ingested_at AS last_arrival
    FROM ops.fed_series fs
    JOIN ops.feeds f ON f.id = fs.feed_id
    JOIN market.instruments i ON i.symbol = fs.symbol AND i.active
    JOIN market.intervals iv ON iv.code = fs."interval"
    LEFT JOIN ml.watermarks w ON w.symbol = fs.symbol AND w."interval" = fs."interval"
    CROSS JOIN LATERAL ml.newest_bar(fs.symbol, fs."interval", w.ts) b
  )
  SELECT fed.symbol, fed."interval", fed.asset_class, true, fed.feed_id, fed.source, fed.speed, fed.last_ts,
         fed.last_arrival, greatest(now() - coalesce(fed.last_ts + fed.step, fed.started_at), interval '0'), d.due,
         CASE WHEN fed.speed = 1 THEN d.due >= _k
              ELSE now() - coalesce(fed.last_arrival, fed.started_at) > greatest(_wall, _k * fed.step / fed.speed) END
  FROM fed
  CROSS JOIN LATERAL (SELECT ops.bars_due(fed.symbol, fed.step, coalesce(fed.last_ts, fed.started_at - fed.step), now(), _k)
                      AS due) d
  UNION ALL
  SELECT i.symbol, l."interval", i.asset_class, false, NULL::bigint, l.last_source, NULL::numeric, l.last_ts,
         l.last_ingested_at, greatest(now() - (l.last_ts + iv.step), interval '0'), NULL::integer, NULL::boolean
  FROM market.instruments i
  -- its series: every series ingested since issue 12 has a row in ml.watermarks (the closed-bar trigger adds it);
  -- an instrument with none (loaded before) is searched as a whole
  CROSS JOIN LATERAL (SELECT w."interval", nb.last_ts, nb.last_ingested_at, nb.last_source FROM ml.watermarks w
                      CROSS JOIN LATERAL ml.newest_bar(w.symbol, w."interval", w.ts) nb
                      WHERE w.symbol = i.symbol AND nb.last_ts IS NOT NULL
                      UNION ALL
                      SELECT u."interval", u.last_ts, u.last_ingested_at, u.last_source
                      FROM ops.newest_bar_unwatched(i.symbol) u
                      WHERE NOT EXISTS (SELECT FROM ml.watermarks w WHERE w.symbol = i.symbol)
                        AND u.last_ts IS NOT NULL
                      ORDER BY 2 DESC LIMIT 1) l
  JOIN market.intervals iv ON iv.code = l."interval"
  WHERE with_unfed AND i.active
    AND NOT EXISTS (SELECT FROM ops.fed_series fs WHERE fs.symbol = i.symbol)
  ORDER BY 4 DESC, 1, 2;
END
$$;
REVOKE ALL ON FUNCTION ops.data_freshness(boolean) FROM PUBLIC;
COMMENT ON FUNCTION ops.data_freshness(boolean) IS
  'Freshness of the series live feeds are responsible for (expected fresh): last bar, last arrival, age (since the last bar closed; 0 while it is forming), bars due and missing (at most stale_bars counted), stale. with_unfed adds the newest bar of every other active instrument (not expected fresh, never stale).';

-- Active models and their age against the retraining schedule: an active direction model is overdue when neither
-- its activation nor a scheduled retraining run of its name (ml.retrain_all, daily) is more recent than
-- retrain_every + retrain_grace; the last scheduled run failing is a problem too. Anomaly models are not retrained
-- on a schedule: their age is shown, never a problem.
CREATE OR REPLACE FUNCTION ops.model_health()
RETURNS TABLE (name text, version integer, task text, kind text, symbols text[], "interval" text,
               activated_at timestamptz, age interval, last_retrain timestamptz, last_retrain_decision text,
               overdue boolean, retrain_failed boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT m.name, m.version, m.task, m.kind, m.symbols, m."interval", coalesce(m.activated_at, m.created_at),
         now() - coalesce(m.activated_at, m.created_at), r.finished_at, r.decision,
         m.task = 'direction'
           AND greatest(coalesce(m.activated_at, m.created_at), coalesce(r.finished_at, '-infinity'))
               < now() - (st.retrain_every + st.retrain_grace),
         m.task = 'direction' AND coalesce(r.decision = 'failed', false)
  FROM ml.models m
  CROSS JOIN ops.health_settings st
  LEFT JOIN LATERAL (SELECT t.finished_at, t.decision FROM ml.training_runs t
                     WHERE t.name = m.name AND t.trigger = 'schedule' AND t.finished_at IS NOT NULL
                     ORDER BY t.finished_at DESC LIMIT 1) r ON true
  WHERE m.status = 'active'
  ORDER BY m.name
$$;
REVOKE ALL ON FUNCTION ops.model_health() FROM PUBLIC;
COMMENT ON FUNCTION ops.model_health() IS
  'Active models with their age and last scheduled retraining; overdue when a direction model was neither activated nor retrained by schedule within retrain_every + retrain_grace; retrain_failed when its last scheduled retraining failed.';

-- The whole health document (pgtrade health; api.health is its anonymous-safe wrapper). Status:
--   failing  - a required extension is missing; a job whose last finished run failed; a live-fed series stale.
--   degraded - a job whose last run succeeded but that failed within the failure window; an active direction model
--              overdue for retraining or whose last scheduled retraining failed.
--   ok       - none of these.
-- Open alerts are reported by severity but change no status: each condition the watcher alerts on that concerns the
-- system is checked here directly, and the others (anomalies, account drawdowns and rejection bursts) are market
-- or account events, not faults of pgtrade.
CREATE OR REPLACE FUNCTION ops.health()
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _jobs jsonb;
  _ext jsonb;
  _fresh jsonb;
  _models jsonb;
  _alerts jsonb;
  _incidents jsonb;
  _bar jsonb;
  _problems jsonb;
  _cron_here boolean := to_regnamespace('cron') IS NOT NULL;
  _sched record;
BEGIN
  SELECT * INTO _sched FROM ops.job_schedulers();
  SELECT coalesce(jsonb_agg(to_jsonb(j) ORDER BY j.kind, j.job, j.job_id), '[]') INTO _jobs FROM ops.job_health() j;
  -- required: what pgtrade's code needs in this database; pg_cron only in the database it serves
  SELECT jsonb_agg(jsonb_build_object('name', r.name, 'required', r.required, 'present', e.extversion IS NOT NULL,
                                      'version', e.extversion) ORDER BY r.name)
  INTO _ext
  FROM (VALUES ('timescaledb', true), ('plpython3u', true), ('plpgsql', true),
               ('pg_cron', coalesce(_sched.cron_database = current_database(), false)))
       r(name, required)
  LEFT JOIN pg_extension e ON e.extname = r.name;
  SELECT coalesce(jsonb_agg(to_jsonb(f)), '[]') INTO _fresh FROM ops.data_freshness(true) f;
  SELECT coalesce(jsonb_agg(to_jsonb(m)), '[]') INTO _models FROM ops.model_health() m;
  SELECT jsonb_build_object(
           'open', jsonb_build_object('CRITICAL', count(*) FILTER (WHERE a.severity = 'CRITICAL'),
                                      'HIGH', count(*) FILTER (WHERE a.severity = 'HIGH'),
                                      'MEDIUM', count(*) FILTER (WHERE a.severity = 'MEDIUM'),
                                      'LOW', count(*) FILTER (WHERE a.severity = 'LOW')),
           'open_total', count(*), 'oldest_open', min(a.raised_at))
  INTO _alerts
  FROM ops.alerts a WHERE a.acknowledged_at IS NULL;
  SELECT coalesce(jsonb_object_agg(k.kind, k.n), '{}') INTO _incidents
  FROM (SELECT i.kind, count(*) AS n FROM ops.incidents i WHERE i.closed_at IS NULL GROUP BY i.kind) k;
  SELECT jsonb_build_object('symbol', b.symbol, 'interval', b.interval, 'ts', b.ts) INTO _bar
  FROM market.bars b ORDER BY b.ts DESC LIMIT 1;

  SELECT coalesce(jsonb_agg(p.problem || jsonb_build_object('status', p.status)
                            ORDER BY p.status = 'degraded', p.kind, p.name), '[]') INTO _problems
  FROM (
    SELECT 'failing' AS status, 'extension' AS kind, x->>'name' AS name,
           jsonb_build_object('kind', 'extension', 'name', x->'name',
                              'message', format('required extension %s is not installed', x->>'name')) AS problem
    FROM jsonb_array_elements(_ext) x
    WHERE (x->>'required')::boolean AND NOT (x->>'present')::boolean
    UNION ALL
    SELECT 'failing', 'scheduler', w.name,
           jsonb_build_object('kind', 'scheduler', 'name', w.name,
                              'message', format('%s is not running: its jobs do not run', w.name))
    FROM (VALUES ('pg_cron launcher', _sched.cron_database = current_database() AND NOT _sched.pg_cron_launcher),
                 ('TimescaleDB job scheduler', NOT _sched.timescaledb_scheduler)) w(name, down)
    WHERE w.down AND NOT pg_is_in_recovery()  -- a hot standby runs no scheduler: both start when it is promoted
    UNION ALL
    SELECT 'failing', 'pg_cron', j->>'job',
           jsonb_build_object('kind', 'pg_cron', 'job', j->'job', 'last_status', j->'last_status',
                              'last_start', j->'last_start', 'failures_recent', j->'failures_recent',
                              'failures_total', j->'failures_total', 'error', j->'error',
                              'message', format('pg_cron job %s: last run failed (started %s; %s failures in the last %s)',
                                                j->>'job', to_char((j->>'last_start')::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'),
                                                j->>'failures_recent', (SELECT s.failure_window FROM ops.health_settings s)))
    FROM jsonb_array_elements(_jobs) j
    WHERE j->>'kind' = 'pg_cron' AND (j->>'failing')::boolean
    UNION ALL
    SELECT 'failing', 'timescaledb', j->>'job' || ' ' || (j->>'job_id'),
           jsonb_build_object('kind', 'timescaledb', 'job_id', j->'job_id', 'proc', j->'job',
                              'hypertable', j->'hypertable', 'last_status', j->'last_status',
                              'last_start', j->'last_start', 'total_failures', j->'failures_total',
                              'failures_recent', j->'failures_recent', 'error', j->'error',
                              'message', format('TimescaleDB job %s (%s): last run failed (started %s; %s failures in the last %s, %s in all)',
                                                j->>'job_id', j->>'job', to_char((j->>'last_start')::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'),
                                                j->>'failures_recent', (SELECT s.failure_window FROM ops.health_settings s),
                                                j->>'failures_total'))
    FROM jsonb_array_elements(_jobs) j
    WHERE j->>'kind' = 'timescaledb' AND (j->>'failing')::boolean
    UNION ALL
    SELECT 'degraded', 'job_recent_failures', j->>'job' || ' ' || coalesce(j->>'job_id', ''),
           jsonb_build_object('kind', 'job_recent_failures', 'job_kind', j->'kind', 'job', j->'job',
                              'job_id', j->'job_id', 'failures_recent', j->'failures_recent',
                              'message', format('%s job %s failed %s times in the last %s (its last run succeeded)',
                                                j->>'kind', coalesce(j->>'job_id', j->>'job'), j->>'failures_recent',
                                                (SELECT s.failure_window FROM ops.health_settings s)))
    FROM jsonb_array_elements(_jobs) j
    WHERE NOT (j->>'failing')::boolean AND (j->>'failures_recent')::bigint > 0
    UNION ALL
    SELECT 'failing', 'stale_data', (f->>'symbol') || '/' || (f->>'interval'),
           jsonb_build_object('kind', 'stale_data', 'symbol', f->'symbol', 'interval', f->'interval',
                              'last_ts', f->'last_ts', 'age', f->'age', 'feed_id', f->'feed_id',
                              'message', ops.stale_message(f->>'symbol', f->>'interval', (f->>'last_ts')::timestamptz,
                                                           (f->>'age')::interval, (f->>'feed_id')::bigint, f->>'source'))
    FROM jsonb_array_elements(_fresh) f
    WHERE (f->>'stale')::boolean
    UNION ALL
    SELECT 'degraded', 'model', m->>'name',
           jsonb_build_object('kind', 'model', 'name', m->'name', 'version', m->'version', 'age', m->'age',
                              'last_retrain', m->'last_retrain',
                              'message', CASE WHEN (m->>'retrain_failed')::boolean
                                THEN format('model %s: its last scheduled retraining failed (%s)', m->>'name',
                                            to_char((m->>'last_retrain')::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"'))
                                ELSE format('model %s v%s: not retrained for %s (schedule: every %s)', m->>'name',
                                            m->>'version', date_trunc('minute', now() - greatest((m->>'activated_at')::timestamptz,
                                                           coalesce((m->>'last_retrain')::timestamptz, '-infinity'))),
                                            (SELECT s.retrain_every FROM ops.health_settings s)) END)
    FROM jsonb_array_elements(_models) m
    WHERE (m->>'overdue')::boolean OR (m->>'retrain_failed')::boolean
  ) p;

  RETURN jsonb_build_object(
    'status', CASE WHEN _problems @> '[{"status": "failing"}]' THEN 'failing'
                   WHEN jsonb_array_length(_problems) > 0 THEN 'degraded'
                   ELSE 'ok' END,
    'problems', _problems,
    'time', now(),
    'server', jsonb_build_object('up', true, 'started_at', pg_postmaster_start_time(),
                                 'uptime', date_trunc('second', now() - pg_postmaster_start_time()),
                                 'in_recovery', pg_is_in_recovery(), 'database', current_database()),
    'server_version', current_setting('server_version'),
    'timescaledb_version', (SELECT e.extversion FROM pg_extension e WHERE e.extname = 'timescaledb'),
    'extensions', _ext,
    'schedulers', jsonb_build_object('pg_cron_database', _sched.cron_database,
                                     'pg_cron_launcher', _sched.pg_cron_launcher,
                                     'timescaledb_scheduler', _sched.timescaledb_scheduler),
    'pg_cron', CASE WHEN _cron_here THEN jsonb_build_object('jobs', coalesce(
                 (SELECT jsonb_agg(jsonb_build_object('job', j->'job', 'schedule', j->'schedule', 'active', j->'active',
                                                      'last_status', j->'last_status', 'last_start', j->'last_start',
                                                      'last_end', j->'last_end', 'last_success', j->'last_success',
                                                      'failures_recent', j->'failures_recent',
                                                      'failures_total', j->'failures_total', 'error', j->'error')
                                   ORDER BY j->>'job')
                  FROM jsonb_array_elements(_jobs) j WHERE j->>'kind' = 'pg_cron'), '[]')) END,
    'timescaledb_jobs', coalesce(
      (SELECT jsonb_agg(jsonb_build_object('job_id', j->'job_id', 'proc', j->'job', 'hypertable', j->'hypertable',
                                           'scheduled', j->'active', 'schedule_interval', j->'schedule',
                                           'last_status', j->'last_status', 'last_start', j->'last_start',
                                           'last_success', j->'last_success', 'next_start', j->'next_start',
                                           'total_failures', j->'failures_total',
                                           'failures_recent', j->'failures_recent', 'error', j->'error')
                        ORDER BY (j->>'job_id')::bigint)
       FROM jsonb_array_elements(_jobs) j WHERE j->>'kind' = 'timescaledb'), '[]'),
    'freshness', _fresh,
    'models', _models,
    'alerts', _alerts,
    'incidents', _incidents,
    'latest_bar', _bar);
END
$$;
REVOKE ALL ON FUNCTION ops.health() FROM PUBLIC;
COMMENT ON FUNCTION ops.health() IS
  'The health document (pgtrade health): status ok/degraded/failing, problems (kind, message, figures), server, extensions, every pg_cron and TimescaleDB job with failures and last error, data freshness per series (expected fresh: live-fed), active models and their age, open alerts by severity, open incidents by kind, latest bar. Error texts included: operators only (api.health leaves them out).';

-- The stale-data message, one wording for health and the alert.
CREATE OR REPLACE FUNCTION ops.stale_message(symbol text, "interval" text, last_ts timestamptz, age interval,
                                             feed_id bigint, source text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT format('stale data: %s %s has no new bar for %s (last bar %s; feed %s, %s)',
                stale_message.symbol, stale_message."interval", date_trunc('second', stale_message.age),
                coalesce(to_char(stale_message.last_ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"'), 'none yet'),
                stale_message.feed_id, stale_message.source)
$$;
REVOKE ALL ON FUNCTION ops.stale_message(text, text, timestamptz, interval, bigint, text) FROM PUBLIC;
COMMENT ON FUNCTION ops.stale_message(text, text, timestamptz, interval, bigint, text) IS
  'The message of a stale live-fed series (health problem and stale_data alert).';
