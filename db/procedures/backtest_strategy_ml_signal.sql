-- ML signal: trade a registered direction model's signals (issue 12's models: docs/ml.md, docs/ml-scoring.md).
--
-- The model: param model_id, an ml.models id (a number), 'name:version', or a name (its active version). It must be
-- a direction model of the run's interval trained on the current feature definition (BT030 otherwise).
-- No look-ahead from training: a model has learned from its training window's bars and from the labels of them,
-- which reach `horizon` bars past train_until. A decision at bar t (at its close) may only use a model that saw no
-- close after t, so the run must start after the horizon-th bar following train_until (horizon 1: after
-- train_until). An earlier start, or a model without a recorded training window (an imported one), is refused
-- (BT031) unless the run says allow_in_sample true: its results are then in-sample, and the run records that it
-- asked for it (params). Walk-forward (docs/backtesting.md) trains a model per train window with ml.train and
-- calls this strategy with {"model_id": id} on the test window after it.
-- The signals: per bar of the run, P(up) from the model's stored signals (ml.signals) where it has one, else scored
-- now, set-based: the features of the missing bars in one ml.features call over their range and one
-- internal.onnx_run over all of them (nothing is written). ml.features is the one feature definition and reads the
-- bars of the series up to the run's last bar only (to_ts = the end of the run's range), so truncating a run
-- truncates its features (the look-ahead check relies on it); it is the strategy's one read of bars outside
-- backtest.bars. Only complete feature rows (ml.feature_warmup() bars) give a signal.
-- The rule: BUY / SELL / HOLD by ml.signal_of with the thresholds buy_threshold / sell_threshold (params; default
-- the model's); target 1 on BUY, 0 on SELL (-1 with allow_short), NULL (keep) on HOLD. With brackets true, entries
-- carry the signal's stop-loss and take-profit (ml.bracket_level: close -/+ the model's ATR multiples, on the tick).
CREATE OR REPLACE FUNCTION backtest.ml_signal(run backtest.runs)
RETURNS SETOF backtest.decision
LANGUAGE plpgsql STABLE
AS $$
DECLARE
  _p jsonb := ml_signal.run.params;
  _ref jsonb := ml_signal.run.params->'model_id';
  _m ml.models;
  _buy double precision;
  _sell double precision;
  _short boolean;
  _brackets boolean;
  _in_sample boolean;
  _bad text;
  _late timestamptz;
  _lo timestamptz;
  _hi timestamptz;
