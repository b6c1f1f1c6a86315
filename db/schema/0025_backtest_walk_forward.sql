-- Grids and walk-forward analyses (issue 13, sections 5 and 6). Both are a parent run in backtest.runs (purpose
-- 'grid' or 'walk_forward', parent_id NULL) whose children are ordinary runs (parent_id = the parent; purpose 'grid'
-- for a grid's points, 'wf_train' / 'wf_test' for a walk-forward's), each on its own backtest account. The
-- parent trades nothing itself: it has no account, and is 'done' when its children are. Its params hold the
-- resolved base parameters plus the grid or the walk-forward settings; its metrics summarise the children.

ALTER TABLE backtest.runs DROP CONSTRAINT runs_done_has_account;
ALTER TABLE backtest.runs ADD CONSTRAINT runs_done_has_account
  CHECK (status <> 'done' OR account_id IS NOT NULL OR (purpose IN ('grid', 'walk_forward') AND parent_id IS NULL));
ALTER TABLE backtest.runs ADD CONSTRAINT runs_parent_has_no_account
  CHECK (NOT (purpose IN ('grid', 'walk_forward') AND parent_id IS NULL) OR account_id IS NULL);
COMMENT ON CONSTRAINT runs_done_has_account ON backtest.runs IS
  'A finished run traded on its own account, except a grid or walk-forward parent (parent_id NULL): its children hold the accounts.';

-- One row per window of a walk-forward analysis (backtest.wf_windows computes them): the train and test ranges, what
-- the train window chose (the best grid point by the objective, or the model trained on it) and the out-of-sample
-- run on the test window. The test runs chain: each starts with the cash the previous one ended with.
CREATE TABLE backtest.walk_forward_windows (
  run_id          bigint NOT NULL REFERENCES backtest.runs (id) ON DELETE CASCADE,
  n               integer NOT NULL CONSTRAINT walk_forward_windows_n CHECK (n > 0),
  train_from      timestamptz NOT NULL,
  train_until     timestamptz NOT NULL,
  test_from       timestamptz NOT NULL,
  test_until      timestamptz NOT NULL,
  train_bars      integer NOT NULL CONSTRAINT walk_forward_windows_train_bars CHECK (train_bars > 0),
  purge_bars      integer NOT NULL CONSTRAINT walk_forward_windows_purge_bars CHECK (purge_bars >= 0),
  test_bars       integer NOT NULL CONSTRAINT walk_forward_windows_test_bars CHECK (test_bars > 0),
  objective       text,
  best_train_run_id bigint REFERENCES backtest.runs (id),
  train_score     numeric,
  chosen_params   jsonb,
  model_id        bigint REFERENCES ml.models (id),
  test_run_id     bigint REFERENCES backtest.runs (id),
  start_equity    numeric,
  end_equity      numeric,
  test_metrics    jsonb,
  PRIMARY KEY (run_id, n),
  CONSTRAINT walk_forward_windows_order CHECK (train_from < train_until AND train_until <= test_from AND test_from < test_until)
);
COMMENT ON TABLE backtest.walk_forward_windows IS
  'The windows of a walk-forward run: train range [train_from, train_until), purge gap, test range [test_from, test_until); the parameters chosen on the train window (or the model trained on it), the out-of-sample test run and its equity at start and end (chained from window to window).';
COMMENT ON COLUMN backtest.walk_forward_windows.objective IS 'The metric the choice was made by (the requested one, or total_return when no train run reported it).';
COMMENT ON COLUMN backtest.walk_forward_windows.best_train_run_id IS 'The train run (purpose wf_train) whose parameters were chosen.';
COMMENT ON COLUMN backtest.walk_forward_windows.model_id IS 'ML walk-forward: the model trained on this train window (ml.train), traded on the test window.';
COMMENT ON COLUMN backtest.walk_forward_windows.start_equity IS 'Cash the test run starts with: the initial cash for window 1, the previous test run''s final equity (to the cent) after.';
CREATE INDEX walk_forward_windows_best_train_run ON backtest.walk_forward_windows (best_train_run_id);
CREATE INDEX walk_forward_windows_model ON backtest.walk_forward_windows (model_id);
CREATE INDEX walk_forward_windows_test_run ON backtest.walk_forward_windows (test_run_id);
