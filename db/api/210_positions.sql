CREATE VIEW api.positions WITH (security_barrier) AS
SELECT x.account_id, a.name AS account, x.symbol, x.qty, x.avg_price, x.cost_basis, x.last_price, x.last_price_at,
       x.market_value, x.unrealized_pnl, x.realized_pnl, x.commissions, x.opened_at, x.updated_at, x.closed_at
FROM trading.positions x
JOIN trading.accounts a ON a.id = x.account_id
WHERE x.account_id = ANY ((SELECT api.request_accounts())::bigint[]);  -- the visibility rule (010)
GRANT SELECT ON api.positions TO trader, pgtrade_admin;
COMMENT ON VIEW api.positions IS
  'Positions per account and symbol (average-cost method). Closed positions (qty 0) keep their realized P&L: filter open ones with ?qty=neq.0. A trader sees its own account.';
COMMENT ON COLUMN api.positions.qty IS 'Signed quantity (negative = short).';
COMMENT ON COLUMN api.positions.cost_basis IS 'Signed cost of the open quantity; avg_price = cost_basis / qty.';
COMMENT ON COLUMN api.positions.realized_pnl IS 'Realized P&L of this symbol, gross of commission (see commissions).';
COMMENT ON COLUMN api.positions.unrealized_pnl IS 'qty x last_price - cost_basis.';
