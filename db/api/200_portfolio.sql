-- Views run with their owner's privileges on tables, but functions they call are checked against the caller
-- (PostgreSQL, CREATE VIEW), so these views compute from the tables directly instead of calling trading.*.
-- Row filter (security barrier, so no caller-supplied condition runs before it): api.request_accounts(), the one
-- visibility rule of every account view.
CREATE VIEW api.portfolio WITH (security_barrier) AS
SELECT a.id AS account_id, a.name AS account, a.currency, a.kind, a.paused, c.now AS as_of,
       a.cash, coalesce(p.mv, 0) AS positions_value, a.cash + coalesce(p.mv, 0) AS total_value,
       a.initial_cash, a.realized_pnl, coalesce(p.upnl, 0) AS unrealized_pnl, a.commissions,
       a.cash + coalesce(p.mv, 0) - a.initial_cash AS net_pnl,
       coalesce(s.total_value, a.initial_cash) AS day_start_value,
       a.cash + coalesce(p.mv, 0) - coalesce(s.total_value, a.initial_cash) AS day_change,
       CASE WHEN coalesce(s.total_value, a.initial_cash) > 0
            THEN round((a.cash + coalesce(p.mv, 0) - coalesce(s.total_value, a.initial_cash))
                       / coalesce(s.total_value, a.initial_cash) * 100, 4) END AS day_change_pct
FROM trading.accounts a
CROSS JOIN LATERAL (SELECT CASE a.clock_mode WHEN 'manual' THEN a.clock_ts ELSE now() END AS now) c
LEFT JOIN LATERAL (SELECT sum(v.value) AS mv, sum(v.unrealized_pnl) AS upnl  -- the valuation rule
                   FROM trading.position_values v WHERE v.account_id = a.id AND v.qty <> 0) p ON true
LEFT JOIN LATERAL (SELECT ps.total_value FROM trading.portfolio_snapshots ps
                   WHERE ps.account_id = a.id AND ps.ts < date_trunc('day', c.now, 'UTC')
                   ORDER BY ps.ts DESC LIMIT 1) s ON true
WHERE a.id = ANY ((SELECT api.request_accounts())::bigint[]);  -- the visibility rule (010)
GRANT SELECT ON api.portfolio TO trader, pgtrade_admin;
COMMENT ON VIEW api.portfolio IS
  'One row per account: cash, market value of open positions (at their mark prices), total, realized P&L (gross of commission), unrealized P&L, commissions, and the change since the start of the current UTC day of the account clock. Identity: total_value = initial_cash + realized_pnl + unrealized_pnl - commissions. A trader sees its own account.';
COMMENT ON COLUMN api.portfolio.as_of IS 'The account clock: now for live accounts, the simulated time for backtests.';
COMMENT ON COLUMN api.portfolio.paused IS 'A paused account rejects new orders (TR007); see rpc/pause_trading and rpc/resume_trading.';
COMMENT ON COLUMN api.portfolio.net_pnl IS 'total_value - initial_cash.';
COMMENT ON COLUMN api.portfolio.day_start_value IS 'Total value of the last snapshot before the current UTC day began, or the initial cash when there is none.';
COMMENT ON COLUMN api.portfolio.day_change IS 'total_value - day_start_value.';
COMMENT ON COLUMN api.portfolio.day_change_pct IS 'day_change as % of day_start_value.';
