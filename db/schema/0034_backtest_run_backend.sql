-- Faults (issue 14, section 6): a backtest run that a caller commits as 'running' before the work (the CLI, the
-- parallel grids and walk-forwards) records the backend that holds it, so that a run whose backend is gone (killed,
-- or the server restarted) is marked failed by backtest.fail_interrupted_runs (db/procedures/backtest_recovery.sql)
-- instead of staying 'running' forever.
ALTER TABLE backtest.runs ADD COLUMN backend_pid integer, ADD COLUMN backend_start timestamptz;
COMMENT ON COLUMN backtest.runs.backend_pid IS
  'The server process that held the run while it ran (backtest.run_begin, backtest.run_hold); NULL for a run begun and finished in one transaction.';
COMMENT ON COLUMN backtest.runs.backend_start IS
  'When that server process started (tells it from a later process with the same pid).';
-- The recovery looks at running runs only: few rows, at every pg_cron minute.
CREATE INDEX runs_running ON backtest.runs (id) WHERE status = 'running';
