-- Backtest runs through the API (issue 13): a trader sees the runs it started (api.run_backtest records its
-- account as the run's owner); an administrator sees every run, those started from psql or the CLI included (they
-- have no owner: they are matched by the run's own backtest account, which an administrator's visibility covers;
-- a failed run of that kind has no account left and is not listed). The run's own backtest account is not served:
-- its trades and equity curve are api.backtest_trades and api.backtest_equity.
CREATE VIEW api.backtests WITH (security_barrier) AS
SELECT r.id, o.name AS account, r.parent_id, r.purpose, r.strategy, r.symbols, r."interval", r.start_ts, r.end_ts,
       r.params, r.mode, r.status, r.error, r.params_hash, r.schema_version, r.code_hash, r.data_hash,
       r.data_version, r.bars, r.decisions, r.orders, r.fills, r.metrics, r.created_at, r.finished_at, r.elapsed_ms
FROM backtest.runs r
LEFT JOIN trading.accounts o ON o.id = r.owner_account_id
WHERE r.owner_account_id = ANY ((SELECT api.request_accounts())::bigint[])  -- the visibility rule (010)
   OR (r.owner_account_id IS NULL AND r.account_id = ANY ((SELECT api.request_accounts())::bigint[]));
GRANT SELECT ON api.backtests TO trader, pgtrade_admin;
COMMENT ON VIEW api.backtests IS
  'Backtest runs: strategy, symbols, interval, range [start_ts, end_ts), the full parameters, engine mode, status (running, done, failed, with the error), the hashes that make the run reproducible, counts, metrics and timing. A trader sees the runs it started (rpc/run_backtest); an administrator every run.';
COMMENT ON COLUMN api.backtests.account IS 'The trading account that started the run through the API (empty for runs from psql or the CLI).';
COMMENT ON COLUMN api.backtests.params IS 'Every parameter the run used, defaults filled in (docs/backtesting.md).';
COMMENT ON COLUMN api.backtests.metrics IS 'The run''s metrics (docs/backtesting.md, section Metrics).';
COMMENT ON COLUMN api.backtests.error IS 'Why a failed run failed: SQLSTATE, message and hint.';
