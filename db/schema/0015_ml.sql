-- ML signals and anomaly detection (issue 12): the model registry, signals, training runs, anomalies, alerts,
-- per-account auto-trading settings, and the link from an order to the signal that caused it.
-- The feature definition is one SQL function (db/procedures/ml_features.sql); models are scored by PL/Python with
-- onnxruntime (db/superuser/2_2_ml_python.sql: plpython3u is untrusted, so a superuser owns those functions and
-- lists them in ops.superuser_objects). Nobody but the owner reaches schema ml; the api schema exposes views.
CREATE SCHEMA ml;
COMMENT ON SCHEMA ml IS
  'Machine learning: features, the model registry (ONNX), signals, training runs, anomalies. No grants: users reach it through api.* and the CLI.';
REVOKE ALL ON SCHEMA ml FROM PUBLIC;

-- The registry. A model is immutable once registered (trigger below): a retrained model is a new version.
CREATE TABLE ml.models (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name            text NOT NULL CONSTRAINT models_name CHECK (name ~ '^[a-z][a-z0-9_.-]{0,62}$'),
  version         integer NOT NULL CONSTRAINT models_version CHECK (version > 0),
  task            text NOT NULL CONSTRAINT models_task CHECK (task IN ('direction', 'anomaly')),
  kind            text NOT NULL,
  symbols         text[] NOT NULL CONSTRAINT models_symbols CHECK (cardinality(symbols) > 0),
  "interval"      text NOT NULL REFERENCES market.intervals (code),
  feature_version integer NOT NULL,
  features        text[] NOT NULL,
  horizon         integer NOT NULL DEFAULT 1 CONSTRAINT models_horizon CHECK (horizon > 0),
  train_from      timestamptz,
  train_until     timestamptz,
  params          jsonb NOT NULL DEFAULT '{}',
  metrics         jsonb NOT NULL DEFAULT '{}',
  baselines       jsonb NOT NULL DEFAULT '{}',
  buy_threshold   double precision NOT NULL DEFAULT 0.55,
  sell_threshold  double precision NOT NULL DEFAULT 0.45,
  output_name     text NOT NULL,
  output_column   integer NOT NULL DEFAULT 0 CONSTRAINT models_output_column CHECK (output_column >= 0),
  onnx            bytea NOT NULL,
  onnx_sha256     text NOT NULL,
  origin          text NOT NULL DEFAULT 'trained' CONSTRAINT models_origin CHECK (origin IN ('trained', 'imported')),
  status          text NOT NULL DEFAULT 'candidate' CONSTRAINT models_status CHECK (status IN ('candidate', 'active', 'retired')),
  created_at      timestamptz NOT NULL DEFAULT now(),
  activated_at    timestamptz,
  retired_at      timestamptz,
  CONSTRAINT models_name_version UNIQUE (name, version),
  CONSTRAINT models_thresholds CHECK (sell_threshold <= buy_threshold)
);
COMMENT ON TABLE ml.models IS
  'Model registry: every version of every model (ONNX bytes, feature list and version, training window, out-of-sample metrics beside naive baselines). At most one active version per name.';
COMMENT ON COLUMN ml.models.output_name IS 'The ONNX output scored (e.g. probabilities); output_column picks its column (1 = P(up) for a direction classifier).';
COMMENT ON COLUMN ml.models.buy_threshold IS 'A direction signal is BUY when P(up) >= buy_threshold, SELL when P(up) <= sell_threshold, else HOLD.';
CREATE UNIQUE INDEX models_one_active ON ml.models (name) WHERE status = 'active';

