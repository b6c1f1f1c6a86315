-- The rows a model is trained and evaluated on: the complete bars' features (ml.features) with their next-bar
-- labels (ml.labels), in time order. The ml package reads exactly this (ml/data.py TRAINING_SQL), in a client and in
-- the server; nothing in Python computes a feature. A bar whose next bar lies after to_ts has no label and is left
-- out, so nothing of a window's training rows looks past to_ts.
CREATE OR REPLACE FUNCTION ml.training_rows(
  symbols text[], "interval" text, from_ts timestamptz DEFAULT '-infinity', to_ts timestamptz DEFAULT 'infinity')
RETURNS TABLE (symbol text, ts timestamptz, x double precision[], fwd_return double precision, up boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT f.symbol, f.ts, f.x, l.fwd_return, l.up
  FROM ml.features(training_rows.symbols, training_rows."interval", training_rows.from_ts, training_rows.to_ts) f
  JOIN ml.labels(training_rows.symbols, training_rows."interval", training_rows.from_ts, training_rows.to_ts, 1) l
    ON l.symbol = f.symbol AND l.ts = f.ts
  WHERE f.complete
  ORDER BY f.ts, f.symbol
$$;
COMMENT ON FUNCTION ml.training_rows IS
  'Training rows of a window: complete bars'' features (ml.features) and next-bar labels (ml.labels) in [from_ts, to_ts], by time then symbol.';
