-- Auto-trading settings of the caller's own account (administrators: every account's). An account without a row
-- has never been configured: auto-trading is off for it until rpc/set_auto_trading creates the row.
CREATE VIEW api.auto_trading WITH (security_barrier) AS
SELECT t.account_id, a.name AS account, a.kind AS account_kind, a.paused, t.enabled, t.models, t.min_confidence,
       t.size_fraction, t.use_brackets, t.updated_at
FROM trading.auto_trading t
JOIN trading.accounts a ON a.id = t.account_id
WHERE t.account_id = ANY ((SELECT api.request_accounts())::bigint[]);  -- the visibility rule (010)
GRANT SELECT ON api.auto_trading TO trader, pgtrade_admin;
COMMENT ON VIEW api.auto_trading IS
  'Auto-trading settings of your account: when enabled (and the account is live and not paused), BUY/SELL signals of these model names (empty: every active direction model) with confidence >= min_confidence become orders (source signal) sized at size_fraction x confidence of the account''s max position, with the signal''s stop-loss and take-profit when use_brackets. No row: never configured (off). Change with rpc/set_auto_trading. A trader sees its own account.';
COMMENT ON COLUMN api.auto_trading.models IS 'Model names whose signals trade; empty: every active direction model.';
COMMENT ON COLUMN api.auto_trading.paused IS 'A paused account places no orders, auto-trading included (rpc/pause_trading, rpc/resume_trading).';
COMMENT ON COLUMN api.auto_trading.account_kind IS 'live or backtest; signals trade on live accounts.';
