-- The one feature definition: per-bar features over market.bars, read by training (ml/, through this function)
-- and by scoring in the database alike. No second copy exists anywhere.
--
-- No look-ahead: every feature at bar t is a window function over the series' bars up to and including t only
-- (lag() and ROWS ... PRECEDING AND CURRENT ROW frames; nothing looks forward). Labels (what happened after t) are
-- a separate function, ml.labels, which scoring never calls. tests/test_ml_features.py changes and deletes bars
-- after t and checks that no feature at or before t moves.
--
-- A bar is complete (complete = true) once its series has ml.feature_warmup() bars up to it; only complete bars are
-- trained on or scored. Prices are cast to double precision: features are model inputs (ONNX takes float32), not
-- money. Changing this file's features means raising ml.feature_version(): models record the version and the
-- names they were trained on, and scoring refuses a model whose features differ.
--
-- Speed (ml.features is what batch scoring costs): every rolling statistic is a difference of running sums,
-- sum over (t-k, t] = S_t - S_t-k, so the query needs three passes of ONE window definition (partition by symbol,
-- order by ts, rows from the series' start to the current row) instead of a window frame per statistic, each of
-- which PostgreSQL recomputes row by row (avg/stddev of float8 have no inverse transition). Volumes and their
-- squares are summed in numeric (exact: a flat volume keeps a zero spread, however large the volumes); the other
-- sums are float8 (closes, returns, gains, losses, true ranges: differences of sums lose ~1e-16 relative). The
-- counts come from the row's position (a frame near the series' start holds fewer rows).
-- tests/test_ml_scoring.py holds every feature equal to the straightforward formulas (numpy, from the raw bars)
-- within 1e-9 relative. Still no look-ahead: running sums and lags see the current row and earlier ones only.

CREATE OR REPLACE FUNCTION ml.feature_version()
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT 1 $$;
COMMENT ON FUNCTION ml.feature_version IS 'Version of the feature definition (ml.features); models record it.';

CREATE OR REPLACE FUNCTION ml.feature_warmup()
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT 50 $$;
COMMENT ON FUNCTION ml.feature_warmup IS 'Bars a series needs up to a bar (that bar included) before the bar''s features are complete.';

CREATE OR REPLACE FUNCTION ml.feature_names()
RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT ARRAY[
    'ret_1',          -- ln(c_t / c_t-1)
    'ret_5',          -- ln(c_t / c_t-5)
    'ret_10',         -- ln(c_t / c_t-10)
    'ret_20',         -- ln(c_t / c_t-20)
    'vol_10',         -- sample stddev of ret_1 over the last 10 bars
    'vol_20',         -- sample stddev of ret_1 over the last 20 bars
    'rsi_14',         -- (RSI(14) - 50) / 50, RSI from simple averages of gains and losses over 14 bars
    'sma_5_20',       -- SMA(5) / SMA(20) - 1
    'close_sma_20',   -- c_t / SMA(20) - 1
    'close_sma_50',   -- c_t / SMA(50) - 1
    'atr_14',         -- ATR(14) / c_t, ATR a simple average of true ranges
    'volume_z_20',    -- (v_t - mean) / stddev of volume over the last 20 bars; 0 when volume does not vary
    'range',          -- (h_t - l_t) / c_t
    'gap',            -- ln(o_t / c_t-1)
    'close_location'  -- (c_t - l_t) / (h_t - l_t) - 0.5; 0 when h_t = l_t
  ]::text[]
$$;
COMMENT ON FUNCTION ml.feature_names IS 'Names of the features, in the order of ml.features(...).x.';

-- The definition itself, in PL/pgSQL: market.bars is a hypertable of hundreds of chunks (the bundled daily
-- history: 244), and the query of a SQL function is planned for every call with its parameters unknown, so over
-- every chunk (about 60 ms: far more than computing one bar's features). Here the two reads of market.bars (where
-- each series starts, then its bars) are planned with the call's values (plan_cache_mode = force_custom_plan), so
-- TimescaleDB excludes the chunks outside the range while planning; the bars are handed over as arrays to the
-- computation, which reads no table and keeps one generic plan per backend. Measured on SPX's newest bar (244
-- chunks, dev cluster): 1.0 ms per call; 1.7 ms when the computation read market.bars itself with a custom plan,
-- 3.1 ms with a cached generic plan (its executor opens and excludes every chunk). Batch: ~95,000 rows/s either way.
-- ml.features (below) is the interface.
CREATE OR REPLACE FUNCTION internal.feature_rows(
  of_symbols text[], of_interval text, from_ts timestamptz, to_ts timestamptz)
