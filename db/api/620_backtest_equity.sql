-- The equity curve of the runs a request may see (api.backtests' rule): the portfolio snapshots of each run's
-- backtest account, one per bar close (the state before the orders placed at that instant).
CREATE VIEW api.backtest_equity WITH (security_barrier) AS
SELECT r.id AS run_id, s.ts, s.cash, s.positions_value, s.total_value, s.realized_pnl, s.unrealized_pnl,
       s.commissions, s.peak_value, s.drawdown
FROM backtest.runs r
JOIN trading.portfolio_snapshots s ON s.account_id = r.account_id
WHERE r.owner_account_id = ANY ((SELECT api.request_accounts())::bigint[])  -- the visibility rule (010)
   OR (r.owner_account_id IS NULL AND r.account_id = ANY ((SELECT api.request_accounts())::bigint[]));
GRANT SELECT ON api.backtest_equity TO trader, pgtrade_admin;
COMMENT ON VIEW api.backtest_equity IS
  'The equity curve of the backtest runs you may see (filter by run_id): one row per bar close with cash, positions value, total value, realized and unrealized P&L, commissions, peak and drawdown. A trader sees its own runs.';
COMMENT ON COLUMN api.backtest_equity.ts IS 'Close time of a bar; the values are those before the orders placed at that instant.';
COMMENT ON COLUMN api.backtest_equity.drawdown IS 'Fraction below the highest total_value seen so far (0 at a peak).';
