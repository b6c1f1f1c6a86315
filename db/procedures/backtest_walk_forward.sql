-- Walk-forward analysis (issue 13, section 5). The range is cut into train / purge / test windows
-- (backtest.wf_windows, the one place of the window rule). On each train window a parameterized strategy runs its
-- grid (children purpose wf_train) and backtest.best_run chooses by the objective; an ML strategy (one whose
-- defaults have a model_id parameter, e.g. ml_signal) gets a model trained by ml.train on the train window only.
-- The choice then trades the following test window (children purpose wf_test). The test runs chain: each starts
-- with the cash the one before ended with, so their snapshots, one after another, are the stitched out-of-sample
-- equity curve (backtest.walk_forward_equity). Steps: walk_forward_begin (parent and windows),
-- walk_forward_train for each of walk_forward_tasks (independent: the CLI runs them in parallel), and
-- walk_forward_finish (selection and test runs, in window order); backtest.walk_forward does the three in one call.

-- The windows over the bars of `symbols` / `interval` in [start_ts, end_ts). train, test and purge are either all
-- bar counts ('252', '63', '5': counted on the distinct bar open times of the symbols) or all intervals ('2 years',
-- '3 months', '1 week'; purge '0' fits both). Window k (from 0): the test window follows the train window after the
-- purge gap; the next window moves on by one test length, so test windows tile the range without overlapping.
-- Rolling: the train window moves with it (same length); anchored: it keeps its start and grows. The last test
-- window may be shorter (it ends at end_ts). In interval mode a window without bars in its train or test range is
-- left out. Ranges are half-open: [train_from, train_until), [test_from, test_until); train_until <= test_from.
CREATE OR REPLACE FUNCTION backtest.wf_windows(
  symbols text[], "interval" text, start_ts timestamptz, end_ts timestamptz, train text, test text,
  purge text DEFAULT '0', anchored boolean DEFAULT false)
RETURNS TABLE (n integer, train_from timestamptz, train_until timestamptz, test_from timestamptz,
               test_until timestamptz, train_bars integer, purge_bars integer, test_bars integer)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
  _r backtest.runs;
  _ts timestamptz[];
  _nb integer;
  _k integer := 0;
  _tr integer;
  _te integer;
  _pu integer;
  _tri interval;
  _tei interval;
  _pui interval;
  _a integer;
  _b integer;
  _c integer;
