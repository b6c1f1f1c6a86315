CREATE VIEW api.orders WITH (security_barrier) AS
SELECT o.id, o.account_id, a.name AS account, o.client_order_id, o.symbol, o.side, o.type, o.qty, o.filled_qty,
       o.avg_fill_price, o.limit_price, o.stop_price, o.tif, o.status, o.reject_code, o.reject_reason,
       o.status_reason, o.source, o.parent_id, o.stop_loss, o.take_profit, o.triggered, o.triggered_at, o.est_price,
       o.accepted_at, o.expires_at, o.created_at, o.updated_at, o.closed_at
FROM trading.orders o
JOIN trading.accounts a ON a.id = o.account_id
WHERE o.account_id = ANY ((SELECT api.request_accounts())::bigint[]);  -- the visibility rule (010)
GRANT SELECT ON api.orders TO trader, pgtrade_admin;
COMMENT ON VIEW api.orders IS
  'Every order, rejected ones included (status rejected with reject_code and reject_reason, docs/errors.md). Open orders: ?status=in.(accepted,partially_filled). A trader sees its own account.';
COMMENT ON COLUMN api.orders.status IS 'accepted, partially_filled, filled, cancelled, rejected or expired.';
COMMENT ON COLUMN api.orders.reject_code IS 'The rule that rejected the order (TR001..TR011, docs/errors.md).';
COMMENT ON COLUMN api.orders.status_reason IS 'Why an order was cancelled or expired.';
COMMENT ON COLUMN api.orders.parent_id IS 'The bracket entry order of a stop_loss / take_profit child.';
COMMENT ON COLUMN api.orders.est_price IS 'The price the pre-trade checks used.';