BEGIN
  -- the model
  IF _ref IS NULL OR jsonb_typeof(_ref) = 'null' THEN
    RAISE EXCEPTION 'strategy ml_signal needs a model (param model_id)' USING ERRCODE = 'BT030',
      HINT = 'pass {"model_id": 12}, {"model_id": "spx-gbm"} (its active version) or {"model_id": "spx-gbm:3"} (pgtrade ml list)';
  ELSIF jsonb_typeof(_ref) = 'number' OR (_ref #>> '{}') ~ '^[0-9]+$' THEN
    SELECT * INTO _m FROM ml.models m WHERE m.id = (_ref #>> '{}')::numeric;
  ELSIF (_ref #>> '{}') ~ '^[a-z][a-z0-9_.-]{0,62}:[0-9]+$' THEN
    SELECT * INTO _m FROM ml.models m
    WHERE m.name = split_part(_ref #>> '{}', ':', 1) AND m.version = split_part(_ref #>> '{}', ':', 2)::integer;
  ELSE
    SELECT * INTO _m FROM ml.models m WHERE m.name = _ref #>> '{}' AND m.status = 'active';
  END IF;
  IF _m.id IS NULL THEN
    RAISE EXCEPTION 'no model %', _ref::text USING ERRCODE = 'BT030',
      HINT = CASE WHEN jsonb_typeof(_ref) = 'string' AND (_ref #>> '{}') !~ '[:]' AND EXISTS (SELECT FROM ml.models m WHERE m.name = _ref #>> '{}')
                  THEN 'that name has no active version: name one as NAME:VERSION (pgtrade ml list)'
                  ELSE 'model_id is an ml.models id, NAME:VERSION or the name of a model with an active version (pgtrade ml list)' END;
  END IF;
  IF _m.task <> 'direction' THEN
    RAISE EXCEPTION 'model %:% is an % model, not a direction model', _m.name, _m.version, _m.task USING ERRCODE = 'BT030',
      HINT = 'ml_signal trades the BUY/SELL signals of a direction model (pgtrade ml train --model logreg|gbm|rf)';
  END IF;
  IF _m."interval" <> ml_signal.run."interval" THEN
    RAISE EXCEPTION 'model %:% scores % bars, the run has % bars', _m.name, _m.version, _m."interval", ml_signal.run."interval"
      USING ERRCODE = 'BT030', HINT = format('run it on %s bars, or train a model on %s bars', _m."interval", ml_signal.run."interval");
  END IF;
  IF _m.feature_version <> ml.feature_version() OR _m.features IS DISTINCT FROM ml.feature_names() THEN
    RAISE EXCEPTION 'model %:% was trained on other features than the current definition', _m.name, _m.version
      USING ERRCODE = 'BT030', HINT = 'retrain it on the current features (pgtrade ml train)';
  END IF;

  -- the parameters
  BEGIN
    _buy := coalesce((_p->>'buy_threshold')::double precision, _m.buy_threshold);
    _sell := coalesce((_p->>'sell_threshold')::double precision, _m.sell_threshold);
    _short := coalesce((_p->>'allow_short')::boolean, false);
    _brackets := coalesce((_p->>'brackets')::boolean, false);
    _in_sample := coalesce((_p->>'allow_in_sample')::boolean, false);
    IF NOT (0 <= _sell AND _sell <= _buy AND _buy <= 1) THEN
      _bad := format('thresholds must satisfy 0 <= sell_threshold <= buy_threshold <= 1 (got %s, %s)', _sell, _buy);
    END IF;
  EXCEPTION WHEN data_exception THEN
    _bad := format('a parameter has the wrong type (%s)', SQLERRM);
  END;
  IF _bad IS NOT NULL THEN
    RAISE EXCEPTION 'invalid ml_signal parameters: %', _bad USING ERRCODE = 'BT004',
      HINT = 'e.g. {"model_id": 12, "buy_threshold": 0.55, "sell_threshold": 0.45, "brackets": false, "allow_in_sample": false}';
  END IF;

  -- no look-ahead from training: the run starts after the horizon-th bar past train_until
  IF NOT _in_sample THEN
    IF _m.train_until IS NULL THEN
      RAISE EXCEPTION 'model %:% has no recorded training window, so a backtest cannot show it was not trained on the run''s bars',
        _m.name, _m.version USING ERRCODE = 'BT031',
        HINT = 'pass allow_in_sample true to run it anyway (the results may be in-sample), or train one with pgtrade ml train';
    END IF;
    -- the horizon - 1 bars before the start must all come after train_until (the labels of the training bars
    -- reach horizon bars ahead)
    SELECT min(b.ts) INTO _late
    FROM backtest.bars(ml_signal.run, _m.horizon - 1) b WHERE b.ts < ml_signal.run.start_ts;
    IF ml_signal.run.start_ts <= _m.train_until OR _late <= _m.train_until THEN
      RAISE EXCEPTION 'model %:% was trained on bars up to % (labels % bar(s) ahead), and the run starts at %: it would trade on what it learned from',
        _m.name, _m.version, _m.train_until, _m.horizon, ml_signal.run.start_ts USING ERRCODE = 'BT031',
        HINT = format('start the run after %s (walk-forward trains before each test window), or pass allow_in_sample true for an in-sample run',
                      _m.train_until);
    END IF;
  END IF;

  -- the range of the bars without a stored signal (nothing to score when every bar has one)
  SELECT min(b.ts), max(b.ts) INTO _lo, _hi
  FROM backtest.bars(ml_signal.run) b
  WHERE NOT EXISTS (SELECT FROM ml.signals s WHERE s.model_id = _m.id AND s.symbol = b.symbol
                      AND s."interval" = b.interval AND s.ts = b.ts);

  RETURN QUERY
  WITH rb AS MATERIALIZED (
    SELECT b.symbol, b.ts FROM backtest.bars(ml_signal.run) b
  ), stored AS (
    SELECT s.symbol, s.ts, s.probability, s.close, s.atr::float8 AS atr, s.signal, s.stop_loss, s.take_profit
    FROM rb JOIN ml.signals s ON s.model_id = _m.id AND s.symbol = rb.symbol AND s."interval" = ml_signal.run."interval"
                              AND s.ts = rb.ts
  ), f AS MATERIALIZED (
    SELECT f.symbol, f.ts, f.close, f.atr, f.x
    FROM ml.features(ml_signal.run.symbols, ml_signal.run."interval", _lo, _hi) f
    JOIN rb ON rb.symbol = f.symbol AND rb.ts = f.ts
    WHERE _lo IS NOT NULL AND f.complete
      AND NOT EXISTS (SELECT FROM stored WHERE stored.symbol = f.symbol AND stored.ts = f.ts)
  ), scored AS (
    -- one onnx_run over all the rows (a 2-D array, one row of features per bar); unnest puts each output back
    SELECT u.symbol, u.ts, least(greatest(u.prob, 0), 1) AS probability, u.close, u.atr
    FROM (SELECT array_agg(f.x ORDER BY f.symbol, f.ts) AS xs, array_agg(f.symbol ORDER BY f.symbol, f.ts) AS syms,
                 array_agg(f.ts ORDER BY f.symbol, f.ts) AS tss, array_agg(f.close ORDER BY f.symbol, f.ts) AS closes,
                 array_agg(f.atr ORDER BY f.symbol, f.ts) AS atrs
          FROM f HAVING count(*) > 0) a
    CROSS JOIN LATERAL unnest(a.syms, a.tss, a.closes, a.atrs,
                              internal.onnx_run(_m.id, a.xs, cardinality(ml.feature_names())))
                       u(symbol, ts, close, atr, prob)
  ), sig AS (
    SELECT x.symbol, x.ts, x.close, x.atr, ml.signal_of(x.probability, _buy, _sell) AS signal, x.signal AS stored_signal,
           x.stop_loss, x.take_profit
    FROM (SELECT stored.symbol, stored.ts, stored.probability, stored.close, stored.atr, stored.signal, stored.stop_loss,
                 stored.take_profit FROM stored
          UNION ALL
          SELECT scored.symbol, scored.ts, scored.probability, scored.close, scored.atr, NULL, NULL, NULL FROM scored) x
  )
  SELECT sig.symbol, sig.ts,
         CASE sig.signal WHEN 'BUY' THEN 1::numeric WHEN 'SELL' THEN CASE WHEN _short THEN -1::numeric ELSE 0::numeric END END,
         CASE WHEN _brackets AND (sig.signal = 'BUY' OR (sig.signal = 'SELL' AND _short)) THEN
           CASE WHEN sig.signal = sig.stored_signal THEN sig.stop_loss
                ELSE ml.bracket_level(sig.signal, 'stop_loss', sig.close::float8, sig.atr,
                                      ml.bracket_multiple(_m.params, 'stop_loss')::float8, t.tick) END END,
         CASE WHEN _brackets AND (sig.signal = 'BUY' OR (sig.signal = 'SELL' AND _short)) THEN
           CASE WHEN sig.signal = sig.stored_signal THEN sig.take_profit
                ELSE ml.bracket_level(sig.signal, 'take_profit', sig.close::float8, sig.atr,
                                      ml.bracket_multiple(_m.params, 'take_profit')::float8, t.tick) END END
  FROM sig
  LEFT JOIN market.instruments ins ON ins.symbol = sig.symbol
  CROSS JOIN LATERAL (SELECT coalesce(ins.tick_size, 0.01) AS tick) t
  WHERE sig.signal <> 'HOLD' AND sig.ts >= ml_signal.run.start_ts;
END
$$;
COMMENT ON FUNCTION backtest.ml_signal IS
  'Strategy ml_signal: a registered direction model''s signals (stored in ml.signals, else scored set-based for the range): target 1 on BUY, 0 (-1 with allow_short) on SELL, keep on HOLD; thresholds default to the model''s; brackets from the signal''s stop-loss / take-profit. Refuses (BT031) a run starting before the model''s training data ends unless allow_in_sample. docs/backtesting.md, "Strategies".';

SELECT backtest.register_strategy('ml_signal', 'backtest.ml_signal(backtest.runs)',
  'ML signal: trade a registered direction model''s BUY/SELL signals (stored, or scored set-based for the range); long on BUY, flat (short with allow_short) on SELL.',
  '{"model_id": null, "buy_threshold": null, "sell_threshold": null, "brackets": false, "allow_in_sample": false}',
  '{}');
