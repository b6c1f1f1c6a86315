-- Parameter grids (issue 13, section 6): a parent run (purpose 'grid') and one child run per grid point, each an
-- ordinary backtest.run on its own account. backtest.grid runs the points one after another (psql); the CLI runs the
-- same backtest.grid_run calls in parallel over several connections (pgtrade/backtest_parallel.py). The rule that
-- chooses the best run of a set (backtest.best_run) is shared with the walk-forward analysis.

-- The points of a grid {"param": [values...], ...}: the cartesian product, each point an object {"param": value, ...}.
-- Order: parameters by name, values as listed, the last parameter varying fastest. {} has one point, {}.
CREATE OR REPLACE FUNCTION backtest.grid_points(grid jsonb)
RETURNS SETOF jsonb
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
  _points jsonb[] := ARRAY['{}'::jsonb];
  _key text;
  _values jsonb;
BEGIN
  IF grid_points.grid IS NULL OR jsonb_typeof(grid_points.grid) <> 'object' THEN
    RAISE EXCEPTION 'a grid is a JSON object of parameter lists' USING ERRCODE = 'BT401',
      HINT = 'e.g. {"fast": [5, 10, 20], "slow": [20, 50]}';
  END IF;
  FOR _key, _values IN SELECT e.key, e.value FROM jsonb_each(grid_points.grid) e ORDER BY e.key LOOP
    IF jsonb_typeof(_values) <> 'array' OR jsonb_array_length(_values) = 0 THEN
      RAISE EXCEPTION 'grid parameter % needs a non-empty list of values', _key USING ERRCODE = 'BT401',
        HINT = format('e.g. {"%s": [1, 2, 3]}', _key);
    END IF;
    IF (SELECT count(DISTINCT v.value) FROM jsonb_array_elements(_values) v) < jsonb_array_length(_values) THEN
      RAISE EXCEPTION 'grid parameter % lists a value twice', _key USING ERRCODE = 'BT401',
        HINT = 'each value once: every point is a run';
    END IF;
    SELECT array_agg(p.point || jsonb_build_object(_key, v.value) ORDER BY p.n, v.n) INTO _points
    FROM unnest(_points) WITH ORDINALITY p(point, n)
    CROSS JOIN jsonb_array_elements(_values) WITH ORDINALITY v(value, n);
    IF cardinality(_points) > 10000 THEN
      RAISE EXCEPTION 'the grid has more than 10000 points' USING ERRCODE = 'BT401',
        HINT = 'fewer values per parameter: every point is a run';
    END IF;
  END LOOP;
  RETURN QUERY SELECT p FROM unnest(_points) p;
END
$$;
COMMENT ON FUNCTION backtest.grid_points IS
  'The points of a parameter grid {"param": [values]}: the cartesian product as JSON objects, parameters in name order, the last varying fastest. BT401 for a malformed grid (not lists, empty lists, repeated values, more than 10000 points).';

-- The selection rule: of the finished runs among run_ids, the one with the highest metric `objective` (a leading
-- '-' asks for the lowest instead). Runs without a numeric value of it rank last; ties go to the smaller
-- parameters (jsonb order), so the choice does not depend on the order the runs ran in. When no run reports the
-- objective at all (e.g. sharpe before the metrics include it), total_return decides, and `objective` says so.
CREATE OR REPLACE FUNCTION backtest.best_run(run_ids bigint[], objective text DEFAULT 'sharpe')
RETURNS TABLE (run_id bigint, score numeric, objective text)
LANGUAGE sql STABLE
AS $$
  WITH c AS (
    SELECT r.id, r.params, r.metrics FROM backtest.runs r
    WHERE r.id = ANY (best_run.run_ids) AND r.status = 'done'
  ), o AS (
    SELECT ltrim(coalesce(best_run.objective, 'sharpe'), '-') AS key, coalesce(best_run.objective, '') LIKE '-%' AS low
  ), k AS (
    SELECT CASE WHEN x.found THEN o.key ELSE 'total_return' END AS key, x.found AND o.low AS low
    FROM o, LATERAL (SELECT EXISTS (SELECT 1 FROM c WHERE c.metrics ? o.key) AS found) x
  )
  SELECT c.id, s.score, CASE WHEN k.low THEN '-' ELSE '' END || k.key
  FROM c CROSS JOIN k
  CROSS JOIN LATERAL (SELECT CASE WHEN jsonb_typeof(c.metrics -> k.key) = 'number' THEN (c.metrics ->> k.key)::numeric END AS score) s
  ORDER BY CASE WHEN k.low THEN -s.score ELSE s.score END DESC NULLS LAST, c.params, c.id
  LIMIT 1