RETURNS TABLE (symbol text, "interval" text, ts timestamptz, close numeric, atr double precision, complete boolean,
               x double precision[])
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_custom_plan
AS $$
#variable_conflict use_column
DECLARE
  _syms text[];
  _starts timestamptz[];  -- per series, its first bar used: warmup bars before from_ts, else its first bar
  _lo timestamptz;
  _near timestamptz;
  _b_sym text[];  -- the bars used, as arrays (fetched with a plan for the call's values)
  _b_ts timestamptz[];
  _b_close numeric[];
  _b_volume numeric[];
  _b_o float8[];
  _b_h float8[];
  _b_l float8[];
BEGIN
  _near := feature_rows.from_ts - 3 * ml.feature_warmup()
           * (SELECT iv.step FROM market.intervals iv WHERE iv.code = feature_rows.of_interval) - interval '4 days';
  IF _near IS NULL THEN
    RETURN;  -- no such interval: no bars
  END IF;
  -- first within a window that holds the warmup bars unless the series has gaps (3 x warmup steps + 4 days: a
  -- weekend between two sessions), so that only the chunks of that window are read; else over all of its history
  SELECT array_agg(q.sym), array_agg(q.start_ts) INTO _syms, _starts
  FROM (SELECT DISTINCT u.sym,
               (SELECT b0.ts FROM market.bars b0
                WHERE b0.symbol = u.sym AND b0.interval = feature_rows.of_interval
                  AND b0.ts < feature_rows.from_ts
                  AND b0.ts >= _near
                ORDER BY b0.ts DESC OFFSET ml.feature_warmup() - 1 LIMIT 1) AS start_ts
        FROM unnest(feature_rows.of_symbols) u(sym)) q;
  IF _syms IS NULL THEN
    RETURN;
  END IF;
  IF array_position(_starts, NULL) IS NOT NULL THEN
    SELECT array_agg(q.sym), array_agg(q.start_ts) INTO _syms, _starts
    FROM (SELECT u.sym,
                 coalesce(u.start_ts,
                          (SELECT b0.ts FROM market.bars b0
                           WHERE b0.symbol = u.sym AND b0.interval = feature_rows.of_interval
                             AND b0.ts < feature_rows.from_ts
                           ORDER BY b0.ts DESC OFFSET ml.feature_warmup() - 1 LIMIT 1), '-infinity') AS start_ts
          FROM unnest(_syms, _starts) u(sym, start_ts)) q;
  END IF;
  _lo := (SELECT min(u.start_ts) FROM unnest(_starts) u(start_ts));
  -- when a series has fewer bars before from_ts than the warmup, it starts at its first bar, and row_number() is
  -- then the bar's position in the series
  SELECT array_agg(b.symbol), array_agg(b.ts), array_agg(b.close), array_agg(b.volume), array_agg(b.open::float8),
         array_agg(b.high::float8), array_agg(b.low::float8)
    INTO _b_sym, _b_ts, _b_close, _b_volume, _b_o, _b_h, _b_l
  FROM unnest(_syms, _starts) s(sym, start_ts)
  JOIN market.bars b ON b.symbol = s.sym AND b.interval = feature_rows.of_interval
                    AND b.ts >= s.start_ts AND b.ts <= feature_rows.to_ts
                    AND b.ts >= _lo;  -- with the call's values: TimescaleDB reads only the chunks from _lo on
  -- the computation reads no table: one cached plan per backend (planning it costs more than running it on a bar)
  PERFORM set_config('plan_cache_mode', 'force_generic_plan', true);  -- until this function returns (its SET)
  RETURN QUERY
  WITH s0 AS (
    -- the bars, each value cast once (numeric to float8 goes through text: not cheap)
    SELECT b.symbol, b.ts, b.close AS close_n, b.volume AS vn, s.start_ts > '-infinity' AS has_warmup,
      b.o, b.h, b.l, b.close::float8 AS c, b.volume::float8 AS v
    FROM unnest(_b_sym, _b_ts, _b_close, _b_volume, _b_o, _b_h, _b_l) b(symbol, ts, close, volume, o, h, l)
    JOIN unnest(_syms, _starts) s(sym, start_ts) ON s.sym = b.symbol
  ), s1 AS (
    -- one window (one sort, one WindowAgg): position, lagged closes, running sums of the close and volume (volume
    -- in numeric: exact, so a flat volume has a zero spread however large the volumes)
    SELECT s0.*,
      row_number() OVER w AS rn,
      lag(s0.c, 1) OVER w AS c1, lag(s0.c, 5) OVER w AS c5, lag(s0.c, 10) OVER w AS c10, lag(s0.c, 20) OVER w AS c20,
      sum(s0.c) OVER w AS sc, sum(s0.vn) OVER w AS sv, sum(s0.vn * s0.vn) OVER w AS svv
    FROM s0
    WINDOW w AS (PARTITION BY s0.symbol ORDER BY s0.ts ROWS UNBOUNDED PRECEDING)
  ), s2 AS (
    -- the same window again over the lags: returns, gains, losses and true ranges with their running sums, and
    -- the close and volume sums lagged by each window length
    SELECT s1.*,
      lag(s1.sc, 5, 0::float8) OVER w AS sc5, lag(s1.sc, 20, 0::float8) OVER w AS sc20,
      lag(s1.sc, 50, 0::float8) OVER w AS sc50,
      lag(s1.sv, 20, 0) OVER w AS sv20, lag(s1.svv, 20, 0) OVER w AS svv20,
      sum(coalesce(ln(s1.c / s1.c1), 0)) OVER w AS sr, sum(coalesce(ln(s1.c / s1.c1) ^ 2, 0)) OVER w AS srr,
      sum(greatest(s1.c - s1.c1, 0)) OVER w AS sg, sum(greatest(s1.c1 - s1.c, 0)) OVER w AS sl,
      sum(greatest(s1.h - s1.l, abs(s1.h - s1.c1), abs(s1.l - s1.c1))) OVER w AS st
    FROM s1
    WINDOW w AS (PARTITION BY s1.symbol ORDER BY s1.ts ROWS UNBOUNDED PRECEDING)
  ), s3 AS (
    -- and once more: the windowed sums as differences of running sums
    SELECT s2.*,
      s2.sr - lag(s2.sr, 10, 0::float8) OVER w AS r_10, s2.srr - lag(s2.srr, 10, 0::float8) OVER w AS rr_10,
      s2.sr - lag(s2.sr, 20, 0::float8) OVER w AS r_20, s2.srr - lag(s2.srr, 20, 0::float8) OVER w AS rr_20,
      s2.sg - lag(s2.sg, 14, 0::float8) OVER w AS g_14, s2.sl - lag(s2.sl, 14, 0::float8) OVER w AS l_14,
      s2.st - lag(s2.st, 14, 0::float8) OVER w AS t_14
    FROM s2
    WINDOW w AS (PARTITION BY s2.symbol ORDER BY s2.ts ROWS UNBOUNDED PRECEDING)
  ), s4 AS (
    SELECT s3.symbol, s3.ts, s3.close_n, s3.has_warmup, s3.rn, s3.o, s3.h, s3.l, s3.c, s3.v, s3.c1, s3.c5, s3.c10, s3.c20, ln(s3.c / s3.c1) AS r1,
      (s3.sc - s3.sc5) / least(s3.rn, 5) AS sma5,
      (s3.sc - s3.sc20) / least(s3.rn, 20) AS sma20,
      (s3.sc - s3.sc50) / least(s3.rn, 50) AS sma50,
      (s3.sv - s3.sv20)::float8 / least(s3.rn, 20) AS v_mean20,
      CASE WHEN s3.rn > 1 THEN sqrt(greatest(((s3.svv - s3.svv20)::float8 - ((s3.sv - s3.sv20)::float8) ^ 2 / least(s3.rn, 20)) / (least(s3.rn, 20) - 1), 0)) END AS v_sd20,
      CASE WHEN s3.rn > 2 THEN sqrt(greatest((s3.rr_10 - s3.r_10 ^ 2 / least(s3.rn - 1, 10)) / (least(s3.rn - 1, 10) - 1), 0)) END AS vol10,
      CASE WHEN s3.rn > 2 THEN sqrt(greatest((s3.rr_20 - s3.r_20 ^ 2 / least(s3.rn - 1, 20)) / (least(s3.rn - 1, 20) - 1), 0)) END AS vol20,
      s3.g_14 / least(s3.rn, 14) AS avg_gain, s3.l_14 / least(s3.rn, 14) AS avg_loss, s3.t_14 / least(s3.rn, 14) AS atr14
    FROM s3
  )
  SELECT s4.symbol, feature_rows.of_interval, s4.ts, s4.close_n, s4.atr14,
    (s4.has_warmup OR s4.rn >= ml.feature_warmup()) AS complete,
    ARRAY[
      s4.r1,
      ln(s4.c / s4.c5),
      ln(s4.c / s4.c10),
      ln(s4.c / s4.c20),
      s4.vol10,
      s4.vol20,
      CASE WHEN s4.avg_gain + s4.avg_loss > 0 THEN (100 * s4.avg_gain / (s4.avg_gain + s4.avg_loss) - 50) / 50 ELSE 0 END,
      s4.sma5 / s4.sma20 - 1,
      s4.c / s4.sma20 - 1,
      s4.c / s4.sma50 - 1,
      s4.atr14 / s4.c,
      CASE WHEN s4.v_sd20 > 0 THEN (s4.v - s4.v_mean20) / s4.v_sd20 ELSE 0 END,
      (s4.h - s4.l) / s4.c,
      ln(s4.o / s4.c1),
      CASE WHEN s4.h > s4.l THEN (s4.c - s4.l) / (s4.h - s4.l) - 0.5 ELSE 0 END
    ]::double precision[] AS x
  FROM s4
  WHERE s4.ts >= feature_rows.from_ts
  ORDER BY s4.symbol, s4.ts;
END
$$;
COMMENT ON FUNCTION internal.feature_rows IS
  'Internal: the body of ml.features (same arguments and rows), in PL/pgSQL for its cached generic plan.';
REVOKE ALL ON FUNCTION internal.feature_rows(text[], text, timestamptz, timestamptz) FROM PUBLIC;

CREATE OR REPLACE FUNCTION ml.features(
  symbols text[], "interval" text, from_ts timestamptz DEFAULT '-infinity', to_ts timestamptz DEFAULT 'infinity')
RETURNS TABLE (symbol text, "interval" text, ts timestamptz, close numeric, atr double precision, complete boolean,
               x double precision[])
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT * FROM internal.feature_rows(features.symbols, features."interval", features.from_ts, features.to_ts)
$$;
COMMENT ON FUNCTION ml.features IS
  'Features of the bars of these symbols and interval in [from_ts, to_ts], each from that bar and earlier bars only; x in the order of ml.feature_names(); complete once the series has ml.feature_warmup() bars.';

CREATE OR REPLACE FUNCTION ml.labels(
  symbols text[], "interval" text, from_ts timestamptz DEFAULT '-infinity', to_ts timestamptz DEFAULT 'infinity',
  horizon integer DEFAULT 1)
RETURNS TABLE (symbol text, "interval" text, ts timestamptz, fwd_return double precision, up boolean)
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  -- What happened after t: the log return from c_t to c_t+horizon (NULL where the series has no bar t+horizon yet,
  -- including every bar after to_ts - horizon bars). Training only; scoring never reads it.
  SELECT l.symbol, labels."interval", l.ts, l.fwd, l.fwd > 0
  FROM (
    SELECT b.symbol, b.ts, ln(lead(b.close::float8, labels.horizon) OVER w / b.close::float8) AS fwd
    FROM market.bars b
    WHERE b.symbol = ANY (labels.symbols) AND b.interval = labels."interval"
      AND b.ts >= labels.from_ts AND b.ts <= labels.to_ts
    WINDOW w AS (PARTITION BY b.symbol ORDER BY b.ts)
  ) l
  WHERE l.fwd IS NOT NULL
  ORDER BY l.symbol, l.ts
$$;
COMMENT ON FUNCTION ml.labels IS
  'Training labels: the log return over the next horizon bars and its direction, for bars in [from_ts, to_ts] whose future bar is also in range. Never used by scoring.';
