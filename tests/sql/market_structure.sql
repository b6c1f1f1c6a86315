-- Structural guards for the market schema (pgTAP). Run by tests/test_pgtap.py inside a rolled-back transaction.
SELECT plan(16);

SELECT has_extension('timescaledb', 'TimescaleDB is installed');
SELECT has_extension('plpython3u', 'PL/Python is installed');
SELECT is((SELECT count(*)::int FROM timescaledb_information.hypertables
           WHERE hypertable_schema = 'market' AND hypertable_name = 'bars'), 1, 'market.bars is a hypertable');
SELECT is((SELECT time_interval FROM timescaledb_information.dimensions
           WHERE hypertable_schema = 'market' AND hypertable_name = 'bars' AND column_name = 'ts'),
          interval '30 days', 'market.bars chunks are 30 days');
SELECT is((SELECT array_agg(attname::text ORDER BY segmentby_column_index)
           FROM timescaledb_information.compression_settings
           WHERE hypertable_schema = 'market' AND hypertable_name = 'bars' AND segmentby_column_index IS NOT NULL),
          ARRAY['symbol', 'interval'], 'compression segments by symbol and interval');
SELECT is((SELECT attname::text FROM timescaledb_information.compression_settings
           WHERE hypertable_schema = 'market' AND hypertable_name = 'bars' AND orderby_column_index = 1),
          'ts', 'compression orders by ts');
SELECT is((SELECT count(*)::int FROM timescaledb_information.jobs
           WHERE proc_name = 'policy_compression' AND hypertable_schema = 'market' AND hypertable_name = 'bars'),
          1, 'a compression policy is set on market.bars');
SELECT is((SELECT count(*)::int FROM timescaledb_information.continuous_aggregates
           WHERE view_schema = 'market' AND NOT materialized_only), 3,
          'three real-time continuous aggregates');
SELECT is((SELECT count(*)::int FROM timescaledb_information.jobs j
           JOIN timescaledb_information.continuous_aggregates c
             ON c.view_name = j.hypertable_name AND c.view_schema = j.hypertable_schema
           WHERE j.proc_name = 'policy_refresh_continuous_aggregate' AND c.view_schema = 'market'), 3,
          'each continuous aggregate has a refresh policy');
SELECT col_is_pk('market', 'bars', ARRAY['symbol', 'interval', 'ts'], 'bars primary key is (symbol, interval, ts)');
SELECT col_type_is('market', 'bars', 'open', 'numeric', 'prices are numeric');
SELECT col_type_is('market', 'bars', 'ts', 'timestamp with time zone', 'ts is timestamptz');
SELECT has_table('market', 'rejected_bars', 'rejected bars are kept');
SELECT is((SELECT count(*)::int FROM pg_trigger WHERE tgrelid = 'market.bars'::regclass
           AND tgname LIKE '_010_validate_%'), 2, 'bars are validated on insert and update');
SELECT is(
  (SELECT count(*)::int FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname IN ('market', 'trading', 'ml', 'backtest', 'ops') AND c.relkind IN ('r', 'p')
     AND NOT c.relname LIKE '\_%'
     AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p')),
  0, 'every table has a primary key');
SELECT is(
  (SELECT count(*)::int FROM pg_constraint k
   WHERE k.contype = 'f' AND k.connamespace::regnamespace::text IN ('market', 'trading', 'ml', 'backtest', 'ops')
     AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = k.conrelid
                     AND (string_to_array(i.indkey::text, ' ')::int2[])[1:array_length(k.conkey, 1)] @> k.conkey
                     AND (string_to_array(i.indkey::text, ' ')::int2[])[1:array_length(k.conkey, 1)] <@ k.conkey)),
  0, 'every foreign key is indexed');

SELECT * FROM finish();
