-- Indexes for the foreign keys 0015 added without one (tests/sql/market_structure.sql: "every foreign key is
-- indexed"): without them a delete or key update on the referenced row scans the referencing table, and a
-- trader's alerts (api.alerts, filtered by account) have no index to use. IF NOT EXISTS: another branch of issue 12
-- may create the same index under the same name. Partial where most rows hold no reference.
CREATE INDEX IF NOT EXISTS models_interval ON ml.models ("interval");
CREATE INDEX IF NOT EXISTS training_runs_model_id ON ml.training_runs (model_id) WHERE model_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS training_runs_compared_to ON ml.training_runs (compared_to) WHERE compared_to IS NOT NULL;
CREATE INDEX IF NOT EXISTS anomalies_model_id ON ml.anomalies (model_id) WHERE model_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS alerts_account_id ON ops.alerts (account_id) WHERE account_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS alerts_anomaly_id ON ops.alerts (anomaly_id) WHERE anomaly_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS orders_signal_id ON trading.orders (signal_id) WHERE signal_id IS NOT NULL;
