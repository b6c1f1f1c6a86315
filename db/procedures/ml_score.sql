-- Scoring: the active direction models over closed bars, into ml.signals.
--
-- Set-based: one ml.features call per group of series with the same interval and range (the live step's series
-- usually share one), one internal.onnx_run call per model over all of its rows. Used by the live step
-- (internal.on_closed_bars -> internal.score_bars, in the ingest transaction) and on demand (ml.score).
--
-- Rules, each in one place below:
--   signal      BUY when P(up) >= the model's buy_threshold, SELL when P(up) <= its sell_threshold, else HOLD
--               (ml.signal_of);
--   confidence  |2 P(up) - 1|: the distance of P(up) from 0.5 as a share of the distance to the far end (0 or 1),
--               so 0 at a coin toss and 1 at certainty (ml.signal_confidence);
--   brackets    BUY: stop-loss = close - a x ATR, take-profit = close + b x ATR; SELL mirrored; HOLD none. a and b
--               are the model's params stop_loss_atr and take_profit_atr (defaults 2 and 3, ml.bracket_multiple),
--               ATR is the feature definition's ATR(14); levels are rounded to the instrument's tick, and a
--               stop-loss that would not be positive is left out (ml.bracket_level).

CREATE OR REPLACE FUNCTION ml.signal_of(probability double precision, buy_threshold double precision,
                                        sell_threshold double precision)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT CASE WHEN signal_of.probability >= signal_of.buy_threshold THEN 'BUY'
              WHEN signal_of.probability <= signal_of.sell_threshold THEN 'SELL'
              ELSE 'HOLD' END
$$;
COMMENT ON FUNCTION ml.signal_of IS
  'The signal rule: BUY when P(up) >= buy_threshold, SELL when P(up) <= sell_threshold, else HOLD.';

CREATE OR REPLACE FUNCTION ml.signal_confidence(probability double precision)
RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT round(abs(2 * signal_confidence.probability - 1)::numeric, 6) $$;
COMMENT ON FUNCTION ml.signal_confidence IS
  'Confidence of a signal, 0..1: |2 P(up) - 1|, the distance of P(up) from 0.5 over the distance to the far end (0 or 1); 6 decimals.';

CREATE OR REPLACE FUNCTION ml.bracket_multiple(params jsonb, which text)
RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT coalesce((bracket_multiple.params ->> (bracket_multiple.which || '_atr'))::numeric,
                  CASE bracket_multiple.which WHEN 'stop_loss' THEN 2 WHEN 'take_profit' THEN 3 END)
$$;
COMMENT ON FUNCTION ml.bracket_multiple IS
  'ATR multiple of a signal''s stop-loss (which = stop_loss: model param stop_loss_atr, default 2) or take-profit (take_profit: take_profit_atr, default 3).';

CREATE OR REPLACE FUNCTION ml.bracket_level(signal text, which text, close double precision, atr double precision,
                                            multiple double precision, tick numeric)
RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  -- in float8 up to the count of ticks (numeric arithmetic per bar cost more than the rest of scoring), then exact
  SELECT CASE WHEN bracket_level.signal IN ('BUY', 'SELL') AND bracket_level.atr > 0 THEN
           nullif(greatest(round((bracket_level.close
                                  + CASE WHEN (bracket_level.signal = 'BUY') = (bracket_level.which = 'take_profit')
                                         THEN 1 ELSE -1 END * bracket_level.multiple * bracket_level.atr)
                                 / bracket_level.tick::float8)::numeric * bracket_level.tick, 0), 0)
         END
$$;
COMMENT ON FUNCTION ml.bracket_level IS
  'A signal''s stop-loss (which = stop_loss) or take-profit (take_profit): close -/+ multiple x ATR for a BUY (mirrored for a SELL), rounded to the tick; NULL for HOLD, without an ATR, or when not positive.';

