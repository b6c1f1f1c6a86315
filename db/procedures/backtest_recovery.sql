-- Faults (issue 14, section 6): a run killed half-way is marked failed, never left 'running' and never half-written
-- as done. backtest.run does a run in one transaction, so a crash inside it leaves nothing; a caller that wants the
-- run visible while it works (and its failure visible after a crash) commits the run first as 'running' with
-- backtest.run_begin, which records the session's backend, and then calls backtest.run in the next transaction of
-- the same session, which completes that row in place. A grid or walk-forward parent driven from Python
-- (pgtrade/backtest_parallel.py) is held the same way by the session that drives it (backtest.run_hold).
-- backtest.fail_interrupted_runs marks failed every running run whose holder is gone; the alert watcher ops.watch()
-- calls it on each of its every-minute pg_cron runs, so within a minute of a server restart or a killed backend.

CREATE OR REPLACE FUNCTION backtest.run_hold(run_id bigint)
RETURNS backtest.runs
LANGUAGE plpgsql
AS $$
DECLARE
  _r backtest.runs;
BEGIN
  UPDATE backtest.runs r
     SET backend_pid = pg_catalog.pg_backend_pid(),
         backend_start = (SELECT a.backend_start FROM pg_catalog.pg_stat_activity a WHERE a.pid = pg_catalog.pg_backend_pid())
   WHERE r.id = run_hold.run_id AND r.status = 'running'
  RETURNING * INTO _r;
  IF _r.id IS NULL THEN
    RAISE EXCEPTION 'no running backtest run %', run_hold.run_id USING ERRCODE = 'BT070',
      HINT = 'only a run with status running can be held (backtest.runs)';
  END IF;
  RETURN _r;
END
$$;
COMMENT ON FUNCTION backtest.run_hold IS
  'Record the calling session as the holder of a running run: when the session ends (killed, server restart) before the run is finished, backtest.fail_interrupted_runs marks it failed. BT070 when the run is not running.';

CREATE OR REPLACE FUNCTION backtest.run_begin(
  strategy text, symbols text[], "interval" text, start_ts timestamptz, end_ts timestamptz,
  params jsonb DEFAULT '{}', purpose text DEFAULT 'single', owner_account_id bigint DEFAULT NULL)
RETURNS backtest.runs
LANGUAGE plpgsql
AS $$
DECLARE
  _syms text[];
  _r backtest.runs;
BEGIN
  -- the request checks of every run (BT001-BT003); the engine's own (mode, purpose, parameters) are made by
  -- backtest.run, and a caller discards the begun run when it raises one (backtest.run_discard)
  _syms := internal.backtest_request(run_begin.strategy, run_begin.symbols, run_begin.interval, run_begin.start_ts,
                                     run_begin.end_ts);
  INSERT INTO backtest.runs (owner_account_id, purpose, strategy, symbols, "interval", start_ts, end_ts, params)
  VALUES (run_begin.owner_account_id, coalesce(run_begin.purpose, 'single'), run_begin.strategy, _syms,
          run_begin.interval, run_begin.start_ts, run_begin.end_ts, coalesce(run_begin.params, '{}'))
  RETURNING * INTO _r;
  _r := backtest.run_hold(_r.id);
  -- the session's next backtest.run completes this row (db/procedures/backtest_engine.sql)
  PERFORM pg_catalog.set_config('pgtrade.backtest_run_id', _r.id::text, false);
  RETURN _r;
END
$$;
COMMENT ON FUNCTION backtest.run_begin IS
  'Begin a run (status running, held by this session) for the caller to commit before the work: the session''s next backtest.run call with the same request does the run in this row. A crash in between leaves the run running until backtest.fail_interrupted_runs marks it failed. Checks the request like backtest.run (BT001-BT003).';

CREATE OR REPLACE FUNCTION backtest.run_discard(run_id bigint)
RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
  -- a begun run that backtest.run refused as a request (BT004, BT005 on parameters) was never a run: as without
  -- run_begin, nothing of it is kept
  PERFORM pg_catalog.set_config('pgtrade.backtest_run_id', '', false);
  DELETE FROM backtest.runs r
   WHERE r.id = run_discard.run_id AND r.status = 'running' AND r.account_id IS NULL
     AND r.backend_pid = pg_catalog.pg_backend_pid();
  RETURN FOUND;
END
$$;
COMMENT ON FUNCTION backtest.run_discard IS
  'Delete a run this session began (backtest.run_begin) that backtest.run refused as a request: it never ran, as a refused request without run_begin leaves nothing. False when there was no such run.';

CREATE OR REPLACE FUNCTION backtest.fail_interrupted_runs()
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
  _n integer;
BEGIN
  -- running with no live holder: its holding backend is gone (a backend's pid and start time name it; the start
  -- time is NULL in pg_stat_activity for another role's session without pg_read_all_stats, then the pid alone
  -- does, which can only keep a run running longer, never fail a live one), or the run began before the server
  -- last started (no backend survives a restart; this also covers runs committed 'running' by no holder)
  UPDATE backtest.runs r
     SET status = 'failed', error = 'interrupted (server restart or backend killed)', account_id = NULL,
         finished_at = clock_timestamp(),
         elapsed_ms = round(extract(epoch FROM clock_timestamp() - r.created_at) * 1000, 1)
   WHERE r.status = 'running'
     AND (r.created_at < pg_catalog.pg_postmaster_start_time()
          OR (r.backend_pid IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a
                              WHERE a.pid = r.backend_pid
                                AND (a.backend_start IS NULL OR r.backend_start IS NULL
                                     OR a.backend_start = r.backend_start))));
  GET DIAGNOSTICS _n = ROW_COUNT;
  RETURN _n;
END
$$;
COMMENT ON FUNCTION backtest.fail_interrupted_runs IS
  'Mark failed, with error ''interrupted (server restart or backend killed)'', every running run whose holder is gone: its backend (backtest.run_hold) no longer exists, or it began before the server last started. Returns how many. The alert watcher ops.watch() calls it every minute (pg_cron job pgtrade-ops-watch).';
