-- The model registry's procedures: train (in the server), activate, retire, import, evaluate, retrain on schedule.
-- Training itself is PL/Python (internal.train_model, db/superuser/2_3_ml_training.sql) running the ml package;
-- these owner functions register what it returns and decide. Models are immutable (ml.tg_models__immutable): only
-- status and its timestamps change here.

-- The rule of the retraining decision (one place): a candidate beats when, out of sample on the same test window,
-- its balanced accuracy AND its net return of trading its signals (ml/metrics.py convention) are both strictly
-- above those of every naive baseline (always up, yesterday's direction; buy and hold for the return) and of the
-- version it is compared to (when there is one). A metric that could not be measured (NULL) never beats.
CREATE OR REPLACE FUNCTION ml.beats(candidate jsonb, compared jsonb, baselines jsonb)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT coalesce(
    (beats.candidate->>'balanced_accuracy')::float8 > (beats.baselines->'always_up'->>'balanced_accuracy')::float8
    AND (beats.candidate->>'balanced_accuracy')::float8 > (beats.baselines->'yesterday'->>'balanced_accuracy')::float8
    AND (beats.candidate->>'net_return')::float8 > (beats.baselines->'buy_and_hold'->>'net_return')::float8
    AND (beats.candidate->>'net_return')::float8 > (beats.baselines->'yesterday'->>'net_return')::float8
    AND (beats.compared IS NULL OR jsonb_typeof(beats.compared) = 'null' OR (
         (beats.candidate->>'balanced_accuracy')::float8 > (beats.compared->>'balanced_accuracy')::float8
         AND (beats.candidate->>'net_return')::float8 > (beats.compared->>'net_return')::float8)),
    false)
$$;
COMMENT ON FUNCTION ml.beats IS
  'Does a candidate''s out-of-sample result beat the naive baselines and the compared version on the same window (balanced accuracy and net return both strictly higher)?';

-- Make version the active one of its name (the active one before it is retired). Refuses a model whose features
-- are not the current definition's (scoring could not run it).
CREATE OR REPLACE FUNCTION ml.activate(name text, version integer)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _id bigint;
  _fv integer;
  _features text[];
BEGIN
  PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('ml.models:' || activate.name));
  SELECT m.id, m.feature_version, m.features INTO _id, _fv, _features
  FROM ml.models m WHERE m.name = activate.name AND m.version = activate.version FOR UPDATE;
  IF _id IS NULL THEN
    RAISE EXCEPTION 'no model %:%', activate.name, activate.version USING ERRCODE = 'ML104',
      HINT = 'pgtrade ml list shows the registered models and versions';
  END IF;
  IF _fv <> ml.feature_version() OR _features IS DISTINCT FROM ml.feature_names() THEN
    RAISE EXCEPTION 'model %:% was trained on feature version % and cannot score the current features (version %)',
      activate.name, activate.version, _fv, ml.feature_version() USING ERRCODE = 'ML105',
      HINT = 'train a new version on the current features (pgtrade ml train)';
  END IF;
  UPDATE ml.models m SET status = 'retired', retired_at = now()
  WHERE m.name = activate.name AND m.status = 'active' AND m.id <> _id;
  UPDATE ml.models m SET status = 'active', activated_at = now(), retired_at = NULL
  WHERE m.id = _id AND m.status <> 'active';
  RETURN _id;
END
$$;
COMMENT ON FUNCTION ml.activate IS 'Make name:version the active version of its name (retiring the one before); returns its id.';

CREATE OR REPLACE FUNCTION ml.retire(name text, version integer)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _id bigint;
BEGIN
  UPDATE ml.models m SET status = 'retired', retired_at = now()
  WHERE m.name = retire.name AND m.version = retire.version AND m.status <> 'retired'
  RETURNING m.id INTO _id;
  IF _id IS NULL AND NOT EXISTS (SELECT FROM ml.models m WHERE m.name = retire.name AND m.version = retire.version) THEN
    RAISE EXCEPTION 'no model %:%', retire.name, retire.version USING ERRCODE = 'ML104',
      HINT = 'pgtrade ml list shows the registered models and versions';
  END IF;
  RETURN _id;
