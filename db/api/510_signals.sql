-- Signals are market information, readable like bars: anonymous callers too. No row filter, so no security barrier:
-- PostgREST's filters reach ml.signals' indexes (symbol, interval, ts) and (created_at); the model's name and
-- version come from its registry row by primary key.
CREATE VIEW api.signals AS
SELECT s.id, s.symbol, s."interval", s.ts, m.name AS model, m.version AS model_version, s.model_id, s.probability,
       s.confidence, s.signal, s.close, s.atr, s.stop_loss, s.take_profit, s.created_at
FROM ml.signals s
JOIN ml.models m ON m.id = s.model_id;
GRANT SELECT ON api.signals TO web_anon, trader, pgtrade_admin;
COMMENT ON VIEW api.signals IS
  'Model signals for closed bars, one per model and bar: P(up) over the model''s horizon, confidence, BUY/SELL/HOLD by the model''s thresholds, suggested stop-loss and take-profit. Filter with PostgREST query syntax, e.g. /signals?symbol=eq.SPX&interval=eq.1d&order=ts.desc&limit=20, or new ones with ?created_at=gt.<time>. Readable without a token.';
COMMENT ON COLUMN api.signals.ts IS 'Open time (UTC) of the closed bar the signal was computed at (from that bar and earlier ones only).';
COMMENT ON COLUMN api.signals.probability IS 'The model''s P(up) over its horizon.';
COMMENT ON COLUMN api.signals.confidence IS 'Confidence 0..1 (docs/ml.md); auto-trading acts on signals with confidence >= an account''s min_confidence.';
COMMENT ON COLUMN api.signals.signal IS 'BUY, SELL or HOLD.';
COMMENT ON COLUMN api.signals.created_at IS 'When the signal was written (poll new ones with ?created_at=gt.<last seen>).';
