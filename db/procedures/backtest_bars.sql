-- What strategies and the engine read: the bars of a run, and the strategy registry's one write path.

-- The bars of a run: its symbols' bars of its interval in [start_ts, end_ts), plus up to `warmup` bars per symbol
-- before start_ts (indicators need history; decisions are only taken inside the range). Every strategy and the
-- engine read bars through this function only, so a run sees one set of bars.
-- As of the run's data version (backtest.runs.data_version, set by internal.backtest_fingerprint): when closed bars
-- of its series were corrected, deleted or backfilled after it (market.revised_since), the run reads them as they
-- were (market.bars_as_of), so a run, and backtest.rerun of it, sees the same bars whatever was revised since.
-- Otherwise (the common case) the current bars, by the same queries as before versions existed.
-- Dynamic SQL with the times and symbols as literals, as market.price_at does: TimescaleDB then excludes chunks
-- while planning (a generic plan of the same query started up every chunk of the hypertable: 1.8 s for GOOG).
-- The largest warmup asked for is noted for the run (transaction-local setting pgtrade.backtest_warmup,
-- 'run_id:bars'): internal.backtest_fingerprint_warmup adds those bars to the run's data hash.
CREATE OR REPLACE FUNCTION backtest.bars(run backtest.runs, warmup integer DEFAULT 0)
RETURNS SETOF market.ohlcv
LANGUAGE plpgsql STABLE
AS $$
DECLARE
  _noted text;
BEGIN
  IF coalesce(bars.warmup, 0) > 0 AND bars.run.id IS NOT NULL THEN
    _noted := current_setting('pgtrade.backtest_warmup', true);
    IF coalesce(split_part(_noted, ':', 1), '') <> bars.run.id::text
       OR coalesce(nullif(split_part(_noted, ':', 2), '')::integer, 0) < bars.warmup THEN
      PERFORM set_config('pgtrade.backtest_warmup', format('%s:%s', bars.run.id, bars.warmup), true);
    END IF;
  END IF;
  IF market.revised_since(bars.run.symbols, bars.run.interval, bars.run.end_ts, bars.run.data_version) THEN
    RETURN QUERY SELECT * FROM market.bars_as_of(bars.run.symbols, bars.run.interval, bars.run.start_ts,
                                                 bars.run.end_ts, bars.run.data_version, bars.warmup);
    RETURN;
  END IF;
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
  'The bars a run sees: its symbols'' bars of its interval in [start_ts, end_ts) and up to warmup bars per symbol before start_ts, as of the run''s data version (closed bars revised since read as they were). Strategies read bars through this function only.';

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