END
$$;
COMMENT ON FUNCTION ml.retire IS 'Retire name:version (it is kept, never scored again unless activated); NULL when it already was.';

-- Check a training request before any work: a known kind, an interval, symbols with bars.
CREATE OR REPLACE FUNCTION internal.check_training_input(kind text, symbols text[], "interval" text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _task text;
  _missing text[];
BEGIN
  SELECT k.task INTO _task FROM internal.model_kinds() k WHERE k.kind = check_training_input.kind;
  IF _task IS NULL THEN
    RAISE EXCEPTION 'unknown model kind %', check_training_input.kind USING ERRCODE = 'ML101',
      HINT = format('the kinds are: %s', (SELECT string_agg(k.kind, ', ' ORDER BY k.kind) FROM internal.model_kinds() k));
  END IF;
  IF coalesce(cardinality(check_training_input.symbols), 0) = 0 THEN
    RAISE EXCEPTION 'no symbols to train on' USING ERRCODE = 'ML103', HINT = 'give one symbol or several (pooled)';
  END IF;
  IF NOT EXISTS (SELECT FROM market.intervals i WHERE i.code = check_training_input."interval") THEN
    RAISE EXCEPTION 'unknown interval %', check_training_input."interval" USING ERRCODE = 'ML103',
      HINT = format('the intervals are: %s', (SELECT string_agg(i.code, ', ' ORDER BY i.step) FROM market.intervals i));
  END IF;
  SELECT array_agg(s.sym ORDER BY s.sym) INTO _missing
  FROM unnest(check_training_input.symbols) s(sym)
  WHERE NOT EXISTS (SELECT FROM market.bars b WHERE b.symbol = s.sym AND b.interval = check_training_input."interval");
  IF _missing IS NOT NULL THEN
    RAISE EXCEPTION 'no % bars of %', check_training_input."interval", array_to_string(_missing, ', ')
      USING ERRCODE = 'ML103', HINT = 'load bars first (pgtrade load sample / load csv / feeds)';
  END IF;
  RETURN _task;
END
$$;
REVOKE ALL ON FUNCTION internal.check_training_input(text, text[], text) FROM PUBLIC;
COMMENT ON FUNCTION internal.check_training_input IS
  'Check a training request before any work (a known kind, symbols with bars of a known interval); returns the kind''s task.';

-- Train a new version of model `name` in the server on the window [train_from, train_until] (the held-out final
-- part of it is the test window), register it as a candidate, and decide: activate = 'never' keeps it a candidate,
-- 'if_better' activates it when it beats the active version and the baselines on the same test window (ml.beats),
-- 'always' activates it. Every run is a row of ml.training_runs, a failed fit too (decision 'failed', with the error):
-- the function then returns that row instead of raising. Bad input (kind, symbols, interval) raises ML101/ML103.
CREATE OR REPLACE FUNCTION ml.train(
  name text, kind text, symbols text[], "interval" text DEFAULT '1d',
  train_from timestamptz DEFAULT '-infinity', train_until timestamptz DEFAULT 'infinity',
  params jsonb DEFAULT '{}', activate text DEFAULT 'never', trigger text DEFAULT 'cli')
RETURNS ml.training_runs
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _task text;
  _run ml.training_runs;
  _compare bigint;
  _onnx bytea;
  _output text;
  _column integer;
  _res jsonb;
  _model bigint;
  _version integer;
  _beats boolean;
  _decision text;
  _reason text;
  _params jsonb := coalesce(train.params, '{}');
BEGIN
  IF train.activate NOT IN ('never', 'if_better', 'always') THEN
    RAISE EXCEPTION 'activate must be never, if_better or always, not %', train.activate USING ERRCODE = 'ML103',
      HINT = 'if_better activates the new version only when it beats the active one and the naive baselines';
  END IF;
  _task := internal.check_training_input(train.kind, train.symbols, train."interval");
  IF train.name !~ '^[a-z][a-z0-9_.-]{0,62}$' THEN
    RAISE EXCEPTION 'invalid model name %', train.name USING ERRCODE = 'ML103',
      HINT = 'lower-case letters, digits, _ . -, starting with a letter, at most 63 characters';
  END IF;
  -- the version to compare with: the active one of this name, if it scores the current features
  SELECT m.id INTO _compare FROM ml.models m
  WHERE m.name = train.name AND m.status = 'active' AND m.task = _task AND m.task = 'direction'
    AND m.feature_version = ml.feature_version() AND m.features = ml.feature_names();
  INSERT INTO ml.training_runs AS r (trigger, name, kind, symbols, "interval", train_from, train_until, compared_to)
  VALUES (train.trigger, train.name, train.kind, train.symbols, train."interval",
          nullif(train.train_from, '-infinity'), nullif(train.train_until, 'infinity'), _compare)
  RETURNING r.* INTO _run;
  BEGIN
    SELECT t.onnx, t.output_name, t.output_column, t.result INTO _onnx, _output, _column, _res
    FROM internal.train_model(train.kind, train.symbols, train."interval", train.train_from, train.train_until,
                              _params, _compare) t;
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('ml.models:' || train.name));
    SELECT coalesce(max(m.version), 0) + 1 INTO _version FROM ml.models m WHERE m.name = train.name;
    INSERT INTO ml.models AS m (name, version, task, kind, symbols, "interval", feature_version, features, train_from,
                                train_until, params, metrics, baselines, buy_threshold, sell_threshold, output_name,
                                output_column, onnx, onnx_sha256, origin, status)
    VALUES (train.name, _version, _task, train.kind, train.symbols, train."interval", ml.feature_version(),
            ml.feature_names(), (_res->>'train_from')::timestamptz, (_res->>'train_until')::timestamptz, _params,
            (_res->'metrics') || jsonb_build_object('test_from', _res->'test_from', 'test_until', _res->'test_until',
                                                    'n_train', _res->'n_train'),
            _res->'baselines', coalesce((_params->>'buy_threshold')::float8, 0.55),
            coalesce((_params->>'sell_threshold')::float8, 0.45), _output, _column, _onnx,
            encode(pg_catalog.sha256(_onnx), 'hex'), 'trained', 'candidate')
    RETURNING m.id INTO _model;
    _beats := _task = 'direction' AND ml.beats(_res->'metrics', _res->'other_metrics', _res->'baselines');
    IF train.activate = 'always' THEN
      _decision := 'activated';
      _reason := 'activated on request';
    ELSIF train.activate = 'if_better' AND _beats THEN
      _decision := 'activated';
      _reason := CASE WHEN _compare IS NULL THEN 'beat the naive baselines out of sample (no active version)'
                      ELSE 'beat the active version and the naive baselines out of sample' END;
    ELSE
      _decision := 'candidate';
      _reason := CASE WHEN train.activate = 'never' THEN 'kept a candidate (no activation asked)'
                      WHEN _task <> 'direction' THEN 'kept a candidate (an anomaly model is activated by hand)'
                      WHEN _compare IS NULL THEN 'did not beat the naive baselines out of sample'
                      ELSE 'did not beat both the active version and the naive baselines out of sample' END;
    END IF;
    _reason := _reason || CASE WHEN _task = 'direction' THEN
      format(' (balanced accuracy %s, net return %s on %s..%s)',
             coalesce(round((_res->'metrics'->>'balanced_accuracy')::numeric, 4)::text, 'n/a'),
             coalesce(round((_res->'metrics'->>'net_return')::numeric, 4)::text, 'n/a'),
             left(_res->>'test_from', 10), left(_res->>'test_until', 10))
      ELSE format(' (outlier share %s on %s..%s)',
                  coalesce(round((_res->'metrics'->>'outlier_share')::numeric, 4)::text, 'n/a'),
                  left(_res->>'test_from', 10), left(_res->>'test_until', 10)) END;
    IF _decision = 'activated' THEN
      PERFORM ml.activate(train.name, _version);
    END IF;
    UPDATE ml.training_runs r
    SET finished_at = clock_timestamp(), model_id = _model, decision = _decision, reason = _reason,
        metrics = _res - 'kind', train_from = coalesce(r.train_from, (_res->>'train_from')::timestamptz),
        train_until = coalesce(r.train_until, (_res->>'test_until')::timestamptz)
    WHERE r.id = _run.id
    RETURNING r.* INTO _run;
  EXCEPTION WHEN OTHERS THEN
    UPDATE ml.training_runs r
    SET finished_at = clock_timestamp(), decision = 'failed', reason = SQLSTATE || ': ' || SQLERRM
    WHERE r.id = _run.id
    RETURNING r.* INTO _run;
  END;
  RETURN _run;
