-- Health and alerting (issue 14): the thresholds, the live feeds that make symbols "expected fresh", the
-- incidents behind alerts, and the per-account drawdown limit. The rules that read these live in
-- db/procedures/ops_health.sql (api.health, pgtrade health) and db/procedures/ops_watch.sql (ops.watch, every minute).

-- The thresholds of health and of the watcher, in one row (docs/operations.md, "Health" and "Alerts").
CREATE TABLE ops.health_settings (
  id                 boolean PRIMARY KEY DEFAULT true CONSTRAINT health_settings_one_row CHECK (id),
  stale_bars         integer NOT NULL DEFAULT 3 CONSTRAINT health_settings_stale_bars CHECK (stale_bars >= 1),
  stale_wall         interval NOT NULL DEFAULT interval '2 minutes'
                     CONSTRAINT health_settings_stale_wall CHECK (stale_wall > interval '0'),
  failure_window     interval NOT NULL DEFAULT interval '24 hours'
                     CONSTRAINT health_settings_failure_window CHECK (failure_window > interval '0'),
  rejection_burst    integer NOT NULL DEFAULT 5 CONSTRAINT health_settings_rejection_burst CHECK (rejection_burst >= 2),
  rejection_window   interval NOT NULL DEFAULT interval '10 minutes'
                     CONSTRAINT health_settings_rejection_window CHECK (rejection_window > interval '0'),
  retrain_every      interval NOT NULL DEFAULT interval '1 day'
                     CONSTRAINT health_settings_retrain_every CHECK (retrain_every > interval '0'),
  retrain_grace      interval NOT NULL DEFAULT interval '6 hours'
                     CONSTRAINT health_settings_retrain_grace CHECK (retrain_grace >= interval '0')
);
INSERT INTO ops.health_settings DEFAULT VALUES;
COMMENT ON TABLE ops.health_settings IS
  'Thresholds of api.health / pgtrade health and of the alert watcher ops.watch (one row; UPDATE it to change them).';
COMMENT ON COLUMN ops.health_settings.stale_bars IS
  'A live-fed series is stale when this many of its bars are due (closed, in its trading session) and not stored.';
COMMENT ON COLUMN ops.health_settings.stale_wall IS
  'A feed faster than real time (--speed above 1) is stale when no bar of the series arrived for this long (wall time).';
COMMENT ON COLUMN ops.health_settings.failure_window IS 'Job failures this recent count as recent (health: degraded while any).';
COMMENT ON COLUMN ops.health_settings.rejection_burst IS 'An account with this many rejected orders within rejection_window raises a rejection-burst alert.';
COMMENT ON COLUMN ops.health_settings.retrain_every IS
  'How often active direction models are retrained (the pg_cron job pgtrade-ml-retrain, daily); with retrain_grace, the age beyond which a model is overdue.';

-- Live feeds (pgtrade stream): a run registers its series when it starts and unregisters them when it ends as asked
-- (duration, max bars, source exhausted, Ctrl-C, SIGTERM). A feed that dies leaves its series registered: they
-- are expected fresh and go stale. The registered series are the symbols health and the watcher expect fresh.
CREATE TABLE ops.feeds (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  source      text NOT NULL,
  "interval"  text NOT NULL REFERENCES market.intervals (code),
  speed       numeric NOT NULL CONSTRAINT feeds_speed CHECK (speed > 0 AND speed < 'Infinity'),
  symbols     text[] NOT NULL CONSTRAINT feeds_symbols CHECK (cardinality(symbols) > 0),
  client      text,
  started_at  timestamptz NOT NULL DEFAULT now(),
  ended_at    timestamptz,
  stopped_by  text
);
COMMENT ON TABLE ops.feeds IS
  'Every run of a live feed (pgtrade stream): source, interval, speed, symbols, when it started and when and why it ended (ended_at NULL: running, or died without ending).';
COMMENT ON COLUMN ops.feeds.speed IS 'Simulated time per wall second: 1 is live; above 1 the bars are stamped in the simulated past.';
CREATE INDEX feeds_interval ON ops.feeds ("interval");

