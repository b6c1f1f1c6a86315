-- Re-running a stored run (docs/backtesting.md, Reproducibility): a new run (purpose 'rerun', parent_id = the
-- original) with the original's strategy, symbols, interval, range, resolved parameters and engine mode, reading
-- the bars as of the original's data version (bars corrected, deleted or backfilled since read as they were), and
-- a comparison with the original: the data hash, every fill, the metrics and the counts. A different code hash
-- or schema version is said in the notes: different code may give different results.
CREATE OR REPLACE FUNCTION backtest.rerun(run_id bigint)
RETURNS TABLE (rerun_id bigint, original_id bigint, status text, identical boolean, same_data boolean,
               same_fills boolean, same_metrics boolean, same_code boolean, same_schema boolean, notes text[])
LANGUAGE plpgsql
AS $$
DECLARE
  _o backtest.runs;
  _r backtest.runs;
  _notes text[] := ARRAY[]::text[];
BEGIN
  SELECT * INTO _o FROM backtest.runs r WHERE r.id = rerun.run_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown backtest run %', coalesce(rerun.run_id::text, 'NULL') USING ERRCODE = 'BT061',
      HINT = 'pass the id of a stored run (backtest.runs; pgtrade backtest list)';
  END IF;
  IF _o.status <> 'done' THEN
    RAISE EXCEPTION 'backtest run % is %, only a finished run can be re-run', _o.id, _o.status USING ERRCODE = 'BT062',
      DETAIL = coalesce(_o.error, ''),
      HINT = 'a failed run kept nothing to compare with: start a new one with backtest.run';
  END IF;
  -- the data version for the new run's fingerprint (internal.backtest_data_version); reset after, so nothing else
  -- in this transaction reads as of it
  PERFORM set_config('pgtrade.backtest_as_of', format('%s:%s', _o.id, _o.data_version), true);
  _r := backtest.run(_o.strategy, _o.symbols, _o.interval, _o.start_ts, _o.end_ts, _o.params, _o.mode, _o.id, 'rerun',
                     _o.owner_account_id);
  PERFORM set_config('pgtrade.backtest_as_of', '', true);

  rerun_id := _r.id;
  original_id := _o.id;
  status := _r.status;
  IF _o.data_version IS NULL THEN
    _notes := _notes || 'the original run has no data version: re-run on the current bars'::text;
  END IF;
  IF _r.status <> 'done' THEN
    identical := false;
    _notes := _notes || format('the re-run failed: %s', _r.error);
    notes := _notes;
    RETURN NEXT;
    RETURN;
  END IF;
  same_data := _r.data_hash IS NOT DISTINCT FROM _o.data_hash AND _r.bars IS NOT DISTINCT FROM _o.bars
               AND _r.warmup IS NOT DISTINCT FROM _o.warmup;
  same_fills := NOT EXISTS (
    SELECT 1
    FROM (SELECT row_number() OVER (ORDER BY f.id) AS n, f.symbol, f.side, f.qty, f.price, f.ref_price, f.commission,
                 f.slippage, f.realized_pnl, f.bar_ts, f.ts
          FROM trading.fills f WHERE f.account_id = _o.account_id) a
    FULL JOIN (SELECT row_number() OVER (ORDER BY f.id) AS n, f.symbol, f.side, f.qty, f.price, f.ref_price,
                      f.commission, f.slippage, f.realized_pnl, f.bar_ts, f.ts
               FROM trading.fills f WHERE f.account_id = _r.account_id) b ON b.n = a.n
    WHERE a IS DISTINCT FROM b);
  same_metrics := _r.metrics IS NOT DISTINCT FROM _o.metrics;
  same_code := _r.code_hash IS NOT DISTINCT FROM _o.code_hash;
  same_schema := _r.schema_version IS NOT DISTINCT FROM _o.schema_version;
  identical := same_data AND same_fills AND same_metrics
               AND (_r.decisions, _r.orders, _r.fills) IS NOT DISTINCT FROM (_o.decisions, _o.orders, _o.fills);
  IF NOT same_code THEN
    _notes := _notes || 'the code differs from the original''s (code hash: functions of market, trading, internal, backtest or ml changed): different code may give different results'::text;
  END IF;
  IF NOT same_schema THEN
    _notes := _notes || format('the schema version differs: %s when the original ran, %s now',
                               coalesce(_o.schema_version, 'unknown'), _r.schema_version);
  END IF;
  IF _r.params_hash IS DISTINCT FROM _o.params_hash THEN
    _notes := _notes || 'the resolved parameters differ (the strategy''s defaults changed since)'::text;
  END IF;
  IF NOT same_data THEN
    _notes := _notes || format('the bars read differ (%s bars, hash %s; the original: %s bars, hash %s): bars still forming when the original ran, or changed without a revision (retention, TRUNCATE, drop_chunks)',
                               _r.bars, _r.data_hash, _o.bars, _o.data_hash);
  END IF;
  IF same_data AND NOT identical THEN
    _notes := _notes || 'the same bars gave different results'::text;
  END IF;
  notes := _notes;
  RETURN NEXT;
END
$$;
COMMENT ON FUNCTION backtest.rerun IS
  'Re-run a stored run as of its data version: a new run (purpose rerun, parent_id = the original) with the same strategy, symbols, range, parameters and mode on the bars as the original read them. Returns the new run''s id and status and whether it reproduced the original (data hash, fills, metrics, counts), whether code and schema version are the same, and notes on any difference. BT061 unknown run, BT062 a run that did not finish.';