-- The compatible active direction models (task direction, status active, trained on the current feature
-- definition) of any of these series. A model whose feature version or list differs is refused by the callers.
CREATE OR REPLACE FUNCTION internal.incompatible_model(symbols text[], intervals text[])
RETURNS ml.models
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _m ml.models;
BEGIN
  -- (PL/pgSQL: its plan is kept; a SQL function would plan this on every prediction)
  SELECT m.* INTO _m FROM ml.models m
  WHERE m.task = 'direction' AND m.status = 'active'
    AND (m.feature_version <> ml.feature_version() OR m.features IS DISTINCT FROM ml.feature_names())
    AND EXISTS (SELECT FROM unnest(incompatible_model.symbols, incompatible_model.intervals) s(symbol, iv)
                WHERE s.iv = m."interval" AND s.symbol = ANY (m.symbols))
  ORDER BY m.id LIMIT 1;
  RETURN _m;
END
$$;
COMMENT ON FUNCTION internal.incompatible_model IS
  'Internal: an active direction model of these series whose feature version or feature list is not the current definition''s (NULL when none).';

-- Score series i's closed bars in (after_ts[i], upto_ts[i]] with every compatible active direction model of it,
-- without writing anything: the rows ml.signals would hold. PL/pgSQL for its cached plan (a SQL function's query is
-- planned on every call: ~1 ms of a one-bar prediction). The bars must be closed (the callers bound upto_ts by
-- ml.closed_upto); only complete feature rows are scored.
CREATE OR REPLACE FUNCTION internal.scored(symbols text[], intervals text[], after_ts timestamptz[],
                                           upto_ts timestamptz[])