$$;
COMMENT ON FUNCTION backtest.best_run IS
  'The selection rule of grids and walk-forward train windows: the finished run with the highest metrics->objective (leading - = lowest); no value ranks last; ties to the smaller params. Falls back to total_return when no run has the objective (the objective column says which decided).';

-- A parent run (grid or walk-forward): the request checked as backtest.run checks it, the base parameters
-- resolved, `extra` (the grid or walk-forward settings) added to them. No account: the children trade.
CREATE OR REPLACE FUNCTION internal.backtest_parent(
  purpose text, strategy text, symbols text[], "interval" text, start_ts timestamptz, end_ts timestamptz,
  params jsonb, extra jsonb, owner_account_id bigint)
RETURNS backtest.runs
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _s backtest.strategies;
  _syms text[];
  _r backtest.runs;
BEGIN
  _syms := internal.backtest_request(backtest_parent.strategy, backtest_parent.symbols, backtest_parent.interval,
                                     backtest_parent.start_ts, backtest_parent.end_ts);
  SELECT * INTO _s FROM backtest.strategies s WHERE s.name = backtest_parent.strategy;
  INSERT INTO backtest.runs AS r (owner_account_id, purpose, strategy, symbols, "interval", start_ts, end_ts, params)
  VALUES (backtest_parent.owner_account_id, backtest_parent.purpose, _s.name, _syms, backtest_parent.interval,
          backtest_parent.start_ts, backtest_parent.end_ts,
          internal.backtest_params(_s, backtest_parent.params) || backtest_parent.extra)
  RETURNING r.* INTO _r;
  RETURN _r;
END
$$;
COMMENT ON FUNCTION internal.backtest_parent IS
  'Internal: record the parent run of a grid or walk-forward (the request checked as backtest.run checks it; params = the resolved base parameters plus the grid or walk-forward settings; no account).';

-- Start a grid: the parent run (params: the resolved base parameters, "grid" and "objective"); every point is
-- checked against the strategy's parameters before any run. The children are backtest.grid_run(parent, point).
CREATE OR REPLACE FUNCTION backtest.grid_begin(
  strategy text, symbols text[], "interval" text, start_ts timestamptz, end_ts timestamptz,
  params jsonb DEFAULT '{}', grid jsonb DEFAULT NULL, objective text DEFAULT 'sharpe', owner_account_id bigint DEFAULT NULL)
RETURNS backtest.runs
LANGUAGE plpgsql
AS $$
DECLARE
  _s backtest.strategies;
  _grid jsonb;
  _r backtest.runs;
BEGIN
  SELECT * INTO _s FROM backtest.strategies s WHERE s.name = grid_begin.strategy;
  _grid := coalesce(grid_begin.grid, _s.grid, '{}');
  IF coalesce(grid_begin.objective, '') !~ '^-?[a-z][a-z0-9_]*$' THEN
    RAISE EXCEPTION 'invalid objective %', coalesce(quote_literal(grid_begin.objective), 'NULL') USING ERRCODE = 'BT402',
      HINT = 'the name of a metric, e.g. sharpe or total_return (a leading - chooses the lowest)';
  END IF;
  _r := internal.backtest_parent('grid', grid_begin.strategy, grid_begin.symbols, grid_begin.interval,
                                 grid_begin.start_ts, grid_begin.end_ts, grid_begin.params,
                                 jsonb_build_object('grid', _grid, 'objective', grid_begin.objective),
                                 grid_begin.owner_account_id);
  -- every point must be a valid parameter set (BT004 names the unknown one) before anything runs
  PERFORM internal.backtest_params(_s, coalesce(grid_begin.params, '{}') || p) FROM backtest.grid_points(_grid) p;
  RETURN _r;
END
$$;
COMMENT ON FUNCTION backtest.grid_begin IS
  'Start a parameter grid: record its parent run (purpose grid; default grid: the strategy''s) after checking every point. Run the points with backtest.grid_run, then backtest.grid_finish (backtest.grid does all three).';

-- One point of a grid: an ordinary run (purpose grid, parent_id = the grid) with the base parameters and the point.
CREATE OR REPLACE FUNCTION backtest.grid_run(parent_id bigint, point jsonb)
RETURNS backtest.runs
LANGUAGE plpgsql
AS $$
DECLARE
  _g backtest.runs;
