-- Alerts: what a person must see. Traders and administrators; anonymous callers no. A trader sees the alerts that
-- belong to no account (market-wide: HIGH and CRITICAL anomalies) and those of its own account; an administrator
-- every alert. The first condition raises the visibility rule's 403 for a trader token naming no valid account
-- even when no row would be filtered (a one-time filter, evaluated before any row); the second is the rule.
CREATE VIEW api.alerts WITH (security_barrier) AS
SELECT a.id, a.raised_at, a.kind, a.severity, a.symbol, a.account_id, acc.name AS account, a.message, a.details,
       a.anomaly_id, a.acknowledged_at
FROM ops.alerts a
LEFT JOIN trading.accounts acc ON acc.id = a.account_id
WHERE (SELECT api.request_accounts()) IS NOT NULL
  AND (a.account_id IS NULL OR a.account_id = ANY ((SELECT api.request_accounts())::bigint[]));  -- rule (010)
GRANT SELECT ON api.alerts TO trader, pgtrade_admin;
COMMENT ON VIEW api.alerts IS
  'Alerts (HIGH and CRITICAL anomalies, and account alerts): market-wide ones (no account) and those of your own account; administrators see all. Poll new ones with ?id=gt.<last id>&order=id, or follow them with pgtrade alerts follow. Traders and administrators.';
COMMENT ON COLUMN api.alerts.account_id IS 'The account an alert concerns; empty for market-wide alerts (anomalies).';
COMMENT ON COLUMN api.alerts.anomaly_id IS 'The anomaly that raised the alert (see /anomalies?id=eq.<anomaly_id>).';
