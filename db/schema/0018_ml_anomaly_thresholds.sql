-- Anomaly detection (issue 12, section 6): the default severity thresholds (symbol '*'); a symbol's own row
-- overrides the default of its type.
--
-- Scores (db/procedures/ml_anomalies.sql, where each is defined):
--   price   |return - rolling median| / robust sigma of the previous ml.anomaly_window() returns
--   gap     |open gap - rolling median gap| / the same robust sigma of returns
--   volume  volume / rolling median volume of the previous ml.anomaly_window() bars
--   pattern -(IsolationForest decision_function) of the bar's feature vector (> 0: sklearn calls it an outlier)
-- Calibrated on the bundled real daily series; docs/ml-anomalies.md has the measurements, and
-- tests/test_ml_anomalies.py pins the S&P 500 calibration (HIGH/CRITICAL share of days, the crash days flagged).
INSERT INTO ml.anomaly_thresholds (symbol, type, low, medium, high, critical) VALUES
  ('*', 'price',   3.0,  3.5,  4.0,  6.0),
  ('*', 'gap',     3.0,  3.5,  4.0,  6.0),
  ('*', 'volume',  2.5,  3.0,  4.0,  6.0),
  ('*', 'pattern', 0.02, 0.05, 0.10, 0.15);

COMMENT ON COLUMN ml.anomaly_thresholds.enabled IS
  'false turns detection of this type off for the symbol (a ''*'' row with enabled = false: for every symbol without a row of its own).';

-- Foreign keys of the anomaly and alert tables, indexed (tests/sql/market_structure.sql: every foreign key is
-- indexed); alerts_anomaly also serves the join from an anomaly to its alert (pgtrade anomalies).
CREATE INDEX IF NOT EXISTS anomalies_model ON ml.anomalies (model_id);
CREATE INDEX IF NOT EXISTS alerts_anomaly ON ops.alerts (anomaly_id);
CREATE INDEX IF NOT EXISTS alerts_account ON ops.alerts (account_id);
