-- Indexes under the foreign keys of 0015 not indexed by 0017 and 0018 (tests/sql/market_structure.sql: every foreign key is indexed, so a
-- delete or key update on the referenced side never scans the referencing table).
CREATE INDEX models_interval ON ml.models ("interval");
CREATE INDEX training_runs_model ON ml.training_runs (model_id);
CREATE INDEX training_runs_compared_to ON ml.training_runs (compared_to);
