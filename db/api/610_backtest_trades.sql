-- The trade list of the runs a request may see (api.backtests' rule): the round trips of backtest.trades.
CREATE VIEW api.backtest_trades WITH (security_barrier) AS
SELECT t.*
FROM backtest.trades t
JOIN backtest.runs r ON r.id = t.run_id
WHERE r.owner_account_id = ANY ((SELECT api.request_accounts())::bigint[])
   OR (r.owner_account_id IS NULL AND r.account_id = ANY ((SELECT api.request_accounts())::bigint[]));
GRANT SELECT ON api.backtest_trades TO trader, pgtrade_admin;
COMMENT ON VIEW api.backtest_trades IS
  'The trades of the backtest runs you may see (filter by run_id): the round-trip trades of each run (entry and exit, P&L, commissions). A trader sees its own runs.';
