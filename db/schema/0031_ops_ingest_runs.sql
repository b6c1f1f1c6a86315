-- Ingest runs (issue 14, structured logs): one row per `pgtrade load ...` and per `pgtrade stream` session, with
-- what it sent and how it ended. The other important events already are rows (trading.events, ml.training_runs,
-- backtest.runs, market.rejected_bars, market.bar_revisions, ops.alerts); loads and feed sessions were only
-- console output. The id is the run_id of the JSON log lines of that run (pgtrade --log-json; pgtrade/logs.py).
CREATE TABLE ops.ingest_runs (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind        text NOT NULL CONSTRAINT ingest_runs_kind CHECK (kind IN ('load', 'stream')),
  source      text NOT NULL,
  symbols     text[] NOT NULL DEFAULT '{}',
  status      text NOT NULL DEFAULT 'running'
              CONSTRAINT ingest_runs_status CHECK (status IN ('running', 'done', 'failed', 'interrupted')),
  started_at  timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  inserted    bigint NOT NULL DEFAULT 0 CONSTRAINT ingest_runs_inserted CHECK (inserted >= 0),
  updated     bigint NOT NULL DEFAULT 0 CONSTRAINT ingest_runs_updated CHECK (updated >= 0),
  unchanged   bigint NOT NULL DEFAULT 0 CONSTRAINT ingest_runs_unchanged CHECK (unchanged >= 0),
  rejected    bigint NOT NULL DEFAULT 0 CONSTRAINT ingest_runs_rejected CHECK (rejected >= 0),
  detail      jsonb NOT NULL DEFAULT '{}'::jsonb,
  host        text,
  pid         integer,
  CONSTRAINT ingest_runs_finished CHECK ((status = 'running') = (finished_at IS NULL))
);
CREATE INDEX ingest_runs_started_at_idx ON ops.ingest_runs (started_at DESC);

COMMENT ON TABLE ops.ingest_runs IS
  'One row per load (pgtrade load ...) and per feed session (pgtrade stream): source, symbols, counts, how it ended. '
  'id = run_id of the run''s JSON log lines. A row still running whose process is gone was killed.';
COMMENT ON COLUMN ops.ingest_runs.kind IS 'load: a bounded load of history; stream: a live feed session';
COMMENT ON COLUMN ops.ingest_runs.source IS 'what the bars came from (sample, csv:<file>, yfinance, alpaca, replay, ...)';
COMMENT ON COLUMN ops.ingest_runs.status IS
  'running until the run ends: done, failed (detail.error says why) or interrupted (Ctrl-C / SIGINT)';
COMMENT ON COLUMN ops.ingest_runs.inserted IS 'bars the run inserted (updated, unchanged, rejected: the same for the other outcomes)';
COMMENT ON COLUMN ops.ingest_runs.detail IS
  'the rest of the run''s summary: per-symbol counts of a load; updates, batches, latency, stopped_by of a stream; error';
COMMENT ON COLUMN ops.ingest_runs.host IS 'host name of the process that ran it (the container id under Docker)';
COMMENT ON COLUMN ops.ingest_runs.pid IS 'process id of the pgtrade process that ran it';
