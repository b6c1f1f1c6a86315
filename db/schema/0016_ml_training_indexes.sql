-- Indexes for the foreign keys of the registry and the training runs (tests/sql/market_structure.sql: every foreign
-- key is indexed): the runs of a model version and those compared with it, the models of an interval.
CREATE INDEX training_runs_model_id ON ml.training_runs (model_id);
CREATE INDEX training_runs_compared_to ON ml.training_runs (compared_to);
CREATE INDEX training_runs_name ON ml.training_runs (name, id);
CREATE INDEX models_interval ON ml.models ("interval");
