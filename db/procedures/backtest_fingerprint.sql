-- What makes a run reproducible: the hash of its parameters, the schema version, a hash of the code that ran (the
-- bodies of every function of the schemas a run goes through) and a hash of the bars it saw.
CREATE OR REPLACE FUNCTION internal.backtest_fingerprint(run backtest.runs)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  UPDATE backtest.runs r
     SET params_hash = md5(backtest_fingerprint.run.params::text),
         schema_version = (SELECT max(m.version) FROM ops.schema_migrations m),
         code_hash = (SELECT md5(string_agg(p.oid::regprocedure::text || ':' || md5(p.prosrc), ',' ORDER BY p.oid::regprocedure::text))
                      FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                      WHERE n.nspname IN ('market', 'trading', 'internal', 'backtest', 'ml')),
         (data_hash, bars) = (SELECT md5(string_agg(concat_ws(',', b.symbol, b.ts, b.open, b.high, b.low, b.close, b.volume),
                                                   E'\n' ORDER BY b.symbol, b.ts)), count(*)::int
                              FROM backtest.bars(backtest_fingerprint.run) b)
   WHERE r.id = backtest_fingerprint.run.id;
END
$$;
COMMENT ON FUNCTION internal.backtest_fingerprint IS
  'Internal: record a run''s parameter hash, schema version, code hash (function bodies of market, trading, internal, backtest, ml) and data hash and count of the bars it sees.';