BEGIN
  IF wf_windows.start_ts IS NULL OR wf_windows.end_ts IS NULL OR NOT (wf_windows.start_ts < wf_windows.end_ts)
     OR NOT isfinite(wf_windows.start_ts) OR NOT isfinite(wf_windows.end_ts) THEN
    RAISE EXCEPTION 'invalid range [%, %)', wf_windows.start_ts, wf_windows.end_ts USING ERRCODE = 'BT003',
      HINT = 'start must be before end, both finite times';
  END IF;
  _r.symbols := (SELECT array_agg(DISTINCT upper(btrim(x))) FROM unnest(wf_windows.symbols) x WHERE x IS NOT NULL);
  _r.interval := wf_windows.interval;
  _r.start_ts := wf_windows.start_ts;
  _r.end_ts := wf_windows.end_ts;
  SELECT array_agg(DISTINCT b.ts ORDER BY b.ts) INTO _ts FROM backtest.bars(_r) b;
  _nb := coalesce(cardinality(_ts), 0);
  IF _nb = 0 THEN
    RAISE EXCEPTION 'no % bars of % in [%, %)', wf_windows.interval, array_to_string(_r.symbols, ', '),
      wf_windows.start_ts, wf_windows.end_ts USING ERRCODE = 'BT007',
      HINT = 'load data first (pgtrade load ...) or choose a range with bars';
  END IF;
  IF coalesce(wf_windows.train, '') ~ '^\s*\d+\s*$' AND coalesce(wf_windows.test, '') ~ '^\s*\d+\s*$' THEN
    IF coalesce(wf_windows.purge, '0') !~ '^\s*\d+\s*$' THEN
      RAISE EXCEPTION 'purge % is not a number of bars, as train and test are', wf_windows.purge USING ERRCODE = 'BT404',
        HINT = 'all three in bars (252, 63, 5) or all as intervals (''2 years'', ''3 months'', ''1 week'')';
    END IF;
    _tr := wf_windows.train::integer;
    _te := wf_windows.test::integer;
    _pu := coalesce(wf_windows.purge, '0')::integer;
    IF _tr < 1 OR _te < 1 THEN
      RAISE EXCEPTION 'train and test windows need at least one bar' USING ERRCODE = 'BT404',
        HINT = 'e.g. train 252, test 63 (daily bars: a year and a quarter)';
    END IF;
    LOOP
      IF _k >= 10000 THEN
        RAISE EXCEPTION 'more than 10000 walk-forward windows' USING ERRCODE = 'BT404',
          HINT = 'a longer test window (each window is a grid search and a test run)';
      END IF;
      _a := CASE WHEN wf_windows.anchored THEN 1 ELSE 1 + _k * _te END;  -- first train bar
      _b := 1 + _tr + _k * _te;                                           -- first bar after the train window
      _c := _b + _pu;                                                     -- first test bar
      EXIT WHEN _c > _nb;
      n := _k + 1;
      train_from := _ts[_a];
      train_until := _ts[_b];
      test_from := _ts[_c];
      test_until := CASE WHEN _c + _te <= _nb THEN _ts[_c + _te] ELSE wf_windows.end_ts END;
      train_bars := _b - _a;
      purge_bars := _pu;
      test_bars := least(_c + _te, _nb + 1) - _c;
      RETURN NEXT;
      _k := _k + 1;
    END LOOP;
  ELSE
    IF coalesce(wf_windows.train, '') ~ '^\s*\d+\s*$' OR coalesce(wf_windows.test, '') ~ '^\s*\d+\s*$'
       OR coalesce(wf_windows.purge, '0') ~ '^\s*0*[1-9]\d*\s*$' THEN
      RAISE EXCEPTION 'train %, test %, purge %: bar counts and intervals mixed', wf_windows.train, wf_windows.test,
        wf_windows.purge USING ERRCODE = 'BT404',
        HINT = 'all three in bars (252, 63, 5) or all as intervals (''2 years'', ''3 months'', ''1 week''); purge 0 fits both';
    END IF;
    BEGIN
      _tri := wf_windows.train::interval;
      _tei := wf_windows.test::interval;
      _pui := coalesce(wf_windows.purge, '0')::interval;
    EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
      RAISE EXCEPTION 'train %, test %, purge %: not bar counts, nor intervals', wf_windows.train, wf_windows.test,
        wf_windows.purge USING ERRCODE = 'BT404',
        HINT = 'all three in bars (252, 63, 5) or all as intervals (''2 years'', ''3 months'', ''1 week'')';
    END;
    IF _tri IS NULL OR _tei IS NULL OR _tri <= interval '0' OR _tei <= interval '0' OR _pui < interval '0' THEN
      RAISE EXCEPTION 'train and test must be positive and purge not negative' USING ERRCODE = 'BT404',
        HINT = 'e.g. train ''2 years'', test ''6 months'', purge ''5 days''';
    END IF;
    _a := 0;
    LOOP
      IF _k >= 10000 THEN
        RAISE EXCEPTION 'more than 10000 walk-forward windows' USING ERRCODE = 'BT404',
          HINT = 'a longer test window (each window is a grid search and a test run)';
      END IF;
      train_from := CASE WHEN wf_windows.anchored THEN wf_windows.start_ts ELSE wf_windows.start_ts + _k * _tei END;
      train_until := wf_windows.start_ts + _tri + _k * _tei;
      test_from := train_until + _pui;
      EXIT WHEN test_from >= wf_windows.end_ts;
      test_until := least(test_from + _tei, wf_windows.end_ts);
      SELECT count(*) FILTER (WHERE t >= train_from AND t < train_until),
             count(*) FILTER (WHERE t >= train_until AND t < test_from),
             count(*) FILTER (WHERE t >= test_from AND t < test_until)
        INTO train_bars, purge_bars, test_bars
      FROM unnest(_ts) t;
      IF train_bars > 0 AND test_bars > 0 THEN
        _a := _a + 1;
        n := _a;
        RETURN NEXT;
      END IF;
      _k := _k + 1;
    END LOOP;
  END IF;
END
$$;
COMMENT ON FUNCTION backtest.wf_windows IS
  'Walk-forward windows over the bars of symbols/interval in [start_ts, end_ts): train, test, purge all in bars (''252'') or all intervals (''1 year''); rolling or anchored train windows, test windows tiling the range after each train window and purge gap. BT404 for bad sizes.';

