CREATE VIEW api.events WITH (security_barrier) AS
SELECT e.id, e.account_id, a.name AS account, e.kind, e.order_id, e.ts, e.payload, e.created_at
FROM trading.events e
JOIN trading.accounts a ON a.id = e.account_id
WHERE e.account_id = ANY ((SELECT api.request_accounts())::bigint[]);  -- the visibility rule (010)
GRANT SELECT ON api.events TO trader, pgtrade_admin;
COMMENT ON VIEW api.events IS
  'The events outbox: order_accepted, order_rejected, fill, order_cancelled, order_expired, stop_triggered. Poll new ones with ?id=gt.<last id>&order=id. A trader sees its own account.';
COMMENT ON COLUMN api.events.ts IS 'Account clock when it happened; created_at is the wall-clock time it was written.';