BEGIN
  SELECT * INTO _g FROM backtest.runs r WHERE r.id = grid_run.parent_id AND r.purpose = 'grid' AND r.parent_id IS NULL;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no grid run %', grid_run.parent_id USING ERRCODE = 'BT403', HINT = 'start one with backtest.grid_begin';
  END IF;
  RETURN backtest.run(_g.strategy, _g.symbols, _g.interval, _g.start_ts, _g.end_ts,
                      (_g.params - 'grid' - 'objective') || coalesce(grid_run.point, '{}'), 'auto', _g.id, 'grid',
                      _g.owner_account_id);
END
$$;
COMMENT ON FUNCTION backtest.grid_run IS
  'Run one point of a grid: backtest.run with the grid''s strategy, symbols, range and base parameters overridden by the point, as a child (purpose grid) on its own account.';

-- Finish a grid: the parent is done, its metrics the count of runs and the best one by the objective.
CREATE OR REPLACE FUNCTION backtest.grid_finish(parent_id bigint)
RETURNS backtest.runs
LANGUAGE plpgsql
AS $$
DECLARE
  _g backtest.runs;
  _ids bigint[];
  _best record;
BEGIN
  SELECT * INTO _g FROM backtest.runs r WHERE r.id = grid_finish.parent_id AND r.purpose = 'grid' AND r.parent_id IS NULL FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no grid run %', grid_finish.parent_id USING ERRCODE = 'BT403', HINT = 'start one with backtest.grid_begin';
  END IF;
  SELECT array_agg(r.id ORDER BY r.id) INTO _ids FROM backtest.runs r WHERE r.parent_id = _g.id;
  SELECT * INTO _best FROM backtest.best_run(_ids, _g.params->>'objective');
  UPDATE backtest.runs r
     SET status = CASE WHEN _best.run_id IS NULL THEN 'failed' ELSE 'done' END,
         error = CASE WHEN _best.run_id IS NULL THEN 'no run of the grid finished' END,
         metrics = jsonb_build_object(
           'runs', coalesce(cardinality(_ids), 0),
           'done', (SELECT count(*) FROM backtest.runs c WHERE c.id = ANY (_ids) AND c.status = 'done'),
           'failed', (SELECT count(*) FROM backtest.runs c WHERE c.id = ANY (_ids) AND c.status = 'failed'),
           'objective', _best.objective, 'best_run_id', _best.run_id, 'best_score', _best.score,
           'best_params', (SELECT jsonb_object_agg(k, c.params -> k) FROM backtest.runs c, jsonb_object_keys(_g.params -> 'grid') k
                           WHERE c.id = _best.run_id)),
         finished_at = clock_timestamp(),
         elapsed_ms = round(extract(epoch FROM clock_timestamp() - r.created_at) * 1000, 1)
   WHERE r.id = _g.id
  RETURNING * INTO _g;
  RETURN _g;
END
$$;
COMMENT ON FUNCTION backtest.grid_finish IS
  'Finish a grid: mark its parent done (failed if no child finished) with metrics runs, done, failed, and the best run, score and point by the grid''s objective (backtest.best_run).';

-- A whole grid in one call, the points one after another (from psql; the CLI runs them in parallel).
CREATE OR REPLACE FUNCTION backtest.grid(
  strategy text, symbols text[], "interval" text, start_ts timestamptz, end_ts timestamptz,
  params jsonb DEFAULT '{}', grid jsonb DEFAULT NULL, objective text DEFAULT 'sharpe', owner_account_id bigint DEFAULT NULL)
RETURNS backtest.runs
LANGUAGE plpgsql
AS $$
DECLARE
  _g backtest.runs;
BEGIN
  _g := backtest.grid_begin(grid.strategy, grid.symbols, grid.interval, grid.start_ts, grid.end_ts, grid.params,
                            grid.grid, grid.objective, grid.owner_account_id);
  PERFORM backtest.grid_run(_g.id, p) FROM backtest.grid_points(_g.params -> 'grid') p;
  RETURN backtest.grid_finish(_g.id);
END
$$;
COMMENT ON FUNCTION backtest.grid IS
  'Run a parameter grid sequentially: backtest.grid_begin, backtest.grid_run for every point (each on its own account), backtest.grid_finish; returns the parent run (purpose grid). pgtrade backtest grid --jobs N runs the points in parallel.';
