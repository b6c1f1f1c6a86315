-- The look-ahead check: does a strategy's decision at bar t change when the bars after t do not exist?
--
-- The strategy is called once over the whole range (the full run), then once per checked bar time t with the same
-- run cut just after t (end_ts = t + 1 microsecond: bar t is the last bar it sees). A strategy reads its bars
-- through backtest.bars(run, warmup) only, which returns the run's bars in [start_ts, end_ts), so the cut run has
-- no data after t. A decision at t (target, stop-loss, take-profit) that differs between the two calls used
-- something after t: look-ahead. No run is recorded and nothing is written; the strategy functions are called as
-- backtest.run calls them, with the run's parameters completed the same way (internal.backtest_params).
--
-- samples: how many bar times to check (NULL: every bar time of the range). A sample is deterministic: half of it
-- at the bar times where the full run decided something (thinned evenly), the rest spread evenly over the other bar
-- times. Each check re-runs the strategy over [start, t], so checking every bar of n costs about n^2 / 2 bars.
CREATE OR REPLACE FUNCTION backtest.lookahead_check(
  strategy text, symbols text[], "interval" text, start_ts timestamptz, end_ts timestamptz,
  params jsonb DEFAULT '{}', samples integer DEFAULT NULL)
RETURNS TABLE (symbol text, ts timestamptz, full_target numeric, truncated_target numeric,
               full_stop_loss numeric, truncated_stop_loss numeric, full_take_profit numeric,
               truncated_take_profit numeric)
LANGUAGE plpgsql
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
  _s backtest.strategies;
  _fn regproc;
  _syms text[];
  _run backtest.runs;
  _cut backtest.runs;
  _full backtest.decision[];
  _cutd backtest.decision[];
  _times timestamptz[];
  _t timestamptz;
  _n integer;
  _differ integer := 0;
BEGIN
  -- the request checks of a run, except that a look-ahead check may look at an inactive instrument
  _syms := internal.backtest_request(lookahead_check.strategy, lookahead_check.symbols, lookahead_check.interval,
                                     lookahead_check.start_ts, lookahead_check.end_ts, 'a look-ahead check', false);
  SELECT * INTO _s FROM backtest.strategies s WHERE s.name = lookahead_check.strategy;
  IF NOT coalesce(lookahead_check.samples > 0, lookahead_check.samples IS NULL) THEN
    RAISE EXCEPTION 'samples must be a positive number of bar times (or NULL: every bar)' USING ERRCODE = 'BT004',
      HINT = 'e.g. samples => 100';
  END IF;

  _fn := _s.fn::oid::regproc;
  _run.purpose := 'lookahead';
  _run.strategy := _s.name;
  _run.symbols := _syms;
  _run.interval := lookahead_check.interval;
  _run.start_ts := lookahead_check.start_ts;
  _run.end_ts := lookahead_check.end_ts;
  _run.params := internal.backtest_params(_s, lookahead_check.params);
  _run.mode := 'fast';
  _run.status := 'running';
  _run.created_at := now();

  -- the full run's decisions inside the range (one per symbol and bar: the first if a strategy repeats one)
  EXECUTE format($q$
    SELECT array_agg(ROW(d.symbol, d.ts, d.target, d.stop_loss, d.take_profit)::backtest.decision ORDER BY d.symbol, d.ts)
    FROM (SELECT DISTINCT ON (d.symbol, d.ts) d.* FROM %s($1) d
          WHERE d.ts >= $1.start_ts AND d.ts < $1.end_ts ORDER BY d.symbol, d.ts) d $q$, _fn)
    INTO _full USING _run;

  -- the bar times to check
  WITH bt AS (
    SELECT DISTINCT b.ts FROM backtest.bars(_run) b
  ), k AS (
    SELECT bt.ts, EXISTS (SELECT FROM unnest(_full) f WHERE f.ts = bt.ts AND f.target IS NOT NULL) AS decided
    FROM bt
  ), r AS (
    SELECT k.ts, k.decided, row_number() OVER (PARTITION BY k.decided ORDER BY k.ts) AS n FROM k
  ), quota AS (  -- half the samples for bar times with a decision, the rest (and what that half leaves) for the others
    SELECT q.dm, q.om, least(q.dm, lookahead_check.samples - o.oq) AS dq, o.oq
    FROM (SELECT count(*) FILTER (WHERE k.decided) AS dm, count(*) FILTER (WHERE NOT k.decided) AS om FROM k) q,
         LATERAL (SELECT least(q.om, lookahead_check.samples - least(q.dm, (lookahead_check.samples + 1) / 2)) AS oq) o
  ), idx AS (  -- evenly spread ranks within each group
    SELECT DISTINCT true AS decided, 1 + floor(g * q.dm::numeric / q.dq)::bigint AS n
    FROM quota q, generate_series(0, q.dq - 1) g
    UNION
    SELECT DISTINCT false, 1 + floor(g * q.om::numeric / q.oq)::bigint
    FROM quota q, generate_series(0, q.oq - 1) g
  ), pick AS (
    SELECT r.ts FROM r
    WHERE lookahead_check.samples IS NULL
       OR EXISTS (SELECT FROM idx WHERE idx.decided = r.decided AND idx.n = r.n)
  )
  SELECT array_agg(pick.ts ORDER BY pick.ts) INTO _times FROM pick;

  FOREACH _t IN ARRAY coalesce(_times, ARRAY[]::timestamptz[]) LOOP
    _cut := _run;
    _cut.end_ts := _t + interval '1 microsecond';
    EXECUTE format($q$
      SELECT array_agg(ROW(d.symbol, d.ts, d.target, d.stop_loss, d.take_profit)::backtest.decision)
      FROM (SELECT DISTINCT ON (d.symbol) d.* FROM %s($1) d WHERE d.ts = $2 ORDER BY d.symbol) d $q$, _fn)
      INTO _cutd USING _cut, _t;
    RETURN QUERY
      WITH c AS (
        SELECT c.symbol, c.target, c.stop_loss, c.take_profit FROM unnest(_cutd) c
      ), f AS (
        SELECT f.symbol, f.target, f.stop_loss, f.take_profit FROM unnest(_full) f WHERE f.ts = _t
      )
      SELECT coalesce(f.symbol, c.symbol), _t, f.target, c.target, f.stop_loss, c.stop_loss, f.take_profit, c.take_profit
      FROM f FULL JOIN c ON c.symbol = f.symbol
      WHERE (f.target, f.stop_loss, f.take_profit) IS DISTINCT FROM (c.target, c.stop_loss, c.take_profit);
    GET DIAGNOSTICS _n = ROW_COUNT;
    _differ := _differ + _n;
  END LOOP;
  RAISE NOTICE 'look-ahead check of %: % bar time(s) checked, % decision(s) differ', _s.name,
    coalesce(cardinality(_times), 0), _differ;
END
$$;
COMMENT ON FUNCTION backtest.lookahead_check IS
  'Look-ahead check of a strategy: re-decide bar times t with the run cut just after t (the strategy then sees no bar after t) and return every decision at t (target, stop-loss, take-profit) that differs from the full run''s; no rows = no look-ahead found. samples: how many bar times to check (NULL: all; half at the full run''s decisions). docs/backtesting.md, "Look-ahead check".';
