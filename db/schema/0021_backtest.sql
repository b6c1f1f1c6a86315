-- Backtesting (issue 13): a backtest is the live trading core replayed on history. A run owns one backtest account
-- (trading.accounts kind 'backtest', manual clock); its orders, fills, positions, cash ledger and snapshots are the
-- trading core's own rows of that account. This schema holds what is particular to runs: the strategy registry,
-- the runs with their parameters, hashes and metrics, the decisions a strategy took, and the round-trip trades.

-- How a market order of an account is priced. 'last' (every live account): at the last price, the close of the
-- latest closed bar (market.price_at). 'open': at the open of the account's match_interval bar that opens at the
-- account's clock, i.e. a market-on-open order; a backtest decides at bar t's close and places its orders when bar
-- t+1 opens, so they fill at t+1's open (no look-ahead: nothing of bar t+1 but the price the order trades at).
ALTER TABLE trading.accounts ADD COLUMN market_fill text NOT NULL DEFAULT 'last'
  CONSTRAINT accounts_market_fill CHECK (market_fill IN ('last', 'open'));
ALTER TABLE trading.accounts ADD CONSTRAINT accounts_market_fill_clock
  CHECK (market_fill = 'last' OR (clock_mode = 'manual' AND match_interval IS NOT NULL));
COMMENT ON COLUMN trading.accounts.market_fill IS
  'last: market orders fill at the last price (close of the latest closed bar). open: at the open of the match_interval bar opening at the account''s clock (market-on-open; manual-clock accounts only, used by backtests).';

CREATE SCHEMA backtest;
COMMENT ON SCHEMA backtest IS
  'Backtests: strategies, runs (parameters, hashes, metrics), decisions and round-trip trades. Each run trades through the trading core on its own backtest account. No grants: users reach it through api.* and the CLI.';
REVOKE ALL ON SCHEMA backtest FROM PUBLIC;

