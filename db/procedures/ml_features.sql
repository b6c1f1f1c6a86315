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

CREATE OR REPLACE FUNCTION ml.features(
  symbols text[], "interval" text, from_ts timestamptz DEFAULT '-infinity', to_ts timestamptz DEFAULT 'infinity')
RETURNS TABLE (symbol text, "interval" text, ts timestamptz, close numeric, atr double precision, complete boolean,
               x double precision[])
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH series AS (
    -- each series from warmup bars before from_ts, so the first bars in range have their full history; when it has
    -- fewer, from its first bar, and row_number() is then the bar's position in the series
    SELECT DISTINCT s.sym,
      coalesce((SELECT b0.ts FROM market.bars b0
                WHERE b0.symbol = s.sym AND b0.interval = features."interval" AND b0.ts < features.from_ts
                ORDER BY b0.ts DESC OFFSET ml.feature_warmup() - 1 LIMIT 1), '-infinity') AS start_ts
    FROM unnest(features.symbols) s(sym)
  ), b AS (
    SELECT b.symbol, b.ts, b.close AS close_n, s.start_ts > '-infinity' AS has_warmup,
           b.open::float8 AS o, b.high::float8 AS h, b.low::float8 AS l, b.close::float8 AS c, b.volume::float8 AS v
    FROM series s
    JOIN market.bars b ON b.symbol = s.sym AND b.interval = features."interval"
                      AND b.ts >= s.start_ts AND b.ts <= features.to_ts
  ), w1 AS (
    SELECT b.*,
      row_number() OVER w AS rn,
      lag(b.c, 1) OVER w AS c1, lag(b.c, 5) OVER w AS c5, lag(b.c, 10) OVER w AS c10, lag(b.c, 20) OVER w AS c20,
      avg(b.c) OVER (w ROWS 4 PRECEDING) AS sma5,
      avg(b.c) OVER (w ROWS 19 PRECEDING) AS sma20,
      avg(b.c) OVER (w ROWS 49 PRECEDING) AS sma50,
      avg(b.v) OVER (w ROWS 19 PRECEDING) AS v_mean20,
      stddev_samp(b.v) OVER (w ROWS 19 PRECEDING) AS v_sd20
    FROM b
    WINDOW w AS (PARTITION BY b.symbol ORDER BY b.ts)
  ), w2 AS (
    SELECT w1.*,
      ln(w1.c / w1.c1) AS r1,
      greatest(w1.c - w1.c1, 0) AS gain, greatest(w1.c1 - w1.c, 0) AS loss,
      greatest(w1.h - w1.l, abs(w1.h - w1.c1), abs(w1.l - w1.c1)) AS tr
    FROM w1
  ), w3 AS (
    SELECT w2.*,
      stddev_samp(w2.r1) OVER (w ROWS 9 PRECEDING) AS vol10,
      stddev_samp(w2.r1) OVER (w ROWS 19 PRECEDING) AS vol20,
      avg(w2.gain) OVER (w ROWS 13 PRECEDING) AS avg_gain,
      avg(w2.loss) OVER (w ROWS 13 PRECEDING) AS avg_loss,
      avg(w2.tr) OVER (w ROWS 13 PRECEDING) AS atr14
    FROM w2
    WINDOW w AS (PARTITION BY w2.symbol ORDER BY w2.ts)
  )
  SELECT w3.symbol, features."interval", w3.ts, w3.close_n, w3.atr14,
    (w3.has_warmup OR w3.rn >= ml.feature_warmup()) AS complete,
    ARRAY[
      w3.r1,
      ln(w3.c / w3.c5),
      ln(w3.c / w3.c10),
      ln(w3.c / w3.c20),
      w3.vol10,
      w3.vol20,
      CASE WHEN w3.avg_gain + w3.avg_loss > 0 THEN (100 * w3.avg_gain / (w3.avg_gain + w3.avg_loss) - 50) / 50 ELSE 0 END,
      w3.sma5 / w3.sma20 - 1,
      w3.c / w3.sma20 - 1,
      w3.c / w3.sma50 - 1,
      w3.atr14 / w3.c,
      CASE WHEN w3.v_sd20 > 0 THEN (w3.v - w3.v_mean20) / w3.v_sd20 ELSE 0 END,
      (w3.h - w3.l) / w3.c,
      ln(w3.o / w3.c1),
      CASE WHEN w3.h > w3.l THEN (w3.c - w3.l) / (w3.h - w3.l) - 0.5 ELSE 0 END
    ]::double precision[] AS x
  FROM w3
  WHERE w3.ts >= features.from_ts
  ORDER BY w3.symbol, w3.ts
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
