-- The model registry without its ONNX bytes (their size and sha256 only): which models exist, on what they were
-- trained, how they did out of sample beside the naive baselines, and which version of each name is active.
-- Traders and administrators (a trader picks model names for its auto-trading settings here); not anonymous.
-- No row filter (every caller sees the whole registry), so no security barrier: PostgREST's filters
-- (?name=eq.logreg_spx&status=eq.active) reach ml.models directly.
CREATE VIEW api.models AS
SELECT m.id, m.name, m.version, m.task, m.kind, m.origin, m.status, m.symbols, m."interval", m.horizon,
       m.features, m.feature_version, m.train_from, m.train_until, m.params, m.metrics, m.baselines,
       m.buy_threshold, m.sell_threshold, m.onnx_sha256, octet_length(m.onnx) AS onnx_size,
       m.created_at, m.activated_at, m.retired_at
FROM ml.models m;
GRANT SELECT ON api.models TO trader, pgtrade_admin;
COMMENT ON VIEW api.models IS
  'The model registry: every version of every model (task direction or anomaly), its feature list and feature-definition version, training window, out-of-sample metrics beside the naive baselines, signal thresholds and status (candidate, active, retired; at most one active version per name). The ONNX bytes are not served (export them with pgtrade ml export). Traders and administrators.';
COMMENT ON COLUMN api.models.metrics IS 'Out-of-sample metrics of the model (e.g. accuracy, balanced accuracy, AUC, net return of trading its signals).';
COMMENT ON COLUMN api.models.baselines IS 'The same metrics for the naive baselines on the same test window (always up, previous direction, buy and hold).';
COMMENT ON COLUMN api.models.buy_threshold IS 'A direction signal is BUY when P(up) >= buy_threshold, SELL when P(up) <= sell_threshold, else HOLD.';
COMMENT ON COLUMN api.models.onnx_size IS 'Size of the ONNX model in bytes (the bytes themselves are not served).';
COMMENT ON COLUMN api.models.feature_version IS 'Version of the feature definition the model was trained on; scoring refuses a model whose features differ from the current definition.';
