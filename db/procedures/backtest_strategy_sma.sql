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
  ), m AS (
    SELECT b.symbol, b.ts,
           CASE WHEN b.n >= p.fast THEN (b.cs - coalesce(lag(b.cs, p.fast) OVER w, 0)) / p.fast END AS f,
           CASE WHEN b.n >= p.slow THEN (b.cs - coalesce(lag(b.cs, p.slow) OVER w, 0)) / p.slow END AS s
    FROM b, p WINDOW w AS (PARTITION BY b.symbol ORDER BY b.ts)
  ), x AS (
    SELECT m.symbol, m.ts, m.f, m.s, lag(m.f) OVER w AS pf, lag(m.s) OVER w AS ps
    FROM m WINDOW w AS (PARTITION BY m.symbol ORDER BY m.ts)
  )
  SELECT x.symbol, x.ts,
         CASE WHEN x.pf < x.ps AND x.f > x.s THEN 1::numeric
              WHEN x.pf > x.ps AND x.f < x.s THEN CASE WHEN p.short THEN -1::numeric ELSE 0::numeric END
         END,
         NULL::numeric, NULL::numeric
  FROM x, p
  WHERE x.ts >= sma_crossover.run.start_ts
    AND ((x.pf < x.ps AND x.f > x.s) OR (x.pf > x.ps AND x.f < x.s))
$$;
COMMENT ON FUNCTION backtest.sma_crossover IS
  'Strategy sma_crossover: target 1 when SMA(fast) of the close crosses above SMA(slow), 0 (-1 with allow_short) when it crosses below; params fast, slow.';

SELECT backtest.register_strategy('sma_crossover', 'backtest.sma_crossover(backtest.runs)',
  'SMA crossover: long when the fast simple moving average of the close crosses above the slow one, flat (short when allowed) when it crosses below.',
  '{"fast": 10, "slow": 20}', '{"fast": [5, 10, 20], "slow": [20, 50, 100]}');