RETURNS TABLE (model_id bigint, symbol text, "interval" text, ts timestamptz, probability double precision,
               confidence numeric, signal text, close numeric, atr numeric, stop_loss numeric,
               take_profit numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan  -- no hypertable here (ml.features plans its own): plan once per backend
AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
  WITH m AS MATERIALIZED (
    SELECT m.id, m."interval", m.symbols, m.buy_threshold, m.sell_threshold,
           ml.bracket_multiple(m.params, 'stop_loss')::float8 AS sl_mult,
           ml.bracket_multiple(m.params, 'take_profit')::float8 AS tp_mult
    FROM ml.models m
    WHERE m.task = 'direction' AND m.status = 'active'
      AND m.feature_version = ml.feature_version() AND m.features = ml.feature_names()
  ), s AS (
    SELECT u.symbol, u.iv, u.after_ts, u.upto_ts
    FROM unnest(scored.symbols, scored.intervals, scored.after_ts, scored.upto_ts) u(symbol, iv, after_ts, upto_ts)
    WHERE u.upto_ts > u.after_ts
      AND EXISTS (SELECT FROM m WHERE m."interval" = u.iv AND u.symbol = ANY (m.symbols))
  ), g AS (
    SELECT s.iv, s.after_ts, s.upto_ts, array_agg(DISTINCT s.symbol) AS syms FROM s GROUP BY s.iv, s.after_ts, s.upto_ts
  ), f AS MATERIALIZED (
    SELECT f.symbol, f."interval", f.ts, f.close, f.atr, f.x
    FROM g CROSS JOIN LATERAL ml.features(g.syms, g.iv, g.after_ts + interval '1 microsecond', g.upto_ts) f
    WHERE f.complete
  ), p AS (
    -- per model, its rows in arrays and one onnx_run over all of them (a 2-D array: one row of features per bar);
    -- unnest puts each output back beside its bar
    SELECT a.model_id, u.symbol, u."interval", u.ts, u.close, u.atr, u.prob
    FROM (SELECT m.id AS model_id, array_agg(f.x ORDER BY f.symbol, f.ts) AS xs,
                 array_agg(f.symbol ORDER BY f.symbol, f.ts) AS syms, array_agg(f.ts ORDER BY f.symbol, f.ts) AS tss,
                 array_agg(f.close ORDER BY f.symbol, f.ts) AS closes, array_agg(f.atr ORDER BY f.symbol, f.ts) AS atrs,
                 m."interval" AS iv
          FROM m JOIN f ON f."interval" = m."interval" AND f.symbol = ANY (m.symbols)
          GROUP BY m.id, m."interval") a
    CROSS JOIN LATERAL unnest(a.syms, array_fill(a.iv, ARRAY[cardinality(a.syms)]), a.tss, a.closes, a.atrs,
                              internal.onnx_run(a.model_id, a.xs, cardinality(ml.feature_names())))
                       u(symbol, "interval", ts, close, atr, prob)
  )
  SELECT r.model_id, r.symbol, r."interval", r.ts, q.prob, ml.signal_confidence(q.prob), q.sig, r.close, r.atr::numeric,
         ml.bracket_level(q.sig, 'stop_loss', r.close::float8, r.atr, m.sl_mult, t.tick),
         ml.bracket_level(q.sig, 'take_profit', r.close::float8, r.atr, m.tp_mult, t.tick)
  FROM p r
  JOIN m ON m.id = r.model_id
  LEFT JOIN market.instruments i ON i.symbol = r.symbol
  CROSS JOIN LATERAL (SELECT coalesce(i.tick_size, 0.01) AS tick) t
  CROSS JOIN LATERAL (SELECT least(greatest(r.prob, 0), 1) AS prob) q0
  CROSS JOIN LATERAL (SELECT q0.prob, ml.signal_of(q0.prob, m.buy_threshold, m.sell_threshold) AS sig) q;
END
$$;
COMMENT ON FUNCTION internal.scored IS
  'Internal: the signals of series i''s complete bars in (after_ts[i], upto_ts[i]] by every compatible active direction model of the series, not written.';

-- Score and record (ml.signals; a bar already scored by a model keeps its first signal). With strict, a model of
-- these series that was trained on another feature definition is an error (ML020); without (the live step, inside
-- the ingest transaction, which must not lose the bars), it is skipped with a warning. Returns the rows written.
CREATE OR REPLACE FUNCTION internal.score_bars(symbols text[], intervals text[], after_ts timestamptz[],
                                               upto_ts timestamptz[], strict boolean DEFAULT false)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _bad ml.models;
  _n integer;
BEGIN
  -- the common case of a bar ingested with no model on its series costs one index-free probe of ml.models
  IF NOT EXISTS (SELECT FROM ml.models m, unnest(score_bars.symbols, score_bars.intervals) s(symbol, iv)
                 WHERE m.task = 'direction' AND m.status = 'active' AND m."interval" = s.iv
                   AND s.symbol = ANY (m.symbols)) THEN
    RETURN 0;
  END IF;
  _bad := internal.incompatible_model(score_bars.symbols, score_bars.intervals);
  IF _bad.id IS NOT NULL THEN
    IF score_bars.strict THEN
      RAISE EXCEPTION 'model %:% was trained on other features than the current definition', _bad.name, _bad.version
        USING ERRCODE = 'ML020',
              DETAIL = format('model: feature version %s, %s features; current: version %s, %s features',
                              _bad.feature_version, cardinality(_bad.features), ml.feature_version(),
                              cardinality(ml.feature_names())),
              HINT = 'retrain it on the current features (pgtrade ml train) or retire it';
    END IF;
    RAISE WARNING 'model %:% skipped: trained on other features than the current definition (ML020)',
      _bad.name, _bad.version;
  END IF;
  INSERT INTO ml.signals AS s (model_id, symbol, "interval", ts, probability, confidence, signal, close, atr,
                               stop_loss, take_profit)
  SELECT q.model_id, q.symbol, q."interval", q.ts, q.probability, q.confidence, q.signal, q.close, q.atr,
         q.stop_loss, q.take_profit
  FROM internal.scored(score_bars.symbols, score_bars.intervals, score_bars.after_ts, score_bars.upto_ts) q
  ON CONFLICT ON CONSTRAINT signals_model_bar DO NOTHING;
  GET DIAGNOSTICS _n = ROW_COUNT;
  RETURN _n;
END
$$;
COMMENT ON FUNCTION internal.score_bars IS
  'Internal: score series i''s closed bars in (after_ts[i], upto_ts[i]] with the compatible active direction models and record the signals once per model and bar; strict refuses (ML020) an active model trained on other features, else it is skipped with a warning. Returns the rows written.';

-- On demand: score one series over [from_ts, to_ts] (its closed bars only).
CREATE OR REPLACE FUNCTION ml.score(symbol text, "interval" text, from_ts timestamptz DEFAULT '-infinity',
                                    to_ts timestamptz DEFAULT 'infinity')
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _sym text := upper(btrim(score.symbol));
  _upto timestamptz;
BEGIN
  IF score.from_ts IS NULL OR score.to_ts IS NULL OR score.from_ts > score.to_ts THEN
    RAISE EXCEPTION 'cannot score from % to %', coalesce(score.from_ts::text, 'NULL'), coalesce(score.to_ts::text, 'NULL')
      USING ERRCODE = 'ML021', HINT = 'give a range with from_ts <= to_ts';
  END IF;
  IF NOT EXISTS (SELECT FROM market.intervals iv WHERE iv.code = score."interval") THEN
    RAISE EXCEPTION 'unknown interval %', coalesce(quote_literal(score."interval"), 'NULL') USING ERRCODE = 'ML021',
      HINT = 'use an interval of market.intervals (e.g. 1m, 1h, 1d)';
  END IF;
  IF NOT EXISTS (SELECT FROM ml.models m WHERE m.task = 'direction' AND m.status = 'active'
                   AND m."interval" = score."interval" AND _sym = ANY (m.symbols)) THEN
    RAISE EXCEPTION 'no active direction model scores % %', coalesce(_sym, 'NULL'), score."interval"
      USING ERRCODE = 'ML022', HINT = 'train one (pgtrade ml train) or activate one (pgtrade ml activate NAME:VERSION)';
  END IF;
  _upto := least(score.to_ts, ml.closed_upto(_sym, score."interval"));
  IF _upto IS NULL OR _upto < score.from_ts THEN
    RETURN 0;  -- no closed bar in range
  END IF;
  RETURN internal.score_bars(ARRAY[_sym], ARRAY[score."interval"], ARRAY[score.from_ts - interval '1 microsecond'],
                             ARRAY[_upto], true);
END
$$;
COMMENT ON FUNCTION ml.score IS
  'Score a series'' closed bars in [from_ts, to_ts] with every active direction model of it and record the signals (a bar already scored by a model keeps its signal); returns the rows written. ML020: an active model trained on other features; ML021: bad range or interval; ML022: no active model.';

-- Prediction without recording: the signals of a series'' newest closed bar (or of the closed bar at ts).
CREATE OR REPLACE FUNCTION ml.predict(of_symbol text, of_interval text, at_ts timestamptz DEFAULT NULL)
RETURNS TABLE (model_id bigint, symbol text, "interval" text, ts timestamptz, probability double precision,
               confidence numeric, signal text, close numeric, atr numeric, stop_loss numeric,
               take_profit numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _sym text := upper(btrim(predict.of_symbol));
  _bar timestamptz := least(coalesce(predict.at_ts, 'infinity'), ml.closed_upto(_sym, predict.of_interval));
  _bad ml.models;
BEGIN
  _bad := internal.incompatible_model(ARRAY[_sym], ARRAY[predict.of_interval]);
  IF _bad.id IS NOT NULL THEN
    RAISE EXCEPTION 'model %:% was trained on other features than the current definition', _bad.name, _bad.version
      USING ERRCODE = 'ML020', HINT = 'retrain it on the current features (pgtrade ml train) or retire it';
  END IF;
  RETURN QUERY
  SELECT q.* FROM internal.scored(ARRAY[_sym], ARRAY[predict.of_interval], ARRAY[_bar - interval '1 microsecond'],
                                  ARRAY[_bar]) q;
END
$$;
COMMENT ON FUNCTION ml.predict IS
  'The signals the active direction models give a series'' newest closed bar (or its closed bar at at_ts), computed now and not recorded.';

REVOKE ALL ON FUNCTION internal.incompatible_model(text[], text[]),
  internal.scored(text[], text[], timestamptz[], timestamptz[]),
  internal.score_bars(text[], text[], timestamptz[], timestamptz[], boolean) FROM PUBLIC;
