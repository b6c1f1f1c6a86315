-- Anomaly detection on closed bars (issue 12, section 6): price, gap, volume and pattern anomalies, their severity,
-- and the alerts HIGH and CRITICAL ones raise. One set-based detector, internal.detect_anomalies, runs for newly
-- closed bars (the first step of internal.on_closed_bars, in the ingest transaction) and on demand over history
-- (ml.detect_anomalies). docs/ml-anomalies.md documents the scores, thresholds and their calibration.
--
-- No look-ahead: a bar's scores compare it with the ml.anomaly_window() bars before it, never with itself or a
-- later bar, so a bar scores the same live and in a re-run over history.
--
-- The rolling median: PostgreSQL has no rolling median window function. A window array_agg(...) OVER (ROWS n
-- PRECEDING AND 1 PRECEDING) with two percentile_cont sorts of each array cost ~125 us per bar (94 % of a 1-minute
-- backfill's ingest time, issue 14's scaling bench), a LATERAL percentile_cont over the previous n bars of
-- market.bars ten times more. internal.window_stats (PL/Python, numpy; db/superuser/2_2_ml_python.sql) computes the
-- statistics of every bar of a series in one call and holds their rule; docs/ml-anomalies.md has the figures.

CREATE OR REPLACE FUNCTION ml.anomaly_window()
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT 120 $$;
COMMENT ON FUNCTION ml.anomaly_window IS
  'Bars before a bar that its price, gap and volume anomaly scores are measured against (a bar is scored once the series has this many bars before it with a return).';

-- Rule: the severity of an anomaly score under its thresholds; NULL (no anomaly) below low.
CREATE OR REPLACE FUNCTION ml.anomaly_severity(
  score double precision, low double precision, medium double precision, high double precision,
  critical double precision)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT CASE WHEN anomaly_severity.score >= anomaly_severity.critical THEN 'CRITICAL'
              WHEN anomaly_severity.score >= anomaly_severity.high THEN 'HIGH'
              WHEN anomaly_severity.score >= anomaly_severity.medium THEN 'MEDIUM'
              WHEN anomaly_severity.score >= anomaly_severity.low THEN 'LOW' END
$$;
COMMENT ON FUNCTION ml.anomaly_severity IS
  'Severity of a score: CRITICAL >= critical, HIGH >= high, MEDIUM >= medium, LOW >= low, else NULL (no anomaly).';

-- Rule: which anomalies raise an alert. Every anomaly is recorded; a HIGH or CRITICAL one raises an alert only
-- when its bar is live: the bar ended no longer than max(3 bar steps, 4 days) before the feed's clock
-- (ml.feed_now(): now(), or the simulated time of a replayed feed). Loading a CSV of 2008 records 2008's anomalies
-- without 200 alerts about the past; the 4 days let a daily bar loaded after a long weekend still alert.
CREATE OR REPLACE FUNCTION ml.anomaly_alerts_due(ts timestamptz, step interval)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT anomaly_alerts_due.ts + anomaly_alerts_due.step
         >= ml.feed_now() - greatest(3 * anomaly_alerts_due.step, interval '4 days')
$$;
COMMENT ON FUNCTION ml.anomaly_alerts_due IS
  'Whether a HIGH/CRITICAL anomaly of the bar at ts (of this step) raises an alert: its bar ended within max(3 steps, 4 days) of ml.feed_now(). Older bars (a history load) are recorded without alerts.';