-- A strategy is a SQL (or PL/pgSQL) function fn(run backtest.runs) RETURNS SETOF backtest.decision: per symbol and
-- bar (ts = the bar's open time, in [run.start_ts, run.end_ts)) the position it wants after that bar closes.
CREATE TABLE backtest.strategies (
  name        text PRIMARY KEY CONSTRAINT strategies_name CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
  fn          regprocedure NOT NULL,
  description text NOT NULL,
  defaults    jsonb NOT NULL DEFAULT '{}' CONSTRAINT strategies_defaults CHECK (jsonb_typeof(defaults) = 'object'),
  grid        jsonb NOT NULL DEFAULT '{}' CONSTRAINT strategies_grid CHECK (jsonb_typeof(grid) = 'object'),
  created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE backtest.strategies IS
  'Registered strategies: the function that decides (fn(run backtest.runs) RETURNS SETOF backtest.decision), its default parameters and the parameter grid a walk-forward searches by default.';

CREATE TABLE backtest.runs (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  account_id      bigint UNIQUE REFERENCES trading.accounts (id),
  owner_account_id bigint REFERENCES trading.accounts (id),
  parent_id       bigint REFERENCES backtest.runs (id),
  purpose         text NOT NULL DEFAULT 'single'
                  CONSTRAINT runs_purpose CHECK (purpose IN ('single', 'grid', 'walk_forward', 'wf_train', 'wf_test', 'lookahead', 'rerun')),
  strategy        text NOT NULL REFERENCES backtest.strategies (name),
  symbols         text[] NOT NULL CONSTRAINT runs_symbols CHECK (cardinality(symbols) > 0),
  "interval"      text NOT NULL REFERENCES market.intervals (code),
  start_ts        timestamptz NOT NULL,
  end_ts          timestamptz NOT NULL,
  params          jsonb NOT NULL,
  mode            text NOT NULL DEFAULT 'fast' CONSTRAINT runs_mode CHECK (mode IN ('fast', 'exact')),
  status          text NOT NULL DEFAULT 'running' CONSTRAINT runs_status CHECK (status IN ('running', 'done', 'failed')),
  error           text,
  params_hash     text,
  schema_version  text,
  code_hash       text,
  data_hash       text,
  data_version    bigint,
  bars            integer,
  decisions       integer,
  orders          integer,
  fills           integer,
  metrics         jsonb,
  created_at      timestamptz NOT NULL DEFAULT now(),
  finished_at     timestamptz,
  elapsed_ms      numeric,
  CONSTRAINT runs_range CHECK (start_ts < end_ts),
  CONSTRAINT runs_done_has_account CHECK (status <> 'done' OR account_id IS NOT NULL)
);
COMMENT ON TABLE backtest.runs IS
  'Every backtest run: strategy, symbols, interval, range, the full resolved parameters, engine mode, status, the hashes that make it reproducible (parameters, schema version, code, the data it saw and the bar-revision version), counts, metrics and timing.';
COMMENT ON COLUMN backtest.runs.account_id IS 'The run''s own backtest account: its orders, fills, positions and snapshots are the run''s.';
COMMENT ON COLUMN backtest.runs.owner_account_id IS 'The trading account of the API user who started the run (NULL for runs from psql or the CLI).';
COMMENT ON COLUMN backtest.runs.params IS 'Every parameter the run used, defaults filled in: cash, commission, slippage, sizing, risk limits, and the strategy''s own.';
COMMENT ON COLUMN backtest.runs.mode IS 'fast: the set-based engine (the rule functions with state carried in one loop, batched writes); exact: trading.place_order and trading.advance_clock per order. Both give identical rows (tests/test_backtest_parity.py).';
COMMENT ON COLUMN backtest.runs.data_version IS 'The newest market.bar_revisions id when the run read its bars: re-running as of this version sees the bars as they were.';
CREATE INDEX runs_parent ON backtest.runs (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX runs_owner ON backtest.runs (owner_account_id) WHERE owner_account_id IS NOT NULL;
CREATE INDEX runs_strategy ON backtest.runs (strategy);
CREATE INDEX runs_interval ON backtest.runs ("interval");

-- What a strategy returns: per symbol and bar, the target position after that bar's close as a signed fraction
-- of the account's equity (1 = all in long, -1 = all in short, 0 = flat, NULL = no opinion: keep what is held),
-- and optional bracket levels for the entry.
CREATE TYPE backtest.decision AS (symbol text, ts timestamptz, target numeric, stop_loss numeric, take_profit numeric);
COMMENT ON TYPE backtest.decision IS
  'A strategy''s decision at the close of bar ts: target position as a signed fraction of equity (NULL keeps the position), optional stop-loss / take-profit levels for an entry.';

-- The decisions that changed a target (the engine acts only on these), and the order each caused.
CREATE TABLE backtest.decisions (
  run_id      bigint NOT NULL REFERENCES backtest.runs (id) ON DELETE CASCADE,
  symbol      text NOT NULL,
  ts          timestamptz NOT NULL,
  target      numeric NOT NULL,
  stop_loss   numeric,
  take_profit numeric,
  prev_target numeric NOT NULL,
  exec_ts     timestamptz,
  seq         integer,
  order_id    bigint REFERENCES trading.orders (id),
  PRIMARY KEY (run_id, symbol, ts)
);
COMMENT ON COLUMN backtest.decisions.exec_ts IS 'Open time of the symbol''s next bar in the run, when the order was placed (and filled, at that open); NULL when the range ended first.';
COMMENT ON COLUMN backtest.decisions.seq IS 'Execution order: by exec_ts, decisions that reduce a position before those that add to one, then by symbol.';
COMMENT ON TABLE backtest.decisions IS
  'The decisions of a run that changed its target position (bar open time ts; acted on at the next bar''s open) and the order each placed (NULL when no order was needed, e.g. a size of zero shares).';
CREATE INDEX decisions_order ON backtest.decisions (order_id) WHERE order_id IS NOT NULL;
