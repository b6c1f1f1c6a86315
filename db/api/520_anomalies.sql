-- Anomalies are market information, readable like bars: anonymous callers too. No row filter, so no security
-- barrier: PostgREST's filters reach ml.anomalies' indexes (symbol, interval, ts, type) and (detected_at).
CREATE VIEW api.anomalies AS
SELECT a.id, a.symbol, a."interval", a.ts, a.type, a.score, a.severity, m.name AS model, m.version AS model_version,
       a.details, a.detected_at
FROM ml.anomalies a
LEFT JOIN ml.models m ON m.id = a.model_id;
GRANT SELECT ON api.anomalies TO web_anon, trader, pgtrade_admin;
COMMENT ON VIEW api.anomalies IS
  'Anomalous closed bars: type (price, gap, volume, pattern), score and severity (LOW, MEDIUM, HIGH, CRITICAL by per-symbol thresholds). Filter with PostgREST query syntax, e.g. /anomalies?symbol=eq.SPX&severity=in.(HIGH,CRITICAL)&order=ts.desc, or new ones with ?detected_at=gt.<time>. Readable without a token.';
COMMENT ON COLUMN api.anomalies.ts IS 'Open time (UTC) of the anomalous bar.';
COMMENT ON COLUMN api.anomalies.model IS 'The anomaly model that scored a pattern anomaly (empty for price, gap and volume).';