-- The detector: the bars of series i in (after_ts[i], upto_ts[i]], scored against the ml.anomaly_window() bars
-- before each. Records every anomaly (a re-run over the same bars updates score and severity in place), raises an
-- alert for each newly recorded HIGH/CRITICAL anomaly that ml.anomaly_alerts_due, and returns the number of
-- anomalies recorded or updated.
--   price   |r_t - median(r)| / sigma(r), r = ln(close_t / close_t-1), median and sigma (ml.robust_stats) over
--           the previous ml.anomaly_window() returns
--   gap     |g_t - median(g)| / sigma(r), g = ln(open_t / close_t-1): the gap is measured in units of the
--           series' return volatility, not of its own spread; many daily series (SPX before 2007) carry an
--           open equal to the previous close on most days, and a gap's own MAD of 0 would turn a 0.1 %
--           gap into a score in the thousands
--   volume  v_t / median(v) over the previous ml.anomaly_window() bars; not scored where that median is 0
--           (series without volume, e.g. indices)
--   pattern -decision_function of the series' active anomaly model (ml.models task 'anomaly', the newest
--           activated whose symbols hold the symbol, same interval, same feature version and names) on the
--           bar's ml.features vector, through internal.onnx_run; complete feature rows only
-- Thresholds: the symbol's own ml.anomaly_thresholds row of the type, else the '*' row; enabled = false skips.
CREATE OR REPLACE FUNCTION internal.detect_anomalies(
  symbols text[], intervals text[], after_ts timestamptz[], upto_ts timestamptz[])
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- Custom plans only: each query's time bounds then exclude hypertable chunks when it is planned. (A cached generic
-- plan, which PostgreSQL otherwise builds on a statement's sixth run to compare, spans every chunk: measured 50 ms
-- once per session, against 3 ms for a one-bar call.)
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
  _n integer;
  _start timestamptz[] := '{}'::timestamptz[];
  _t timestamptz;
  _lo timestamptz;
  _hi timestamptz;
