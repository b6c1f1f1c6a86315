-- SMA crossover: long (or short, when the account may short) when the fast simple moving average of the close
-- crosses above the slow one; flat (or short) when it crosses below. As backtesting.py's crossover(): a cross at
-- bar t means fast[t-1] < slow[t-1] and fast[t] > slow[t] (strictly), and an average exists only once its window
-- is full. Decisions only at crossings (NULL target elsewhere: keep the position).
CREATE OR REPLACE FUNCTION backtest.sma_crossover(run backtest.runs)
RETURNS SETOF backtest.decision
LANGUAGE sql STABLE
AS $$
  WITH p AS (
    SELECT (sma_crossover.run.params->>'fast')::int AS fast, (sma_crossover.run.params->>'slow')::int AS slow,
           coalesce((sma_crossover.run.params->>'allow_short')::boolean, false) AS short
  ), b AS (  -- running sums: SMA(n) at t = (cs[t] - cs[t-n]) / n, exact in numeric
    SELECT b.symbol, b.ts, row_number() OVER w AS n, sum(b.close) OVER w AS cs
    FROM backtest.bars(sma_crossover.run, (SELECT greatest(p.fast, p.slow) FROM p)) b
    WINDOW w AS (PARTITION BY b.symbol ORDER BY b.ts)
  ), x AS (  -- d = fast x slow x (SMA(fast) - SMA(slow)) at t and at t-1: the sign of the difference without a
             -- division (exact), both from one window pass; defined once the longer window is full
    SELECT b.symbol, b.ts,
           CASE WHEN b.n >= greatest(p.fast, p.slow)
                THEN p.slow * (b.cs - coalesce(lag(b.cs, p.fast) OVER w, 0))
                     - p.fast * (b.cs - coalesce(lag(b.cs, p.slow) OVER w, 0)) END AS d,
           CASE WHEN b.n > greatest(p.fast, p.slow)
                THEN p.slow * (lag(b.cs) OVER w - coalesce(lag(b.cs, p.fast + 1) OVER w, 0))
                     - p.fast * (lag(b.cs) OVER w - coalesce(lag(b.cs, p.slow + 1) OVER w, 0)) END AS pd
    FROM b, p WINDOW w AS (PARTITION BY b.symbol ORDER BY b.ts)
  )
  SELECT x.symbol, x.ts,
         CASE WHEN x.d > 0 THEN 1::numeric WHEN p.short THEN -1::numeric ELSE 0::numeric END,
         NULL::numeric, NULL::numeric
  FROM x, p
  WHERE x.ts >= sma_crossover.run.start_ts
    AND ((x.pd < 0 AND x.d > 0) OR (x.pd > 0 AND x.d < 0))
$$;
COMMENT ON FUNCTION backtest.sma_crossover IS
  'Strategy sma_crossover: target 1 when SMA(fast) of the close crosses above SMA(slow), 0 (-1 with allow_short) when it crosses below; params fast, slow.';

SELECT backtest.register_strategy('sma_crossover', 'backtest.sma_crossover(backtest.runs)',
  'SMA crossover: long when the fast simple moving average of the close crosses above the slow one, flat (short when allowed) when it crosses below.',
  '{"fast": 10, "slow": 20}', '{"fast": [5, 10, 20], "slow": [20, 50, 100]}');
