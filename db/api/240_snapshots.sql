CREATE VIEW api.snapshots WITH (security_barrier) AS
SELECT s.account_id, a.name AS account, s.ts, s.cash, s.positions_value, s.total_value, s.realized_pnl,
       s.unrealized_pnl, s.commissions, s.peak_value, s.drawdown
FROM trading.portfolio_snapshots s
JOIN trading.accounts a ON a.id = s.account_id
WHERE s.account_id = ANY ((SELECT api.request_accounts())::bigint[]);  -- the visibility rule (010)
GRANT SELECT ON api.snapshots TO trader, pgtrade_admin;
COMMENT ON VIEW api.snapshots IS 'Portfolio value over time (every minute for live accounts), with peak and drawdown. A trader sees its own account.';
COMMENT ON COLUMN api.snapshots.drawdown IS 'Fraction below the highest total_value seen so far (0 at a peak).';