BEGIN
  -- Each series' window start: the bar ml.anomaly_window() bars before its first bar in range (returns need one
  -- more close). Looked up first within a generous bound (4 x the window's length in steps, plus a week): a query
  -- on market.bars whose time bounds are known when it is planned touches only the hypertable chunks inside them,
  -- where an open bound plans every chunk (measured on SPX 1d, 244 chunks: 50 ms planning for a one-bar range).
  -- A series sparser than that is looked up again without the bound.
  FOR i IN 1 .. coalesce(cardinality(detect_anomalies.symbols), 0) LOOP
    _t := NULL;
    IF detect_anomalies.after_ts[i] > '-infinity' THEN
      _lo := detect_anomalies.after_ts[i]
             - (4 * (ml.anomaly_window() + 1)) * market.interval_step(detect_anomalies.intervals[i]) - interval '7 days';
      SELECT b0.ts INTO _t FROM market.bars b0
      WHERE b0.symbol = detect_anomalies.symbols[i] AND b0.interval = detect_anomalies.intervals[i]
        AND b0.ts <= detect_anomalies.after_ts[i] AND b0.ts >= _lo
      ORDER BY b0.ts DESC OFFSET ml.anomaly_window() LIMIT 1;
      IF _t IS NULL THEN
        SELECT b0.ts INTO _t FROM market.bars b0
        WHERE b0.symbol = detect_anomalies.symbols[i] AND b0.interval = detect_anomalies.intervals[i]
          AND b0.ts <= detect_anomalies.after_ts[i]
        ORDER BY b0.ts DESC OFFSET ml.anomaly_window() LIMIT 1;
      END IF;
    END IF;
    _start := _start || coalesce(_t, '-infinity'::timestamptz);
  END LOOP;
  SELECT min(x) INTO _lo FROM unnest(_start) x;
  SELECT max(x) INTO _hi FROM unnest(detect_anomalies.upto_ts) x;
  IF _lo IS NULL THEN
    RETURN 0;
  END IF;

  WITH s AS MATERIALIZED (
    SELECT u.symbol, u.iv, u.after_ts, u.upto_ts, u.start_ts
    FROM unnest(detect_anomalies.symbols, detect_anomalies.intervals, detect_anomalies.after_ts,
                detect_anomalies.upto_ts, _start) u(symbol, iv, after_ts, upto_ts, start_ts)
  ), b AS (
    SELECT s.symbol, s.iv, s.after_ts, b.ts, b.volume::float8 AS v,
      ln(b.close::float8 / lag(b.close::float8) OVER w) AS r,
      ln(b.open::float8 / lag(b.close::float8) OVER w) AS g
    FROM s
    JOIN market.bars b ON b.symbol = s.symbol AND b.interval = s.iv AND b.ts >= s.start_ts AND b.ts <= s.upto_ts
                      AND b.ts >= _lo AND b.ts <= _hi  -- (known when planned: the chunks in between only)
    WINDOW w AS (PARTITION BY s.symbol, s.iv ORDER BY b.ts)
  ), bn AS (
    -- the window of each bar: how many returns it holds (NULL and NaN are none), how many bars
    SELECT b.*, count(b.r) FILTER (WHERE b.r <> 'NaN'::float8) OVER p AS r_n, count(*) OVER p AS v_n
    FROM b
    WINDOW p AS (PARTITION BY b.symbol, b.iv ORDER BY b.ts ROWS BETWEEN ml.anomaly_window() PRECEDING AND 1 PRECEDING)
  ), arr AS (
    -- each series in time order; the bars up to after_ts only serve as the first scored bars' windows
    SELECT b.symbol, b.iv, array_agg(b.ts ORDER BY b.ts) AS ts, array_agg(b.r ORDER BY b.ts) AS r,
      array_agg(b.g ORDER BY b.ts) AS g, array_agg(b.v ORDER BY b.ts) AS v, array_agg(b.r_n ORDER BY b.ts) AS r_n,
      array_agg(b.v_n ORDER BY b.ts) AS v_n, (count(*) FILTER (WHERE b.ts <= b.after_ts))::int + 1 AS from_pos
    FROM bn b
    GROUP BY b.symbol, b.iv
  ), st AS (
    -- each scored bar with the statistics of the ml.anomaly_window() bars before it (the rule: internal.window_stats)
    SELECT a.symbol, a.iv, u.ts, u.r, u.g, u.v, u.r_med, u.r_sigma, u.r_n, u.g_med, u.v_med, u.v_n
    FROM arr a
    CROSS JOIN LATERAL internal.window_stats(a.r, a.g, a.v, a.from_pos, ml.anomaly_window()) w
    CROSS JOIN LATERAL unnest(a.ts[a.from_pos:], a.r[a.from_pos:], a.g[a.from_pos:], a.v[a.from_pos:],
                              a.r_n[a.from_pos:], a.v_n[a.from_pos:], w.r_med, w.r_sigma, w.g_med, w.v_med)
                       u(ts, r, g, v, r_n, v_n, r_med, r_sigma, g_med, v_med)
  ), m AS (
    -- the series' active anomaly model, if any
    SELECT DISTINCT ON (s.symbol, s.iv) s.symbol, s.iv, s.after_ts, s.upto_ts, mo.id AS model_id
    FROM s
    JOIN ml.models mo ON mo.task = 'anomaly' AND mo.status = 'active' AND s.symbol = ANY (mo.symbols)
                     AND mo.interval = s.iv AND mo.feature_version = ml.feature_version()
                     AND mo.features = ml.feature_names()
    ORDER BY s.symbol, s.iv, mo.activated_at DESC NULLS LAST, mo.id DESC
  ), g AS (
    -- one ml.features call per range shared by several series (a live round closes the same minute of each):
    -- measured 4.3 ms for 10 series' bars, against 1.2 ms per series called one by one
    SELECT m.iv, m.after_ts, m.upto_ts, array_agg(m.symbol) AS syms FROM m GROUP BY m.iv, m.after_ts, m.upto_ts
  ), fx AS MATERIALIZED (
    -- computed once, on its own (joined to the models afterwards, so no join can call it once per model row)
    SELECT f.symbol, f.interval AS iv, f.ts, f.x
    FROM g CROSS JOIN LATERAL ml.features(g.syms, g.iv, g.after_ts, g.upto_ts) f
    WHERE f.ts > g.after_ts AND f.complete AND array_position(f.x, NULL) IS NULL
  ), f AS (
    SELECT m.model_id, fx.symbol, fx.iv, fx.ts, fx.x
    FROM fx JOIN m ON m.symbol = fx.symbol AND m.iv = fx.iv AND fx.ts > m.after_ts AND fx.ts <= m.upto_ts
  ), batch AS (
    -- one ONNX call per model over all its bars (rows in the order of the key arrays)
    SELECT f.model_id, array_agg(f.symbol ORDER BY f.symbol, f.ts) AS syms, array_agg(f.iv ORDER BY f.symbol, f.ts) AS ivs,
      array_agg(f.ts ORDER BY f.symbol, f.ts) AS tss,
      internal.onnx_run(f.model_id, array_agg(f.x ORDER BY f.symbol, f.ts), cardinality(ml.feature_names())) AS out
    FROM f
    GROUP BY f.model_id
  ), cand AS (
    -- every score with what its details are made of (x: the bar's return, gap, volume or the model's decision);
    -- the details are built for the recorded anomalies only (measured: building them for every scored bar was a
    -- third of a bulk load's detection time)
    SELECT st.symbol, st.iv, st.ts, 'price' AS type, abs(st.r - st.r_med) / st.r_sigma AS score,
      NULL::bigint AS model_id, st.r AS x, st.r_med AS med, st.r_sigma AS sigma, st.r_n AS n
    FROM st
    WHERE st.r IS NOT NULL AND st.r_n >= ml.anomaly_window() AND st.r_sigma > 0
    UNION ALL
    SELECT st.symbol, st.iv, st.ts, 'gap', abs(st.g - st.g_med) / st.r_sigma, NULL, st.g, st.g_med, st.r_sigma, st.r_n
    FROM st
    WHERE st.g IS NOT NULL AND st.r_n >= ml.anomaly_window() AND st.r_sigma > 0
    UNION ALL
    SELECT st.symbol, st.iv, st.ts, 'volume', st.v / st.v_med, NULL, st.v, st.v_med, NULL, st.v_n
    FROM st
    WHERE st.v_n >= ml.anomaly_window() AND st.v_med > 0
    UNION ALL
    SELECT k.symbol, k.iv, k.ts, 'pattern', -k.d, batch.model_id, k.d, NULL, NULL, NULL
    FROM batch, unnest(batch.syms, batch.ivs, batch.tss, batch.out) k(symbol, iv, ts, d)
  ), th AS (
    -- the thresholds of each symbol and type: the symbol's own row, else the '*' row
    SELECT DISTINCT ON (sy.symbol, t.type) sy.symbol, t.type, t.enabled, t.low, t.medium, t.high, t.critical
    FROM (SELECT DISTINCT s.symbol FROM s) sy
    JOIN ml.anomaly_thresholds t ON t.symbol IN (sy.symbol, '*')
    ORDER BY sy.symbol, t.type, t.symbol = '*'
  ), rated AS (
    SELECT c.*, ml.anomaly_severity(c.score, th.low, th.medium, th.high, th.critical) AS severity
    FROM cand c
    JOIN th ON th.symbol = c.symbol AND th.type = c.type AND th.enabled
  ), rec AS (
    INSERT INTO ml.anomalies AS a (symbol, "interval", ts, type, score, severity, model_id, details)
    SELECT r.symbol, r.iv, r.ts, r.type, r.score, r.severity, r.model_id,
      CASE r.type
        WHEN 'price' THEN jsonb_build_object('return', r.x, 'z', (r.x - r.med) / r.sigma, 'median', r.med,
                                             'sigma', r.sigma, 'window', r.n)
        WHEN 'gap' THEN jsonb_build_object('gap', r.x, 'z', (r.x - r.med) / r.sigma, 'median', r.med,
                                           'sigma', r.sigma, 'window', r.n)
        WHEN 'volume' THEN jsonb_build_object('volume', r.x, 'median', r.med, 'window', r.n)
        ELSE jsonb_build_object('decision', r.x)
      END
    FROM rated r
    WHERE r.severity IS NOT NULL
    ON CONFLICT (symbol, "interval", ts, type) DO UPDATE
      SET score = excluded.score, severity = excluded.severity, model_id = excluded.model_id,
          details = excluded.details, detected_at = excluded.detected_at
    RETURNING a.id, a.symbol, a."interval", a.ts, a.type, a.score, a.severity, (a.xmax = 0) AS inserted
  ), alerted AS (
    INSERT INTO ops.alerts (kind, severity, symbol, message, details, anomaly_id)
    SELECT 'anomaly', rec.severity, rec.symbol,
      format('%s %s anomaly on %s %s bar %s: score %s', rec.severity, rec.type, rec.symbol, rec."interval",
             to_char(rec.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), round(rec.score::numeric, 2)),
      jsonb_build_object('interval', rec."interval", 'ts', rec.ts, 'type', rec.type, 'score', rec.score),
      rec.id
    FROM rec
    JOIN market.intervals iv ON iv.code = rec."interval"
    WHERE rec.inserted AND rec.severity IN ('HIGH', 'CRITICAL') AND ml.anomaly_alerts_due(rec.ts, iv.step)
    ORDER BY rec.id
  )
  -- (a data-modifying CTE runs whether or not the query reads it)
  SELECT count(*) INTO _n FROM rec;
  RETURN _n;
END
$$;
REVOKE ALL ON FUNCTION internal.detect_anomalies(text[], text[], timestamptz[], timestamptz[]) FROM PUBLIC;
COMMENT ON FUNCTION internal.detect_anomalies IS
  'Detect price, gap, volume and pattern anomalies on series i''s bars in (after_ts[i], upto_ts[i]]; record them, alert on new live HIGH/CRITICAL ones; returns the anomalies recorded or updated.';

-- On demand over history: the closed bars of one series in [from_ts, to_ts]. Bars after the series' newest closed
-- bar (ml.closed_upto) are left to the live path.
CREATE OR REPLACE FUNCTION ml.detect_anomalies(
  symbol text, "interval" text, from_ts timestamptz DEFAULT '-infinity', to_ts timestamptz DEFAULT 'infinity')
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _upto timestamptz;
BEGIN
  PERFORM market.interval_step(detect_anomalies."interval");  -- 22023 for an unknown interval
  IF detect_anomalies.from_ts IS NULL OR detect_anomalies.to_ts IS NULL
     OR detect_anomalies.from_ts > detect_anomalies.to_ts THEN
    RAISE EXCEPTION 'bad range for anomaly detection: from % to %', detect_anomalies.from_ts, detect_anomalies.to_ts
      USING ERRCODE = 'ML030', HINT = 'give from_ts <= to_ts (both may be omitted: the whole series)';
  END IF;
  IF NOT EXISTS (SELECT FROM market.bars b
                 WHERE b.symbol = detect_anomalies.symbol AND b.interval = detect_anomalies."interval") THEN
    RAISE EXCEPTION 'no % bars of symbol %', detect_anomalies."interval", detect_anomalies.symbol
      USING ERRCODE = 'ML031', HINT = 'see pgtrade summary for the series the database holds';
  END IF;
  _upto := least(detect_anomalies.to_ts, ml.closed_upto(detect_anomalies.symbol, detect_anomalies."interval"));
  IF _upto IS NULL OR _upto < detect_anomalies.from_ts THEN
    RETURN 0;
  END IF;
  RETURN internal.detect_anomalies(ARRAY[detect_anomalies.symbol], ARRAY[detect_anomalies."interval"],
                                   ARRAY[detect_anomalies.from_ts - interval '1 microsecond'], ARRAY[_upto]);
END
$$;
COMMENT ON FUNCTION ml.detect_anomalies IS
  'Detect anomalies on the closed bars of one series in [from_ts, to_ts] (history, or after changing thresholds); returns the anomalies recorded or updated. Alerts only for live bars (ml.anomaly_alerts_due).';
