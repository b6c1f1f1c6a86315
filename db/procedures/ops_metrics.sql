-- Metrics (issue 14, section 3): what Prometheus scrapes through postgres_exporter's custom queries
-- (docker/postgres_exporter/queries.yaml), one function per query, each returning label columns then values.
-- Every metric, its type and meaning: docs/operations.md, "Metrics".
--
-- Who may call them: pgtrade_monitor only (the exporter's login, db/superuser/1_1_roles.sql), and it may call
-- nothing else of pgtrade and read no table of it. Two kinds:
-- - Server statistics (connections, transactions, cache, replication, statements): SECURITY INVOKER, run with
--   pgtrade_monitor's rights. The server shows other sessions' states, query texts and replication positions only
--   to members of pg_read_all_stats (pg_monitor); the owner, whose rights every api function runs with, is not
--   and should not become one.
-- - pgtrade's own data (bars, orders, fills, signals, anomalies, portfolios, alerts, hypertables): SECURITY
--   DEFINER, owned by pgtrade_owner, search path pinned; they return counts and the existing valuation
--   (trading.portfolio, the snapshots' drawdown), never rows.
-- Business metrics are about live accounts; backtest accounts are counted in pgtrade_backtest_runs alone.

GRANT USAGE ON SCHEMA ops TO pgtrade_monitor;

-- ---------------------------------------------------------------------------------------------------------------
-- Server statistics (SECURITY INVOKER)

CREATE OR REPLACE FUNCTION ops.metrics_connections()
RETURNS TABLE (state text, connections bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  -- every state pg_stat_activity knows, with 0 when none is in it (a dashboard line drops to 0 instead of ending)
  SELECT k.state, count(a.pid)
  FROM unnest(ARRAY['active', 'idle', 'idle in transaction', 'idle in transaction (aborted)',
                    'fastpath function call', 'disabled']) AS k(state)
  LEFT JOIN pg_stat_activity a ON a.backend_type = 'client backend' AND a.state = k.state
  GROUP BY k.state
$$;
COMMENT ON FUNCTION ops.metrics_connections IS
  'Metric pgtrade_connections{state}: client connections to the server (every database) by pg_stat_activity state.';

CREATE OR REPLACE FUNCTION ops.metrics_database()
RETURNS TABLE (xact_commit bigint, xact_rollback bigint, blks_hit bigint, blks_read bigint,
               cache_hit_ratio double precision, size_bytes bigint, deadlocks bigint, temp_bytes bigint,
               backends integer, max_connections integer)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT d.xact_commit, d.xact_rollback, d.blks_hit, d.blks_read,
         CASE WHEN d.blks_hit + d.blks_read > 0 THEN d.blks_hit::double precision / (d.blks_hit + d.blks_read) END,
         pg_database_size(d.datid), d.deadlocks, d.temp_bytes, d.numbackends,
         current_setting('max_connections')::integer
  FROM pg_stat_database d
  WHERE d.datname = current_database()
$$;
COMMENT ON FUNCTION ops.metrics_database IS
  'Metrics pgtrade_database_*: this database''s transaction, block and deadlock counters (pg_stat_database), cache hit ratio since the statistics reset, size in bytes, backends and max_connections.';

CREATE OR REPLACE FUNCTION ops.metrics_replication()
RETURNS TABLE (replica text, client_addr text, state text, lag_bytes numeric, write_lag_seconds double precision,
               flush_lag_seconds double precision, replay_lag_seconds double precision)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  -- one row per connected standby (none without a replica); lag in bytes of WAL not yet replayed there, and the
  -- server's measured write/flush/replay delays (0 when the standby has caught up and nothing is written)
  SELECT coalesce(nullif(r.application_name, ''), r.pid::text), coalesce(host(r.client_addr), 'local'), r.state,
         pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn),
         coalesce(extract(epoch FROM r.write_lag), 0)::double precision,
         coalesce(extract(epoch FROM r.flush_lag), 0)::double precision,
         coalesce(extract(epoch FROM r.replay_lag), 0)::double precision
  FROM pg_stat_replication r
  WHERE NOT pg_is_in_recovery()
$$;
COMMENT ON FUNCTION ops.metrics_replication IS
  'Metrics pgtrade_replication_*{replica,client_addr,state}: per streaming standby, WAL bytes not yet replayed and the write/flush/replay lag in seconds (pg_stat_replication); no rows without a replica.';

CREATE OR REPLACE FUNCTION ops.metrics_statements()
RETURNS TABLE (procedure text, toplevel boolean, calls bigint, total_seconds double precision,
               mean_seconds double precision, rows bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- pg_stat_statements answers only when the server preloads it (pgtrade/cluster.py); elsewhere: no rows
  IF to_regclass('public.pg_stat_statements') IS NULL
     OR NOT 'pg_stat_statements' = ANY(string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ',')) THEN
    RETURN;
  END IF;
  -- A statement belongs to the first pgtrade function it calls (schema-qualified, as every caller writes them:
  -- api.place_order from PostgREST, market.ingest_staged from the loaders, internal.process_closed from the bar
  -- trigger...), or is COPY into market.bars (the loaders' fast path). Other statements are left out, and so are
  -- utility statements (CREATE FUNCTION api.x(...), GRANT, COMMENT: migrate's), which name functions too.
  RETURN QUERY
  SELECT k.procedure, s.toplevel, sum(s.calls)::bigint, sum(s.total_exec_time) / 1000,
         sum(s.total_exec_time) / 1000 / nullif(sum(s.calls), 0), sum(s.rows)::bigint
  FROM public.pg_stat_statements s
  CROSS JOIN LATERAL (
    SELECT 'COPY market.bars' AS procedure
    WHERE s.query ~* '^\s*copy\s+"?market"?\s*\.\s*"?bars"?[\s(]'
    UNION ALL
    (SELECT f.nsp || '.' || f.fn
     FROM regexp_matches(s.query, '"?(api|trading|market|ml|backtest|ops|internal)"?\s*\.\s*"?([a-z_][a-z0-9_]*)"?\s*\(',
                         'gi') WITH ORDINALITY AS m(part, n)
     CROSS JOIN LATERAL (SELECT lower(m.part[1]) AS nsp, lower(m.part[2]) AS fn) f
     WHERE EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace ns ON ns.oid = p.pronamespace
                   WHERE ns.nspname = f.nsp AND p.proname = f.fn)
     ORDER BY m.n
     LIMIT 1)
    LIMIT 1) k
  WHERE s.dbid = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
    AND s.query ~* '^\s*(select|with|call|insert|update|delete|values|copy)\M'
  GROUP BY k.procedure, s.toplevel;
END
$$;
COMMENT ON FUNCTION ops.metrics_statements IS
  'Metrics pgtrade_statements_*{procedure,toplevel}: calls, total and mean execution time and rows of the statements that call each pgtrade function (pg_stat_statements, tracking nested statements too: toplevel false is a statement inside another function or trigger).';

-- ---------------------------------------------------------------------------------------------------------------
-- pgtrade's data (SECURITY DEFINER, owned by pgtrade_owner)

CREATE OR REPLACE FUNCTION ops.metrics_hypertables()
RETURNS TABLE (hypertable text, chunks bigint, compressed_chunks bigint, size_bytes bigint, max_chunk_bytes bigint,
               uncompressed_bytes bigint, compressed_bytes bigint, compression_ratio double precision)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  -- hypertables and continuous aggregates (named by their view; their data is in a materialization hypertable);
  -- compressed chunks count at their compressed size; the ratio is before / after over the compressed chunks
  WITH t AS (
    SELECT h.hypertable_schema || '.' || h.hypertable_name AS name,
           format('%I.%I', h.hypertable_schema, h.hypertable_name)::regclass AS rel
    FROM timescaledb_information.hypertables h
    WHERE h.hypertable_schema IN ('market', 'trading', 'ml', 'backtest', 'ops')
    UNION ALL
    SELECT ca.view_schema || '.' || ca.view_name,
           format('%I.%I', ca.materialization_hypertable_schema, ca.materialization_hypertable_name)::regclass
    FROM timescaledb_information.continuous_aggregates ca
    WHERE ca.view_schema IN ('market', 'trading', 'ml', 'backtest', 'ops')
  )
  -- the total is the chunks' sizes plus the root table's, which is what hypertable_detailed_size() adds up too
  -- (equal on the sample data with compressed chunks) at a fifth of its time (23 against 134 ms for 244 chunks)
  SELECT t.name, n.chunks, coalesce(c.number_compressed_chunks, 0),
         coalesce(n.bytes, 0) + pg_total_relation_size(t.rel), n.max_bytes,
         c.before_compression_total_bytes, c.after_compression_total_bytes,
         c.before_compression_total_bytes::double precision / nullif(c.after_compression_total_bytes, 0)
  FROM t
  CROSS JOIN LATERAL (SELECT count(*) AS chunks, sum(cs.total_bytes)::bigint AS bytes, max(cs.total_bytes) AS max_bytes
                      FROM public.chunks_detailed_size(t.rel) cs) n
  LEFT JOIN LATERAL (SELECT * FROM public.hypertable_compression_stats(t.rel)) c ON true
$$;
COMMENT ON FUNCTION ops.metrics_hypertables IS
  'Metrics pgtrade_hypertable_*{hypertable}: chunks, compressed chunks, total and largest chunk size, bytes before and after compression and their ratio (TimescaleDB''s size and compression statistics).';

CREATE OR REPLACE FUNCTION ops.metrics_bars()
RETURNS TABLE (symbol text, "interval" text, stored bigint, latest_timestamp_seconds double precision)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT b.symbol, b.interval, count(*), extract(epoch FROM max(b.ts))::double precision
  FROM market.bars b
  GROUP BY b.symbol, b.interval
$$;
COMMENT ON FUNCTION ops.metrics_bars IS
  'Metrics pgtrade_bars_*{symbol,interval}: bars stored in market.bars per series (ingested, less what retention dropped) and the open time of the newest one (Unix seconds).';

CREATE OR REPLACE FUNCTION ops.metrics_rejected_bars()
RETURNS TABLE (symbol text, "interval" text, total bigint)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  -- a refused bar's symbol or interval may be anything its input said: labels carry only known instruments and
  -- intervals (anything else is '(invalid)'), so bad input cannot make up label values without end
  SELECT coalesce(i.symbol, '(invalid)'), coalesce(iv.code, '(invalid)'), count(*)
  FROM market.rejected_bars r
  LEFT JOIN market.instruments i ON i.symbol = r.symbol
  LEFT JOIN market.intervals iv ON iv.code = r.interval
  GROUP BY 1, 2
$$;
COMMENT ON FUNCTION ops.metrics_rejected_bars IS
  'Metric pgtrade_rejected_bars_total{symbol,interval}: bars the ingest path refused (market.rejected_bars); unknown symbols and intervals count as ''(invalid)''.';

CREATE OR REPLACE FUNCTION ops.metrics_signals()
RETURNS TABLE (model text, kind text, signal text, total bigint)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT m.name, m.kind, s.signal, count(*)
  FROM ml.signals s JOIN ml.models m ON m.id = s.model_id
  GROUP BY m.name, m.kind, s.signal
$$;
COMMENT ON FUNCTION ops.metrics_signals IS
  'Metric pgtrade_signals_total{model,kind,signal}: signals scored, by model name, model kind and BUY/SELL/HOLD (ml.signals).';

CREATE OR REPLACE FUNCTION ops.metrics_anomalies()
RETURNS TABLE (type text, severity text, total bigint)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT a.type, a.severity, count(*) FROM ml.anomalies a GROUP BY a.type, a.severity
$$;
COMMENT ON FUNCTION ops.metrics_anomalies IS
  'Metric pgtrade_anomalies_total{type,severity}: anomalous bars detected (ml.anomalies).';

CREATE OR REPLACE FUNCTION ops.metrics_orders()
RETURNS TABLE (account text, status text, orders bigint)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT a.name, o.status, count(*)
  FROM trading.orders o JOIN trading.accounts a ON a.id = o.account_id
  WHERE a.kind = 'live'
  GROUP BY a.name, o.status
$$;
COMMENT ON FUNCTION ops.metrics_orders IS
  'Metric pgtrade_orders_count{account,status}: orders of each live account by status (trading.orders; an order moves between statuses, so a gauge).';

CREATE OR REPLACE FUNCTION ops.metrics_fills()
RETURNS TABLE (account text, total bigint, value_total numeric, commission_total numeric)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT a.name, count(*), sum(f.qty * f.price), sum(f.commission)
  FROM trading.fills f JOIN trading.accounts a ON a.id = f.account_id
  WHERE a.kind = 'live'
  GROUP BY a.name
$$;
COMMENT ON FUNCTION ops.metrics_fills IS
  'Metrics pgtrade_fills_total, pgtrade_fills_value_total, pgtrade_fills_commission_total{account}: fills of each live account, their traded value (qty x price) and commissions (trading.fills).';

CREATE OR REPLACE FUNCTION ops.metrics_rejections()
RETURNS TABLE (account text, code text, total bigint)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT a.name, o.reject_code, count(*)
  FROM trading.orders o JOIN trading.accounts a ON a.id = o.account_id
  WHERE a.kind = 'live' AND o.status = 'rejected'
  GROUP BY a.name, o.reject_code
$$;
COMMENT ON FUNCTION ops.metrics_rejections IS
  'Metric pgtrade_rejections_total{account,code}: orders of each live account rejected, by the rule that refused them (reject_code, docs/errors.md).';

CREATE OR REPLACE FUNCTION ops.metrics_portfolio()
RETURNS TABLE (account text, value numeric, cash numeric, positions_value numeric, realized_pnl numeric,
               unrealized_pnl numeric, net_pnl numeric, commissions numeric, gross_exposure numeric,
               drawdown_ratio numeric, peak_value numeric, snapshot_timestamp_seconds double precision)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  -- now: trading.portfolio, the one valuation; drawdown and its peak: the newest snapshot (trading.snapshot_portfolio,
  -- every minute by pg_cron), which is where the drawdown rule lives
  SELECT a.name, p.total_value, p.cash, p.positions_value, p.realized_pnl, p.unrealized_pnl, p.net_pnl,
         p.commissions, p.gross_exposure, s.drawdown, s.peak_value, extract(epoch FROM s.ts)::double precision
  FROM trading.accounts a
  CROSS JOIN LATERAL trading.portfolio(a.id) p
  LEFT JOIN LATERAL (SELECT ps.drawdown, ps.peak_value, ps.ts FROM trading.portfolio_snapshots ps
                     WHERE ps.account_id = a.id ORDER BY ps.ts DESC LIMIT 1) s ON true
  WHERE a.kind = 'live'
$$;
COMMENT ON FUNCTION ops.metrics_portfolio IS
  'Metrics pgtrade_portfolio_*{account}: each live account''s value, cash, positions value, realized, unrealized and net P&L, commissions and gross exposure (trading.portfolio), and drawdown from peak with the peak at its newest snapshot (trading.portfolio_snapshots).';

CREATE OR REPLACE FUNCTION ops.metrics_alerts()
RETURNS TABLE (kind text, severity text, open bigint, total bigint)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT al.kind, al.severity, count(*) FILTER (WHERE al.acknowledged_at IS NULL), count(*)
  FROM ops.alerts al
  GROUP BY al.kind, al.severity
$$;
COMMENT ON FUNCTION ops.metrics_alerts IS
  'Metrics pgtrade_alerts_open and pgtrade_alerts_total{kind,severity}: alerts not acknowledged yet, and all alerts raised (ops.alerts).';

CREATE OR REPLACE FUNCTION ops.metrics_backtests()
RETURNS TABLE (status text, runs bigint)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT r.status, count(*) FROM backtest.runs r GROUP BY r.status
$$;
COMMENT ON FUNCTION ops.metrics_backtests IS
  'Metric pgtrade_backtest_runs{status}: backtest runs by status (backtest.runs: running, done, failed).';

DO $$
DECLARE
  _f text;
BEGIN
  FOREACH _f IN ARRAY ARRAY[
    'ops.metrics_connections()', 'ops.metrics_database()', 'ops.metrics_replication()', 'ops.metrics_statements()',
    'ops.metrics_hypertables()', 'ops.metrics_bars()', 'ops.metrics_rejected_bars()', 'ops.metrics_signals()',
    'ops.metrics_anomalies()', 'ops.metrics_orders()', 'ops.metrics_fills()', 'ops.metrics_rejections()',
    'ops.metrics_portfolio()', 'ops.metrics_alerts()', 'ops.metrics_backtests()'] LOOP
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', _f);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO pgtrade_monitor', _f);
  END LOOP;
END
$$;