END
$$;
COMMENT ON FUNCTION ml.train IS
  'Train a new version of a model in the server (ml package, PL/Python), register it and decide (never / if_better / always activate); returns its ml.training_runs row (decision failed with the error when the fit failed).';

-- The rolling training window of a model: its last window_bars bars (params, default 2000) of each symbol up to the
-- newest closed bar.
CREATE OR REPLACE FUNCTION ml.retrain_window(symbols text[], "interval" text, window_bars integer,
                                             OUT train_from timestamptz, OUT train_until timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _sym text;
  _upto timestamptz;
  _first timestamptz;
BEGIN
  -- one symbol at a time with plain values: a correlated LATERAL form of this took 30 s on the sample's hypertable
  FOREACH _sym IN ARRAY retrain_window.symbols LOOP
    _upto := ml.closed_upto(_sym, retrain_window."interval");
    CONTINUE WHEN _upto IS NULL;
    SELECT min(x.ts) INTO _first
    FROM (SELECT b.ts FROM market.bars b
          WHERE b.symbol = _sym AND b.interval = retrain_window."interval" AND b.ts <= _upto
          ORDER BY b.ts DESC LIMIT retrain_window.window_bars) x;
    train_from := least(train_from, _first);
    train_until := greatest(train_until, _upto);
  END LOOP;
END
$$;
COMMENT ON FUNCTION ml.retrain_window IS
  'The rolling window of a retraining: from the window_bars-th newest closed bar of the symbols to the newest closed bar.';

-- The retraining job (pg_cron, daily: db/jobs/ml_retrain.sql): every active direction model gets a new version
-- trained on its rolling window, with its kind, symbols, interval and params; the new version becomes active only
-- if it beats the active one and the baselines (ml.train 'if_better'). A run that fails, even before training, is
-- recorded as failed and the job goes on with the next model. Returns the number of runs.
CREATE OR REPLACE FUNCTION ml.retrain_all()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _m record;
  _from timestamptz;
  _until timestamptz;
  _n integer := 0;
BEGIN
  FOR _m IN SELECT m.name, m.kind, m.symbols, m."interval", m.params FROM ml.models m
            WHERE m.status = 'active' AND m.task = 'direction' ORDER BY m.name LOOP
    _n := _n + 1;
    BEGIN
      SELECT w.train_from, w.train_until INTO _from, _until
      FROM ml.retrain_window(_m.symbols, _m."interval", coalesce((_m.params->>'window_bars')::integer, 2000)) w;
      PERFORM ml.train(_m.name, _m.kind, _m.symbols, _m."interval", coalesce(_from, '-infinity'),
                       coalesce(_until, 'infinity'), _m.params, 'if_better', 'schedule');
    EXCEPTION WHEN OTHERS THEN
      INSERT INTO ml.training_runs (trigger, name, kind, symbols, "interval", finished_at, decision, reason)
      VALUES ('schedule', _m.name, _m.kind, _m.symbols, _m."interval", clock_timestamp(), 'failed',
              SQLSTATE || ': ' || SQLERRM);
    END;
  END LOOP;
  RETURN _n;
END
$$;
COMMENT ON FUNCTION ml.retrain_all IS
  'Retrain every active direction model on its rolling window (params window_bars, default 2000 bars); activate a new version only if it beats the active one and the naive baselines. Returns the number of runs.';

-- Walk-forward evaluation of a model kind over the history up to until_ts (pgtrade ml evaluate); recorded as a
-- training run (trigger 'evaluation', no model). Returns the result (metrics beside the baselines).
CREATE OR REPLACE FUNCTION ml.evaluate(
  name text, kind text, symbols text[], "interval" text DEFAULT '1d', params jsonb DEFAULT '{}',
  train integer DEFAULT 1000, test integer DEFAULT 250, purge integer DEFAULT 1,
  until_ts timestamptz DEFAULT 'infinity')
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _res jsonb;
  _started timestamptz := clock_timestamp();
BEGIN
  PERFORM internal.check_training_input(evaluate.kind, evaluate.symbols, evaluate."interval");
  IF evaluate.train < 50 OR evaluate.test < 1 OR evaluate.purge < 1 THEN
    RAISE EXCEPTION 'walk-forward needs train >= 50, test >= 1 and purge >= 1 bars (got %, %, %)',
      evaluate.train, evaluate.test, evaluate.purge USING ERRCODE = 'ML103',
      HINT = 'purge >= 1: a label reaches one bar ahead, into the next fold';
  END IF;
  _res := internal.evaluate_model(evaluate.kind, evaluate.symbols, evaluate."interval", evaluate.until_ts,
                                  coalesce(evaluate.params, '{}'), evaluate.train, evaluate.test, evaluate.purge);
  INSERT INTO ml.training_runs (started_at, finished_at, trigger, name, kind, symbols, "interval", train_until,
                                reason, metrics)
  VALUES (_started, clock_timestamp(), 'evaluation', evaluate.name, evaluate.kind, evaluate.symbols,
          evaluate."interval", nullif(evaluate.until_ts, 'infinity'),
          format('walk-forward: train %s, test %s, purge %s bars', evaluate.train, evaluate.test, evaluate.purge), _res);
  RETURN _res;
END
$$;
COMMENT ON FUNCTION ml.evaluate IS
  'Walk-forward out-of-sample evaluation of a model kind on these symbols (rolling train window, purge gap, test window), beside the naive baselines; recorded in ml.training_runs.';

-- Register a model trained elsewhere (pgtrade ml import) as a candidate, origin 'imported', after checking it: one
-- input of exactly as many columns as the current feature list, the output to score exists, and it runs through
-- onnxruntime on a real feature row of its first symbol, giving a probability in [0, 1] (direction) or a finite
-- score (anomaly). Returns the new model's id.
CREATE OR REPLACE FUNCTION ml.import_model(
  name text, symbols text[], "interval" text, onnx bytea, kind text DEFAULT 'imported', task text DEFAULT 'direction',
  output_name text DEFAULT NULL, output_column integer DEFAULT NULL, params jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _desc jsonb;
  _n integer := cardinality(ml.feature_names());
  _width jsonb;
  _output text;
  _column integer;
  _id bigint;
  _version integer;
  _x float8[];
  _from timestamptz;
  _out float8[];
BEGIN
  IF import_model.task NOT IN ('direction', 'anomaly') THEN
    RAISE EXCEPTION 'task must be direction or anomaly, not %', import_model.task USING ERRCODE = 'ML103',
      HINT = 'direction: P(next bar up); anomaly: a score, lower = more anomalous';
  END IF;
  IF coalesce(cardinality(import_model.symbols), 0) = 0
     OR NOT EXISTS (SELECT FROM market.intervals i WHERE i.code = import_model."interval") THEN
    RAISE EXCEPTION 'an imported model needs symbols and a known interval' USING ERRCODE = 'ML103',
      HINT = 'pgtrade ml import FILE --name NAME --symbols A,B --interval 1d';
  END IF;
  _desc := internal.onnx_describe(import_model.onnx);
  _width := _desc->'inputs'->0->'shape'->1;
  IF jsonb_array_length(_desc->'inputs') <> 1 OR jsonb_typeof(_width) <> 'number' OR _width::integer <> _n THEN
    RAISE EXCEPTION 'the model''s input does not take the % features of the current feature list', _n
      USING ERRCODE = 'ML107',
      DETAIL = format('its inputs: %s; the features (version %s): %s', _desc->'inputs', ml.feature_version(),
                      array_to_string(ml.feature_names(), ', ')),
      HINT = 'export with one float input of shape [None, ' || _n || '] over ml.features(...).x in that order';
  END IF;
  _output := coalesce(import_model.output_name,
                      CASE WHEN _desc->'outputs' @> '[{"name": "probabilities"}]' THEN 'probabilities'
                           WHEN _desc->'outputs' @> '[{"name": "scores"}]' THEN 'scores'
                           ELSE _desc->'outputs'->-1->>'name' END);
  IF NOT _desc->'outputs' @> jsonb_build_array(jsonb_build_object('name', _output)) THEN
    RAISE EXCEPTION 'the model has no output %', _output USING ERRCODE = 'ML108',
      DETAIL = format('its outputs: %s', _desc->'outputs'), HINT = 'name the output to score with --output';
  END IF;
  _column := coalesce(import_model.output_column, CASE WHEN import_model.task = 'direction' THEN 1 ELSE 0 END);
  PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('ml.models:' || import_model.name));
  SELECT coalesce(max(m.version), 0) + 1 INTO _version FROM ml.models m WHERE m.name = import_model.name;
  INSERT INTO ml.models AS m (name, version, task, kind, symbols, "interval", feature_version, features, params,
                              output_name, output_column, onnx, onnx_sha256, origin, status)
  VALUES (import_model.name, _version, import_model.task, import_model.kind, import_model.symbols,
          import_model."interval", ml.feature_version(), ml.feature_names(), coalesce(import_model.params, '{}'),
          _output, _column, import_model.onnx, encode(pg_catalog.sha256(import_model.onnx), 'hex'), 'imported',
          'candidate')
  RETURNING m.id INTO _id;
  -- a real feature row: the newest complete bar of the first symbol
  SELECT min(t.ts) INTO _from FROM (SELECT b.ts FROM market.bars b
                                    WHERE b.symbol = import_model.symbols[1] AND b.interval = import_model."interval"
                                    ORDER BY b.ts DESC LIMIT 1) t;
  SELECT f.x INTO _x FROM ml.features(import_model.symbols[1:1], import_model."interval", _from) f
  WHERE f.complete ORDER BY f.ts DESC LIMIT 1;
  IF _x IS NULL THEN
    RAISE EXCEPTION 'no complete feature row of % % to check the model on', import_model.symbols[1],
      import_model."interval" USING ERRCODE = 'ML109',
      HINT = format('load at least %s bars of it first', ml.feature_warmup());
  END IF;
  BEGIN
    _out := internal.onnx_run(_id, _x, _n);
  EXCEPTION WHEN OTHERS THEN
    RAISE EXCEPTION 'the model does not run on a real feature row: %', SQLERRM USING ERRCODE = 'ML109',
      HINT = 'its input must be float32 [None, ' || _n || '] and its output ' || _output || ' a tensor';
  END;
  IF cardinality(_out) <> 1 OR _out[1] IS NULL OR _out[1] = 'NaN'::float8 OR _out[1] IN ('Infinity', '-Infinity')
     OR (import_model.task = 'direction' AND NOT _out[1] BETWEEN 0 AND 1) THEN
    RAISE EXCEPTION 'the model gives % on a real feature row, not one % value', _out,
      CASE WHEN import_model.task = 'direction' THEN 'probability in [0, 1]' ELSE 'finite score' END
      USING ERRCODE = 'ML109', HINT = 'check --output and --output-column';
  END IF;
  RETURN _id;
END
$$;
COMMENT ON FUNCTION ml.import_model IS
  'Register an ONNX model trained elsewhere as a candidate (origin imported) after checking its input width against the feature list and running it on a real feature row.';