CREATE FUNCTION ml.tg_models__immutable() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF (NEW.name, NEW.version, NEW.task, NEW.kind, NEW.symbols, NEW."interval", NEW.feature_version, NEW.features,
      NEW.horizon, NEW.output_name, NEW.output_column, NEW.onnx_sha256, NEW.onnx)
     IS DISTINCT FROM
     (OLD.name, OLD.version, OLD.task, OLD.kind, OLD.symbols, OLD."interval", OLD.feature_version, OLD.features,
      OLD.horizon, OLD.output_name, OLD.output_column, OLD.onnx_sha256, OLD.onnx) THEN
    RAISE EXCEPTION 'model %:% is immutable', OLD.name, OLD.version USING ERRCODE = 'ML001',
      HINT = 'register a new version instead (pgtrade ml train or pgtrade ml import)';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER _100_immutable BEFORE UPDATE ON ml.models FOR EACH ROW EXECUTE FUNCTION ml.tg_models__immutable();

-- Signals: one row per (model, bar). Scored for closed bars only.
CREATE TABLE ml.signals (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  model_id    bigint NOT NULL REFERENCES ml.models (id),
  symbol      text NOT NULL,
  "interval"  text NOT NULL,
  ts          timestamptz NOT NULL,
  probability double precision NOT NULL CONSTRAINT signals_probability CHECK (probability BETWEEN 0 AND 1),
  confidence  numeric NOT NULL CONSTRAINT signals_confidence CHECK (confidence BETWEEN 0 AND 1),
  signal      text NOT NULL CONSTRAINT signals_signal CHECK (signal IN ('BUY', 'SELL', 'HOLD')),
  close       numeric NOT NULL,
  atr         numeric,
  stop_loss   numeric,
  take_profit numeric,
  created_at  timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT signals_model_bar UNIQUE (model_id, symbol, "interval", ts)
);
COMMENT ON TABLE ml.signals IS
  'Model outputs for closed bars: P(up) over the model''s horizon, confidence, BUY/SELL/HOLD by the model''s thresholds, suggested stop-loss and take-profit.';
CREATE INDEX signals_bar ON ml.signals (symbol, "interval", ts);
CREATE INDEX signals_created_at ON ml.signals (created_at);