-- Start a walk-forward: the parent run (purpose walk_forward; params: the resolved base parameters and
-- "walk_forward": the settings) and its windows. For an ML strategy (its defaults have model_id) the train step
-- trains a model: ml = {"kind": "logreg", "params": {...}, "name": "..."} (kind defaults to logreg, name to
-- wf-<run id>); else it runs `grid` (default: the strategy's) and chooses by `objective`.
CREATE OR REPLACE FUNCTION backtest.walk_forward_begin(
  strategy text, symbols text[], "interval" text, start_ts timestamptz, end_ts timestamptz,
  params jsonb DEFAULT '{}', train text DEFAULT '504', test text DEFAULT '126', purge text DEFAULT '0',
  anchored boolean DEFAULT false, grid jsonb DEFAULT NULL, objective text DEFAULT 'sharpe', ml jsonb DEFAULT NULL,
  owner_account_id bigint DEFAULT NULL)
RETURNS backtest.runs
LANGUAGE plpgsql
AS $$
DECLARE
  _s backtest.strategies;
  _is_ml boolean;
  _grid jsonb;
  _ml jsonb;
  _r backtest.runs;
BEGIN
  SELECT * INTO _s FROM backtest.strategies s WHERE s.name = walk_forward_begin.strategy;
  _is_ml := coalesce(_s.defaults ? 'model_id', false);
  IF coalesce(walk_forward_begin.objective, '') !~ '^-?[a-z][a-z0-9_]*$' THEN
    RAISE EXCEPTION 'invalid objective %', coalesce(quote_literal(walk_forward_begin.objective), 'NULL') USING ERRCODE = 'BT402',
      HINT = 'the name of a metric, e.g. sharpe or total_return (a leading - chooses the lowest)';
  END IF;
  IF _is_ml THEN
    IF coalesce(walk_forward_begin.grid, '{}') <> '{}' THEN
      RAISE EXCEPTION 'strategy % trades a model trained on each train window; it takes no parameter grid', _s.name
        USING ERRCODE = 'BT406', HINT = 'leave the grid out; set the model with ml => {"kind": ..., "params": {...}}';
    END IF;
    IF walk_forward_begin.ml IS NOT NULL AND (jsonb_typeof(walk_forward_begin.ml) <> 'object'
        OR EXISTS (SELECT 1 FROM jsonb_object_keys(walk_forward_begin.ml) k WHERE k NOT IN ('kind', 'params', 'name'))) THEN
      RAISE EXCEPTION 'ml settings are an object with kind, params and name' USING ERRCODE = 'BT406',
        HINT = '{"kind": "logreg", "params": {"C": 0.5}}';
    END IF;
    _ml := jsonb_build_object('kind', 'logreg', 'params', '{}'::jsonb) || coalesce(walk_forward_begin.ml, '{}');
    _grid := '{}';
  ELSE
    IF walk_forward_begin.ml IS NOT NULL THEN
      RAISE EXCEPTION 'strategy % does not trade a model (it has no model_id parameter)', walk_forward_begin.strategy
        USING ERRCODE = 'BT406', HINT = 'ml settings go with an ML strategy such as ml_signal';
    END IF;
    _grid := coalesce(walk_forward_begin.grid, _s.grid, '{}');
  END IF;
  _r := internal.backtest_parent('walk_forward', walk_forward_begin.strategy, walk_forward_begin.symbols,
          walk_forward_begin.interval, walk_forward_begin.start_ts, walk_forward_begin.end_ts, walk_forward_begin.params,
          jsonb_build_object('walk_forward', jsonb_build_object(
            'train', walk_forward_begin.train, 'test', walk_forward_begin.test, 'purge', coalesce(walk_forward_begin.purge, '0'),
            'anchored', coalesce(walk_forward_begin.anchored, false), 'objective', walk_forward_begin.objective,
            'grid', _grid, 'ml', _ml)),
          walk_forward_begin.owner_account_id);
  IF _is_ml THEN
    IF _ml->>'name' IS NULL THEN
      _r.params := jsonb_set(_r.params, '{walk_forward,ml,name}', to_jsonb(format('wf-%s', _r.id)));
      UPDATE backtest.runs r SET params = _r.params WHERE r.id = _r.id;
    END IF;
  ELSE
    PERFORM internal.backtest_params(_s, coalesce(walk_forward_begin.params, '{}') || p) FROM backtest.grid_points(_grid) p;
  END IF;
  INSERT INTO backtest.walk_forward_windows (run_id, n, train_from, train_until, test_from, test_until, train_bars,
                                             purge_bars, test_bars)
  SELECT _r.id, w.n, w.train_from, w.train_until, w.test_from, w.test_until, w.train_bars, w.purge_bars, w.test_bars
  FROM backtest.wf_windows(_r.symbols, _r.interval, _r.start_ts, _r.end_ts, walk_forward_begin.train,
                           walk_forward_begin.test, walk_forward_begin.purge, walk_forward_begin.anchored) w;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no walk-forward window fits in [%, %): train % + purge % leave no test bar', _r.start_ts, _r.end_ts,
      walk_forward_begin.train, walk_forward_begin.purge USING ERRCODE = 'BT405',
      HINT = 'a longer range or a shorter train window';
  END IF;
  RETURN _r;
END
$$;
COMMENT ON FUNCTION backtest.walk_forward_begin IS
  'Start a walk-forward analysis: check the request, record the parent run (purpose walk_forward; params.walk_forward = the settings) and its windows (backtest.wf_windows). Then walk_forward_train for each of walk_forward_tasks, then walk_forward_finish (backtest.walk_forward does it all).';

-- The train steps of a walk-forward, independent of each other: (window, grid point) for a parameterized strategy,
-- (window, model parameters) for an ML strategy. Ordered by window, then point.
CREATE OR REPLACE FUNCTION backtest.walk_forward_tasks(run_id bigint)
RETURNS TABLE (n integer, params jsonb)
LANGUAGE sql STABLE
AS $$
  SELECT w.n, p.point
  FROM backtest.runs r
  JOIN backtest.walk_forward_windows w ON w.run_id = r.id
  CROSS JOIN LATERAL (
    SELECT g.point, g.k FROM backtest.grid_points(r.params #> '{walk_forward,grid}') WITH ORDINALITY g(point, k)
    WHERE r.params #> '{walk_forward,ml}' = 'null'
    UNION ALL
    SELECT r.params #> '{walk_forward,ml,params}', 1 WHERE r.params #> '{walk_forward,ml}' <> 'null'
  ) p
  WHERE r.id = walk_forward_tasks.run_id AND r.purpose = 'walk_forward'
  ORDER BY w.n, p.k
$$;
COMMENT ON FUNCTION backtest.walk_forward_tasks IS
  'The train steps of a walk-forward run, each independent (run them with backtest.walk_forward_train in any order or in parallel): one per window and grid point, or one per window (the model parameters) for an ML strategy.';

-- One train step. Parameterized strategy: a run on the train window [train_from, train_until) with the base
-- parameters and the point (purpose wf_train; returns its id). ML strategy: ml.train on the train window's bars
-- only (train_until = the last train bar's open time: the labels of ml.training_rows end at that bar's close), the
-- model recorded on the window (returns the model id; BT408 when the fit failed).
CREATE OR REPLACE FUNCTION backtest.walk_forward_train(run_id bigint, n integer, params jsonb)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
  _p backtest.runs;
  _w backtest.walk_forward_windows;
  _t backtest.runs;
  _ml jsonb;
  _last timestamptz;
  _tr ml.training_runs;
BEGIN
  SELECT * INTO _p FROM backtest.runs r WHERE r.id = walk_forward_train.run_id AND r.purpose = 'walk_forward';
  SELECT * INTO _w FROM backtest.walk_forward_windows w WHERE w.run_id = _p.id AND w.n = walk_forward_train.n;
  IF _p.id IS NULL OR _w.n IS NULL THEN
    RAISE EXCEPTION 'no window % of walk-forward run %', walk_forward_train.n, walk_forward_train.run_id
      USING ERRCODE = 'BT403', HINT = 'backtest.walk_forward_tasks(run_id) lists the train steps';
  END IF;
  _ml := _p.params #> '{walk_forward,ml}';
  IF _ml = 'null' THEN
    _t := backtest.run(_p.strategy, _p.symbols, _p.interval, _w.train_from, _w.train_until,
                       (_p.params - 'walk_forward') || coalesce(walk_forward_train.params, '{}'), 'auto', _p.id,
                       'wf_train', _p.owner_account_id);
    RETURN _t.id;
  END IF;
  _t.symbols := _p.symbols;
  _t.interval := _p.interval;
  _t.start_ts := _w.train_from;
  _t.end_ts := _w.train_until;
  SELECT max(b.ts) INTO _last FROM backtest.bars(_t) b;
  _tr := ml.train(_ml->>'name', _ml->>'kind', _p.symbols, _p.interval, _w.train_from, _last,
                  coalesce(walk_forward_train.params, '{}'), 'never', 'evaluation');
  IF _tr.model_id IS NULL THEN
    RAISE EXCEPTION 'no model could be trained on window % [%, %): %', _w.n, _w.train_from, _w.train_until, _tr.reason
      USING ERRCODE = 'BT408', HINT = 'a longer train window, or other model parameters';
  END IF;
  UPDATE backtest.walk_forward_windows w SET model_id = _tr.model_id WHERE w.run_id = _p.id AND w.n = _w.n;
  RETURN _tr.model_id;
END
$$;
COMMENT ON FUNCTION backtest.walk_forward_train IS
  'One train step of a walk-forward run: a wf_train run of a grid point on the window''s train range (returns the run id), or for an ML strategy ml.train on the train range only, recorded on the window (returns the model id; BT408 if the fit failed).';

-- Finish a walk-forward, window by window in time order: choose (backtest.best_run over the window's train runs
-- by the objective; or the window's model), run the choice on the test window with the cash the previous test run
-- ended with (to the cent), record it on the window. The parent's metrics describe the stitched curve.
CREATE OR REPLACE FUNCTION backtest.walk_forward_finish(run_id bigint)
RETURNS backtest.runs
LANGUAGE plpgsql
AS $$
DECLARE
  _p backtest.runs;
  _w backtest.walk_forward_windows;
  _ids bigint[];
  _best_id bigint;
  _score numeric;
  _objective text;
  _chosen jsonb;
  _t backtest.runs;
  _equity numeric;
  _end numeric;
  _error text;
  _is_ml boolean;
BEGIN
  SELECT * INTO _p FROM backtest.runs r WHERE r.id = walk_forward_finish.run_id AND r.purpose = 'walk_forward' FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no walk-forward run %', walk_forward_finish.run_id USING ERRCODE = 'BT403',
      HINT = 'start one with backtest.walk_forward_begin';
  END IF;
  _is_ml := _p.params #> '{walk_forward,ml}' <> 'null';
  _equity := (_p.params->>'cash')::numeric;
  FOR _w IN SELECT * FROM backtest.walk_forward_windows w WHERE w.run_id = _p.id ORDER BY w.n LOOP
    IF _is_ml THEN
      IF _w.model_id IS NULL THEN
        _error := format('window %s has no model (its train step did not run)', _w.n);
        EXIT;
      END IF;
      _chosen := jsonb_build_object('model_id', _w.model_id);
    ELSE
      SELECT array_agg(r.id ORDER BY r.id) INTO _ids FROM backtest.runs r
      WHERE r.parent_id = _p.id AND r.purpose = 'wf_train' AND r.start_ts = _w.train_from AND r.end_ts = _w.train_until;
      SELECT b.run_id, b.score, b.objective INTO _best_id, _score, _objective
      FROM backtest.best_run(_ids, _p.params #>> '{walk_forward,objective}') b;
      IF _best_id IS NULL THEN
        _error := format('no train run of window %s finished (%s ran)', _w.n, coalesce(cardinality(_ids), 0));
        EXIT;
      END IF;
      SELECT coalesce(jsonb_object_agg(k, r.params -> k), '{}') INTO _chosen
      FROM backtest.runs r, jsonb_object_keys(_p.params #> '{walk_forward,grid}') k WHERE r.id = _best_id;
    END IF;
    _t := backtest.run(_p.strategy, _p.symbols, _p.interval, _w.test_from, _w.test_until,
                       (_p.params - 'walk_forward') || _chosen || jsonb_build_object('cash', _equity), 'auto', _p.id,
                       'wf_test', _p.owner_account_id);
    _end := (SELECT s.total_value FROM trading.portfolio_snapshots s WHERE s.account_id = _t.account_id
             ORDER BY s.ts DESC LIMIT 1);
    UPDATE backtest.walk_forward_windows w
       SET objective = _objective, best_train_run_id = _best_id, train_score = _score,
           chosen_params = _chosen, test_run_id = _t.id, start_equity = _equity, end_equity = _end,
           test_metrics = _t.metrics
     WHERE w.run_id = _p.id AND w.n = _w.n;
    IF _t.status <> 'done' THEN
      _error := format('the test run %s of window %s failed: %s', _t.id, _w.n, _t.error);
      EXIT;
    END IF;
    _equity := round(_end, 2);
  END LOOP;
  UPDATE backtest.runs r
     SET status = CASE WHEN _error IS NULL THEN 'done' ELSE 'failed' END, error = _error,
         metrics = (SELECT jsonb_build_object(
                      'windows', count(*), 'initial_cash', (_p.params->>'cash')::numeric,
                      'final_equity', (array_agg(w.end_equity ORDER BY w.n DESC))[1],
                      'total_return', round((array_agg(w.end_equity ORDER BY w.n DESC))[1] / (_p.params->>'cash')::numeric - 1, 10),
                      'max_drawdown', (SELECT max(e.drawdown) FROM backtest.walk_forward_equity(_p.id) e),
                      'test_bars', sum(w.test_bars),
                      'objective', _p.params #>> '{walk_forward,objective}',
                      'objective_used', (array_agg(DISTINCT w.objective) FILTER (WHERE w.objective IS NOT NULL)))
                    FROM backtest.walk_forward_windows w WHERE w.run_id = _p.id AND w.end_equity IS NOT NULL),
         finished_at = clock_timestamp(),
         elapsed_ms = round(extract(epoch FROM clock_timestamp() - r.created_at) * 1000, 1)
   WHERE r.id = _p.id
  RETURNING * INTO _p;
  RETURN _p;
END
$$;
COMMENT ON FUNCTION backtest.walk_forward_finish IS
  'Finish a walk-forward run: per window in order, choose the best train run by the objective (backtest.best_run) or take the window''s model, run it on the test window starting with the previous test run''s final equity, record it; the parent is done with the stitched curve''s metrics (failed with the reason if a window could not be traded).';

-- The stitched out-of-sample equity curve: the test runs' snapshots one after another. Each test run starts with
-- the previous one's final equity, so this is the compounded curve from the initial cash; drawdown from the
-- stitched running peak.
CREATE OR REPLACE FUNCTION backtest.walk_forward_equity(run_id bigint)
RETURNS TABLE (ts timestamptz, n integer, test_run_id bigint, total_value numeric, drawdown numeric)
LANGUAGE sql STABLE
AS $$
  SELECT x.ts, x.n, x.test_run_id, x.total_value,
         round((max(x.total_value) OVER (ORDER BY x.ts) - x.total_value) / max(x.total_value) OVER (ORDER BY x.ts), 10)
  FROM (SELECT s.ts, w.n, w.test_run_id, s.total_value
        FROM backtest.walk_forward_windows w
        JOIN backtest.runs t ON t.id = w.test_run_id
        JOIN trading.portfolio_snapshots s ON s.account_id = t.account_id
        WHERE w.run_id = walk_forward_equity.run_id) x
  ORDER BY x.ts
$$;
COMMENT ON FUNCTION backtest.walk_forward_equity IS
  'The stitched out-of-sample equity curve of a walk-forward run: its test runs'' snapshots in time order (each test run starts with the previous one''s final equity), with the drawdown from the running peak.';

-- A whole walk-forward in one call, sequentially (from psql; pgtrade backtest walk-forward --jobs N runs the train
-- steps in parallel over several connections).
CREATE OR REPLACE FUNCTION backtest.walk_forward(
  strategy text, symbols text[], "interval" text, start_ts timestamptz, end_ts timestamptz,
  params jsonb DEFAULT '{}', train text DEFAULT '504', test text DEFAULT '126', purge text DEFAULT '0',
  anchored boolean DEFAULT false, grid jsonb DEFAULT NULL, objective text DEFAULT 'sharpe', ml jsonb DEFAULT NULL,
  owner_account_id bigint DEFAULT NULL)
RETURNS backtest.runs
LANGUAGE plpgsql
AS $$
DECLARE
  _r backtest.runs;
BEGIN
  _r := backtest.walk_forward_begin(walk_forward.strategy, walk_forward.symbols, walk_forward.interval,
          walk_forward.start_ts, walk_forward.end_ts, walk_forward.params, walk_forward.train, walk_forward.test,
          walk_forward.purge, walk_forward.anchored, walk_forward.grid, walk_forward.objective, walk_forward.ml,
          walk_forward.owner_account_id);
  PERFORM backtest.walk_forward_train(_r.id, t.n, t.params) FROM backtest.walk_forward_tasks(_r.id) t;
  RETURN backtest.walk_forward_finish(_r.id);
END
$$;
COMMENT ON FUNCTION backtest.walk_forward IS
  'Run a walk-forward analysis sequentially: windows (backtest.wf_windows), the grid on each train window (or a model trained on it, for an ML strategy), the best choice by the objective traded on the next test window, chained; returns the parent run (purpose walk_forward). Per-window results: backtest.walk_forward_windows; the stitched curve: backtest.walk_forward_equity.';