CREATE TABLE ops.fed_series (
  symbol     text NOT NULL,
  "interval" text NOT NULL REFERENCES market.intervals (code),
  feed_id    bigint NOT NULL REFERENCES ops.feeds (id),
  PRIMARY KEY (symbol, "interval")
);
COMMENT ON TABLE ops.fed_series IS
  'The series a live feed is responsible for now: expected fresh by health and the watcher. The newest feed of a series takes it over; a feed that ends as asked releases its series.';
CREATE INDEX fed_series_feed ON ops.fed_series (feed_id);
CREATE INDEX fed_series_interval ON ops.fed_series ("interval");

-- Incidents: one open row per (kind, subject) while a condition holds. Opening one raises its alert; it stays open
-- (last_seen_at, details move on) without more alerts; when the condition no longer holds it closes and a LOW
-- 'resolved' alert says so. The same condition later opens a new incident with a new alert.
CREATE TABLE ops.incidents (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind             text NOT NULL CONSTRAINT incidents_kind
                   CHECK (kind IN ('job_failed', 'stale_data', 'drawdown', 'rejection_burst')),
  subject          text NOT NULL,
  severity         text NOT NULL CONSTRAINT incidents_severity CHECK (severity IN ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL')),
  symbol           text,
  account_id       bigint REFERENCES trading.accounts (id),
  opened_at        timestamptz NOT NULL DEFAULT now(),
  last_seen_at     timestamptz NOT NULL DEFAULT now(),
  closed_at        timestamptz,
  checks           integer NOT NULL DEFAULT 1,
  message          text NOT NULL,
  details          jsonb NOT NULL DEFAULT '{}',
  alert_id         bigint NOT NULL REFERENCES ops.alerts (id),
  resolved_alert_id bigint REFERENCES ops.alerts (id),
  CONSTRAINT incidents_closed CHECK ((closed_at IS NULL) = (resolved_alert_id IS NULL))
);
COMMENT ON TABLE ops.incidents IS
  'Conditions the watcher (ops.watch) found: one open incident per (kind, subject) raises one alert however long the condition lasts; it closes (with a LOW resolved alert) when the condition clears.';
COMMENT ON COLUMN ops.incidents.subject IS 'What the incident is about: pg_cron:<job>, timescaledb:<job id>, <symbol>/<interval>, account:<id>.';
COMMENT ON COLUMN ops.incidents.checks IS 'How many watcher runs found the condition (the first included).';
COMMENT ON COLUMN ops.incidents.details IS 'The latest figures (failure counts, age, drawdown, rejections).';
CREATE UNIQUE INDEX incidents_open ON ops.incidents (kind, subject) WHERE closed_at IS NULL;
CREATE INDEX incidents_alert ON ops.incidents (alert_id);
CREATE INDEX incidents_resolved_alert ON ops.incidents (resolved_alert_id) WHERE resolved_alert_id IS NOT NULL;
CREATE INDEX incidents_account ON ops.incidents (account_id) WHERE account_id IS NOT NULL;

-- Per-account drawdown limit, a risk setting like the others (trading.configure_account 'max_drawdown').
ALTER TABLE trading.accounts ADD COLUMN max_drawdown numeric DEFAULT 0.20
  CONSTRAINT accounts_max_drawdown CHECK (max_drawdown > 0 AND max_drawdown <= 1);
COMMENT ON COLUMN trading.accounts.max_drawdown IS
  'Drawdown limit: a live account whose portfolio falls this fraction below its peak (trading.portfolio_snapshots.drawdown) raises a CRITICAL drawdown alert. NULL = no limit.';

-- Rejection bursts: the rejected orders of an account in a recent window, by index.
CREATE INDEX orders_rejected_by_account ON trading.orders (account_id, created_at) WHERE status = 'rejected';

COMMENT ON TABLE ops.alerts IS
  'Alerts, each also sent as NOTIFY pgtrade_alerts {id, kind, severity, symbol}: HIGH/CRITICAL anomalies of live bars (kind anomaly) and the watcher''s incidents (job_failed, stale_data, drawdown, rejection_burst; a LOW alert of the same kind when one is resolved).';
COMMENT ON COLUMN ops.alerts.acknowledged_at IS 'When a person acknowledged the alert (pgtrade alerts ack); NULL: open.';