-- Every training run (CLI or the retraining job) and its decision.
CREATE TABLE ml.training_runs (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
  finished_at  timestamptz,
  trigger      text NOT NULL CONSTRAINT training_runs_trigger CHECK (trigger IN ('cli', 'schedule', 'evaluation')),
  name         text NOT NULL,
  kind         text NOT NULL,
  symbols      text[] NOT NULL,
  "interval"   text NOT NULL,
  train_from   timestamptz,
  train_until  timestamptz,
  model_id     bigint REFERENCES ml.models (id),
  compared_to  bigint REFERENCES ml.models (id),
  decision     text CONSTRAINT training_runs_decision CHECK (decision IN ('activated', 'candidate', 'failed')),
  reason       text,
  metrics      jsonb NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE ml.training_runs IS
  'Every training run and its decision: activated (beat the active version and the naive baselines out of sample), candidate (did not), failed (with the error).';

-- ML processing of closed bars: the last closed bar of each series already handed to scoring and detection.
CREATE TABLE ml.watermarks (
  symbol     text NOT NULL,
  "interval" text NOT NULL,
  ts         timestamptz NOT NULL,
  PRIMARY KEY (symbol, "interval")
);
COMMENT ON TABLE ml.watermarks IS
  'Per series, the newest closed bar already processed (signals, anomalies, auto-trading): each closed bar is processed once.';

-- Anomalies and their per-symbol severity thresholds (symbol '*' is the default for every symbol).
CREATE TABLE ml.anomalies (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  symbol      text NOT NULL,
  "interval"  text NOT NULL,
  ts          timestamptz NOT NULL,
  type        text NOT NULL CONSTRAINT anomalies_type CHECK (type IN ('price', 'gap', 'volume', 'pattern')),
  score       double precision NOT NULL,
  severity    text NOT NULL CONSTRAINT anomalies_severity CHECK (severity IN ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL')),
  model_id    bigint REFERENCES ml.models (id),
  details     jsonb NOT NULL DEFAULT '{}',
  detected_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT anomalies_bar_type UNIQUE (symbol, "interval", ts, type)
);
COMMENT ON TABLE ml.anomalies IS 'Anomalous bars: type, score and severity by the thresholds in ml.anomaly_thresholds.';
CREATE INDEX anomalies_detected_at ON ml.anomalies (detected_at);

CREATE TABLE ml.anomaly_thresholds (
  symbol   text NOT NULL CONSTRAINT anomaly_thresholds_symbol CHECK (symbol = '*' OR market.is_valid_symbol(symbol)),
  type     text NOT NULL CONSTRAINT anomaly_thresholds_type CHECK (type IN ('price', 'gap', 'volume', 'pattern')),
  low      double precision NOT NULL,
  medium   double precision NOT NULL,
  high     double precision NOT NULL,
  critical double precision NOT NULL,
  enabled  boolean NOT NULL DEFAULT true,
  PRIMARY KEY (symbol, type),
  CONSTRAINT anomaly_thresholds_order CHECK (0 < low AND low <= medium AND medium <= high AND high <= critical)
);
COMMENT ON TABLE ml.anomaly_thresholds IS
  'Score thresholds of each anomaly severity, per symbol (''*'' is the default for all symbols). A score below low is no anomaly.';

-- Alerts: what a person must see (HIGH and CRITICAL anomalies; later failed jobs, drawdowns, stale data).
CREATE TABLE ops.alerts (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  raised_at       timestamptz NOT NULL DEFAULT now(),
  kind            text NOT NULL,
  severity        text NOT NULL CONSTRAINT alerts_severity CHECK (severity IN ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL')),
  symbol          text,
  account_id      bigint REFERENCES trading.accounts (id),
  message         text NOT NULL,
  details         jsonb NOT NULL DEFAULT '{}',
  anomaly_id      bigint REFERENCES ml.anomalies (id),
  acknowledged_at timestamptz
);
COMMENT ON TABLE ops.alerts IS 'Alerts, each also sent as NOTIFY pgtrade_alerts {id, kind, severity, symbol}.';
CREATE INDEX alerts_raised_at ON ops.alerts (raised_at);

-- Delivery cursors of alert consumers (pgtrade alerts follow): an alert is delivered when the cursor passes it.
CREATE TABLE ops.alert_cursors (
  consumer     text PRIMARY KEY,
  last_id      bigint NOT NULL DEFAULT 0,
  updated_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ops.alert_cursors IS 'Per consumer, the last alert delivered; a consumer restarts after it, so no undelivered alert is lost.';

-- Auto-trading: per account, which models' signals become orders and how they are sized.
CREATE TABLE trading.auto_trading (
  account_id     bigint PRIMARY KEY REFERENCES trading.accounts (id),
  enabled        boolean NOT NULL DEFAULT false,
  models         text[] NOT NULL DEFAULT '{}',
  min_confidence numeric NOT NULL DEFAULT 0.2
                 CONSTRAINT auto_trading_min_confidence CHECK (min_confidence BETWEEN 0 AND 1),
  size_fraction  numeric NOT NULL DEFAULT 1
                 CONSTRAINT auto_trading_size_fraction CHECK (size_fraction > 0 AND size_fraction <= 1),
  use_brackets   boolean NOT NULL DEFAULT true,
  updated_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE trading.auto_trading IS
  'Auto-trading settings of an account: signals of these model names (empty: every active model) with confidence >= min_confidence become orders (source signal) sized at size_fraction x confidence of the account''s max position, with the signal''s stop-loss and take-profit when use_brackets.';

ALTER TABLE trading.orders ADD COLUMN signal_id bigint REFERENCES ml.signals (id);
COMMENT ON COLUMN trading.orders.signal_id IS 'The signal that caused the order (auto-trading); at most one order per account and signal.';
CREATE UNIQUE INDEX orders_account_signal ON trading.orders (account_id, signal_id) WHERE signal_id IS NOT NULL;
