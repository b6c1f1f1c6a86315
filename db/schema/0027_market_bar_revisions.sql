-- Bar revisions (issue 13, reproducibility): every change to a closed bar, with the values it had before, so a
-- backtest can read the bars as they were when it ran (backtest.bars as of backtest.runs.data_version).
-- Written by the triggers of db/triggers/market_bar_revisions.sql; read by db/procedures/backtest_bars.sql.
CREATE TABLE market.bar_revisions (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  symbol     text NOT NULL,
  "interval" text NOT NULL,
  ts         timestamptz NOT NULL,
  kind       text NOT NULL CONSTRAINT bar_revisions_kind CHECK (kind IN ('update', 'delete', 'insert')),
  open       numeric,
  high       numeric,
  low        numeric,
  close      numeric,
  volume     numeric,
  source     text,
  revised_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT bar_revisions_old_values CHECK (
    CASE WHEN kind = 'insert' THEN num_nonnulls(open, high, low, close, volume, source) = 0
         ELSE num_nulls(open, high, low, close, volume, source) = 0 END)
);
COMMENT ON TABLE market.bar_revisions IS
  'Every correction of a closed bar (its close time ts + step at or before the feed''s clock, ml.feed_now()): an update or delete with the values the bar had before, or the insert of a bar below the series'' closed horizon (a backfill) with no old values. Updates of a still-forming bar are not kept. The id is the data version: the bars as of version v are the current bars with each bar revised after v replaced by the old values of its first revision after v (left out when that revision is an insert).';
COMMENT ON COLUMN market.bar_revisions.id IS
  'The data version: increases with every revision. backtest.runs.data_version is the newest id when the run read its bars.';
COMMENT ON COLUMN market.bar_revisions.kind IS
  'update: the bar''s prices or volume changed; delete: the bar was deleted; insert: a bar was inserted at or below the series'' closed horizon (ml.watermarks), into history a run may already have read.';
COMMENT ON COLUMN market.bar_revisions.open IS 'The bar''s open before the revision (NULL for an insert); high, low, close, volume and source likewise.';
COMMENT ON COLUMN market.bar_revisions.revised_at IS 'When the revising transaction started (now()).';
-- The as-of read and its check: the revisions of a run's series after its version (db/procedures/backtest_bars.sql).
CREATE INDEX bar_revisions_series ON market.bar_revisions (symbol, "interval", id);

ALTER TABLE backtest.runs ADD COLUMN warmup integer;
COMMENT ON COLUMN backtest.runs.warmup IS
  'The most bars before start_ts that the strategy read per symbol (backtest.bars(run, warmup)); the data hash covers them with the range''s bars.';
COMMENT ON COLUMN backtest.runs.data_hash IS
  'Digest of the bars the run read (its range; with warmup, also the warmup bars): see internal.backtest_fingerprint and docs/backtesting.md, Reproducibility.';
