-- What strategies and the engine read: the bars of a run, and the strategy registry's one write path.

-- The bars of a run: its symbols' bars of its interval in [start_ts, end_ts), plus up to `warmup` bars per symbol
-- before start_ts (indicators need history; decisions are only taken inside the range). Every strategy and the
-- engine read bars through this function only, so a run sees one set of bars.
-- Dynamic SQL with the times and symbols as literals, as market.price_at does: TimescaleDB then excludes chunks
-- while planning (a generic plan of the same query started up every chunk of the hypertable: 1.8 s for GOOG).
CREATE OR REPLACE FUNCTION backtest.bars(run backtest.runs, warmup integer DEFAULT 0)
RETURNS SETOF market.ohlcv
LANGUAGE plpgsql STABLE
AS $$
BEGIN
  IF coalesce(bars.warmup, 0) > 0 THEN
    RETURN QUERY EXECUTE format($q$
      SELECT x.symbol, x.interval, x.ts, x.open, x.high, x.low, x.close, x.volume
      FROM unnest(%1$L::text[]) s(symbol)
      CROSS JOIN LATERAL (
        SELECT b.symbol, b.interval, b.ts, b.open, b.high, b.low, b.close, b.volume
        FROM market.bars b
        WHERE b.symbol = s.symbol AND b.interval = %2$L AND b.ts < %3$L::timestamptz
        ORDER BY b.ts DESC
        LIMIT %5$s) x $q$,
      bars.run.symbols, bars.run.interval, bars.run.start_ts, bars.run.end_ts, bars.warmup);
  END IF;
  RETURN QUERY EXECUTE format($q$
    SELECT b.symbol, b.interval, b.ts, b.open, b.high, b.low, b.close, b.volume
    FROM market.bars b
    WHERE b.symbol = ANY (%1$L::text[]) AND b.interval = %2$L
      AND b.ts >= %3$L::timestamptz AND b.ts < %4$L::timestamptz $q$,
    bars.run.symbols, bars.run.interval, bars.run.start_ts, bars.run.end_ts);
END
$$;
COMMENT ON FUNCTION backtest.bars IS
  'The bars a run sees: its symbols'' bars of its interval in [start_ts, end_ts) and up to warmup bars per symbol before start_ts. Strategies read bars through this function only.';

CREATE OR REPLACE FUNCTION backtest.register_strategy(name text, fn regprocedure, description text,
                                                      defaults jsonb DEFAULT '{}', grid jsonb DEFAULT '{}')
RETURNS backtest.strategies
LANGUAGE plpgsql
AS $$
DECLARE
  _row backtest.strategies;
BEGIN
  IF NOT (SELECT p.pronargs = 1 AND p.proargtypes[0] = 'backtest.runs'::regtype
          FROM pg_catalog.pg_proc p WHERE p.oid = register_strategy.fn) THEN
    RAISE EXCEPTION 'strategy function % must take one argument of type backtest.runs', register_strategy.fn
      USING ERRCODE = 'BT010', HINT = 'CREATE FUNCTION my_strategy(run backtest.runs) RETURNS SETOF backtest.decision (docs/backtesting.md)';
  END IF;
  IF (SELECT p.prorettype FROM pg_catalog.pg_proc p WHERE p.oid = register_strategy.fn) <> 'backtest.decision'::regtype
     OR NOT (SELECT p.proretset FROM pg_catalog.pg_proc p WHERE p.oid = register_strategy.fn) THEN
    RAISE EXCEPTION 'strategy function % must return SETOF backtest.decision', register_strategy.fn
      USING ERRCODE = 'BT010', HINT = 'RETURNS SETOF backtest.decision: (symbol, ts, target, stop_loss, take_profit)';
  END IF;
  INSERT INTO backtest.strategies AS s (name, fn, description, defaults, grid)
  VALUES (register_strategy.name, register_strategy.fn, register_strategy.description,
          coalesce(register_strategy.defaults, '{}'), coalesce(register_strategy.grid, '{}'))
  ON CONFLICT ON CONSTRAINT strategies_pkey DO UPDATE
    SET fn = excluded.fn, description = excluded.description, defaults = excluded.defaults, grid = excluded.grid
  RETURNING * INTO _row;
  RETURN _row;
END
$$;
COMMENT ON FUNCTION backtest.register_strategy IS
  'Register (or update) a strategy: its deciding function fn(run backtest.runs) RETURNS SETOF backtest.decision, a description, default parameters and the default walk-forward grid ({"param": [values...]}). BT010 when the function has the wrong shape.';
