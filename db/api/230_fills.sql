CREATE VIEW api.fills WITH (security_barrier) AS
SELECT f.id, f.order_id, f.account_id, a.name AS account, f.symbol, f.side, f.qty, f.price, f.ref_price,
       f.commission, f.slippage, f.realized_pnl, f.bar_ts, f.ts
FROM trading.fills f
JOIN trading.accounts a ON a.id = f.account_id
WHERE f.account_id = ANY ((SELECT api.request_accounts())::bigint[]);  -- the visibility rule (010)
GRANT SELECT ON api.fills TO trader, pgtrade_admin;
COMMENT ON VIEW api.fills IS 'The fills ledger: price, commission, slippage and realized P&L of every fill. A trader sees its own account.';
COMMENT ON COLUMN api.fills.ref_price IS 'Price before slippage.';
COMMENT ON COLUMN api.fills.bar_ts IS 'Open time of the bar that filled a resting order; empty for immediate market fills.';
