-- A trader runs a backtest; the run is owned by its trading account (backtest.runs.owner_account_id), so it lists
-- in api.backtests for that trader only. The engine is backtest.run (docs/backtesting.md): the same validation
-- (BT001-BT004, raised: HTTP 400) and the same record of a run that fails on the way (kept with status failed and
-- its error; answered with HTTP 422 like a rejected order, and committed).
-- Bounds on the work one web request may cause, checked before anything is written (BT060, HTTP 400):
--   at most 20 symbols, and at most 50,000 bars of the run's symbols and interval in [start_ts, end_ts) (2,500 in
--   mode exact, which pays trading.advance_clock and trading.place_order per step); the role's statement_timeout
--   (trader 5 s, pgtrade_admin 30 s; db/superuser/1_1_roles.sql) bounds the rest (warm-up bars a strategy reads
--   before start_ts, a strategy with brackets that mode auto runs exact). Longer runs: the CLI or psql.
--   Measured on the dev machine (2 cores), sma_crossover as a trader request: 50,000 1-minute bars, fast,
--   2,566 fills: 2.7 s; GOOG daily 2004-2014 (2,148 bars, 93 fills), exact: 2.3-3.7 s; 5,000 1-minute bars exact
--   (254 fills): 6.8 s, past the trader's timeout.
CREATE OR REPLACE FUNCTION api.run_backtest(
  strategy text, symbols text[], "interval" text, start_ts timestamptz, end_ts timestamptz,
  params jsonb DEFAULT '{}', mode text DEFAULT 'auto', account text DEFAULT NULL)
RETURNS api.backtests
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _max_symbols constant integer := 20;
  _max_bars constant integer := CASE WHEN lower(run_backtest.mode) = 'exact' THEN 2500 ELSE 50000 END;
  _owner bigint := api.request_account_id(run_backtest.account);
  _syms text[];
  _bars bigint;
  _r backtest.runs;
  _row api.backtests;
BEGIN
  SELECT array_agg(DISTINCT upper(btrim(x))) INTO _syms FROM unnest(run_backtest.symbols) x WHERE x IS NOT NULL;
  IF cardinality(_syms) > _max_symbols THEN
    RAISE EXCEPTION 'a backtest through the API takes at most % symbols, not %', _max_symbols, cardinality(_syms)
      USING ERRCODE = 'BT060', HINT = 'split the symbols over several runs, or run it with the CLI (pgtrade backtest run)';
  END IF;
  -- literals, not parameters: TimescaleDB excludes chunks while planning (as backtest.bars does); counting stops
  -- one bar past the bound
  EXECUTE format($q$
    SELECT count(*) FROM (SELECT 1 FROM market.bars b
                          WHERE b.symbol = ANY (%L::text[]) AND b.interval = %L
                            AND b.ts >= %L::timestamptz AND b.ts < %L::timestamptz
                          LIMIT %s) n $q$,
    _syms, run_backtest.interval, run_backtest.start_ts, run_backtest.end_ts, _max_bars + 1)
  INTO _bars;
  IF _bars > _max_bars THEN
    RAISE EXCEPTION 'a backtest through the API reads at most % bars%, and this range holds more', _max_bars,
      CASE WHEN _max_bars = 2500 THEN ' in mode exact' ELSE '' END
      USING ERRCODE = 'BT060',
      DETAIL = format('more than %s %s bars of %s in [%s, %s)', _max_bars, run_backtest.interval, array_to_string(_syms, ', '), run_backtest.start_ts, run_backtest.end_ts),
      HINT = 'shorten the range, use a longer interval or fewer symbols, or run it with the CLI (pgtrade backtest run)';
  END IF;
  _r := backtest.run(run_backtest.strategy, run_backtest.symbols, run_backtest.interval, run_backtest.start_ts,
                     run_backtest.end_ts, coalesce(run_backtest.params, '{}'), run_backtest.mode,
                     owner_account_id => _owner);
  IF _r.status = 'failed' THEN
    PERFORM set_config('response.status', '422', true);  -- kept and committed, like a rejected order
  END IF;
  SELECT * INTO _row FROM api.backtests v WHERE v.id = _r.id;
  RETURN _row;
END
$$;
REVOKE ALL ON FUNCTION api.run_backtest(text, text[], text, timestamptz, timestamptz, jsonb, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api.run_backtest(text, text[], text, timestamptz, timestamptz, jsonb, text, text)
  TO trader, pgtrade_admin;
COMMENT ON FUNCTION api.run_backtest(text, text[], text, timestamptz, timestamptz, jsonb, text, text) IS
  'Run a backtest owned by your account: strategy (api.strategies), symbols, interval, [start_ts, end_ts), params (engine and strategy parameters, e.g. {"cash": 10000, "commission": 0.002, "fast": 10}), mode auto, fast or exact. Returns the run (api.backtests); its trades and equity curve are api.backtest_trades and api.backtest_equity. A run that fails on the way is returned with status failed and its error, HTTP 422. Bounds: at most 20 symbols and 50,000 bars per request, 2,500 in mode exact (BT060), and the role''s statement timeout. Administrators pass account. Errors: BT001 unknown strategy, BT002 symbols, BT003 interval or range, BT004 parameters or mode, BT060 too large, TR013 unknown account (admins); docs/errors.md.';
