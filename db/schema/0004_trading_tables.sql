-- Trading core: accounts (with their clock, risk limits and cost model), orders and their history, fills,
-- positions and their history, the cash ledger, the events outbox and portfolio snapshots.
-- Money and quantities are numeric; times are timestamptz (UTC). Trading logic takes "now" from
-- trading.account_now(account) only; created_at-style bookkeeping columns use now().

CREATE SCHEMA IF NOT EXISTS trading;
COMMENT ON SCHEMA trading IS 'Trading core: accounts, orders, fills, positions, cash ledger, events, snapshots';

CREATE TABLE trading.accounts (
  id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name               text NOT NULL UNIQUE CONSTRAINT accounts_name CHECK (length(btrim(name)) BETWEEN 1 AND 100),
  currency           text NOT NULL DEFAULT 'USD' CONSTRAINT accounts_currency CHECK (currency ~ '^[A-Z]{3}$'),
  kind               text NOT NULL DEFAULT 'live' CONSTRAINT accounts_kind CHECK (kind IN ('live', 'backtest')),
  clock_mode         text NOT NULL DEFAULT 'wall' CONSTRAINT accounts_clock_mode CHECK (clock_mode IN ('wall', 'manual')),
  clock_ts           timestamptz,
  initial_cash       numeric NOT NULL CONSTRAINT accounts_initial_cash CHECK (initial_cash >= 0 AND initial_cash < 'Infinity'),
  cash               numeric NOT NULL,
  realized_pnl       numeric NOT NULL DEFAULT 0,
  commissions        numeric NOT NULL DEFAULT 0,
  max_position_pct   numeric NOT NULL DEFAULT 10
                     CONSTRAINT accounts_max_position_pct CHECK (max_position_pct > 0 AND max_position_pct < 'Infinity'),
  max_gross_leverage numeric NOT NULL DEFAULT 1.0
                     CONSTRAINT accounts_max_gross_leverage CHECK (max_gross_leverage > 0 AND max_gross_leverage < 'Infinity'),
  max_order_value    numeric CONSTRAINT accounts_max_order_value CHECK (max_order_value > 0 AND max_order_value < 'Infinity'),
  allow_short        boolean NOT NULL DEFAULT false,
  paused             boolean NOT NULL DEFAULT false,
  commission_rate    numeric NOT NULL DEFAULT 0.0005
                     CONSTRAINT accounts_commission_rate CHECK (commission_rate >= 0 AND commission_rate < 1),
  commission_min     numeric NOT NULL DEFAULT 1
                     CONSTRAINT accounts_commission_min CHECK (commission_min >= 0 AND commission_min < 'Infinity'),
  slippage_bps       numeric NOT NULL DEFAULT 5
                     CONSTRAINT accounts_slippage_bps CHECK (slippage_bps >= 0 AND slippage_bps < 10000),
  max_price_age      interval DEFAULT interval '15 minutes',
  volume_cap_pct     numeric CONSTRAINT accounts_volume_cap_pct CHECK (volume_cap_pct > 0 AND volume_cap_pct <= 100),
  match_interval     text REFERENCES market.intervals (code),
  created_at         timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT accounts_clock CHECK ((clock_mode = 'manual') = (clock_ts IS NOT NULL)),
  CONSTRAINT accounts_backtest_clock CHECK (kind = 'live' OR clock_mode = 'manual'),
  -- the last line of defence against overspending: procedures check cash first, under the account row lock
  CONSTRAINT accounts_cash_non_negative CHECK (cash >= 0 OR max_gross_leverage > 1),
  CONSTRAINT accounts_id_allow_short UNIQUE (id, allow_short)
);
CREATE INDEX accounts_match_interval ON trading.accounts (match_interval) WHERE match_interval IS NOT NULL;
COMMENT ON TABLE trading.accounts IS 'Trading accounts: cash, clock, risk limits and cost model. kind live = simulation against live bars; backtest = driven by trading.advance_clock.';
COMMENT ON COLUMN trading.accounts.clock_mode IS 'wall: the account''s now is now(); manual: clock_ts, advanced by trading.advance_clock (backtests, replays).';
COMMENT ON COLUMN trading.accounts.realized_pnl IS 'Realized P&L from prices only (gross of commission); commissions are accumulated separately.';
COMMENT ON COLUMN trading.accounts.max_position_pct IS 'Largest position (|qty| x price) as % of portfolio value; checked when an order increases a position.';
COMMENT ON COLUMN trading.accounts.max_gross_leverage IS 'Largest gross exposure (sum of |qty| x price) as a multiple of portfolio value. Above 1, cash may go negative.';
COMMENT ON COLUMN trading.accounts.max_order_value IS 'Largest order value (qty x estimated price); NULL = no limit.';
COMMENT ON COLUMN trading.accounts.commission_rate IS 'Commission as a fraction of fill value (0.0005 = 5 bps).';
COMMENT ON COLUMN trading.accounts.commission_min IS 'Minimum commission per order (charged on its first fill).';
COMMENT ON COLUMN trading.accounts.slippage_bps IS 'Market and stop fills: buys pay the reference price plus this many bps, sells get it minus.';
COMMENT ON COLUMN trading.accounts.max_price_age IS 'Market orders are rejected when the last price is older than this (NULL = no limit).';
COMMENT ON COLUMN trading.accounts.volume_cap_pct IS 'Resting orders fill at most this % of a bar''s volume (partial fills; the rest keeps resting). NULL = off.';
COMMENT ON COLUMN trading.accounts.match_interval IS 'Only bars of this interval fill resting orders (NULL = bars of any interval).';

CREATE TABLE trading.orders (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  account_id      bigint NOT NULL REFERENCES trading.accounts (id),
  client_order_id text,
  symbol          text,
  side            text,
  type            text,
  qty             numeric,
  filled_qty      numeric NOT NULL DEFAULT 0,
  avg_fill_price  numeric,
  limit_price     numeric,
  stop_price      numeric,
  tif             text,
  status          text NOT NULL CONSTRAINT orders_status CHECK (status IN
                    ('new', 'accepted', 'partially_filled', 'filled', 'cancelled', 'rejected', 'expired')),
  reject_code     text,
  reject_reason   text,
  status_reason   text,
  source          text,
  parent_id       bigint REFERENCES trading.orders (id),
  stop_loss       numeric,
  take_profit     numeric,
  triggered       boolean NOT NULL DEFAULT false,
  triggered_at    timestamptz,
  est_price       numeric,
  last_bar_ts     timestamptz,
  accepted_at     timestamptz,
  expires_at      timestamptz,
  created_at      timestamptz NOT NULL,
  updated_at      timestamptz NOT NULL,
  closed_at       timestamptz,
  CONSTRAINT orders_client_order_id UNIQUE (account_id, client_order_id),
  CONSTRAINT orders_rejected_has_code CHECK ((status = 'rejected') = (reject_code IS NOT NULL)),
  -- Rejected orders are recorded as they were sent; every other order is well formed.
  CONSTRAINT orders_well_formed CHECK (status = 'rejected' OR coalesce(
    side IN ('buy', 'sell') AND type IN ('market', 'limit', 'stop', 'stop_limit') AND tif IN ('day', 'gtc')
    AND source IN ('manual', 'signal', 'strategy', 'stop_loss', 'take_profit')
    AND qty > 0 AND qty < 'Infinity' AND symbol IS NOT NULL AND accepted_at IS NOT NULL, false)),
  CONSTRAINT orders_limit_price CHECK (status = 'rejected' OR type NOT IN ('limit', 'stop_limit')
    OR coalesce(limit_price > 0 AND limit_price < 'Infinity', false)),
  CONSTRAINT orders_stop_price CHECK (status = 'rejected' OR type NOT IN ('stop', 'stop_limit')
    OR coalesce(stop_price > 0 AND stop_price < 'Infinity', false)),
  CONSTRAINT orders_filled_qty CHECK (filled_qty >= 0 AND (status = 'rejected' OR filled_qty <= qty)),
  CONSTRAINT orders_filled_status CHECK (status <> 'filled' OR filled_qty = qty)
);
COMMENT ON TABLE trading.orders IS 'Every order, including rejected ones (recorded with reject_code and reject_reason). Status changes are kept in trading.order_history.';
COMMENT ON COLUMN trading.orders.client_order_id IS 'Unique per account: resubmitting the same id returns the same order.';
COMMENT ON COLUMN trading.orders.status IS 'accepted (resting or about to fill), partially_filled, filled, cancelled, rejected, expired. new is reserved (validation is synchronous).';
COMMENT ON COLUMN trading.orders.reject_code IS 'SQLSTATE-style code of the rule that rejected the order (docs/errors.md).';
COMMENT ON COLUMN trading.orders.status_reason IS 'Why an order was cancelled or expired.';
COMMENT ON COLUMN trading.orders.source IS 'manual, signal, strategy, or stop_loss / take_profit for bracket children.';
COMMENT ON COLUMN trading.orders.parent_id IS 'The bracket entry order of a stop_loss / take_profit child.';
COMMENT ON COLUMN trading.orders.stop_loss IS 'Bracket: stop price of the stop-loss child created when this entry fills.';
COMMENT ON COLUMN trading.orders.take_profit IS 'Bracket: limit price of the take-profit child created when this entry fills.';
COMMENT ON COLUMN trading.orders.triggered IS 'A stop or stop-limit order whose stop price was reached (a stop then fills as market, a stop-limit rests as limit).';
COMMENT ON COLUMN trading.orders.est_price IS 'The price the pre-trade checks used (last price with slippage, or the limit/stop price).';
COMMENT ON COLUMN trading.orders.last_bar_ts IS 'Open time of the last bar that acted on this order (a bar never acts twice).';
COMMENT ON COLUMN trading.orders.accepted_at IS 'Account clock at acceptance; only bars opening at or after it can fill the order (no look-ahead).';
COMMENT ON COLUMN trading.orders.expires_at IS 'Day orders: the end of the instrument''s session (market.session_end).';
CREATE INDEX orders_open_by_symbol ON trading.orders (symbol)
  WHERE status IN ('accepted', 'partially_filled');
CREATE INDEX orders_open_by_account ON trading.orders (account_id)
  WHERE status IN ('accepted', 'partially_filled');
CREATE INDEX orders_day_expiry ON trading.orders (expires_at)
  WHERE status IN ('accepted', 'partially_filled') AND tif = 'day';
CREATE INDEX orders_parent ON trading.orders (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX orders_account_created ON trading.orders (account_id, id);

CREATE TABLE trading.order_history (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  order_id   bigint NOT NULL REFERENCES trading.orders (id),
  ts         timestamptz NOT NULL,
  status     text NOT NULL,
  filled_qty numeric NOT NULL,
  reason     text,
  recorded_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE trading.order_history IS 'Every status (and fill progress) change of every order, written by a trigger on trading.orders.';
CREATE INDEX order_history_order ON trading.order_history (order_id, id);

CREATE TABLE trading.fills (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  order_id     bigint NOT NULL REFERENCES trading.orders (id),
  account_id   bigint NOT NULL REFERENCES trading.accounts (id),
  symbol       text NOT NULL,
  side         text NOT NULL CONSTRAINT fills_side CHECK (side IN ('buy', 'sell')),
  qty          numeric NOT NULL CONSTRAINT fills_qty CHECK (qty > 0 AND qty < 'Infinity'),
  price        numeric NOT NULL CONSTRAINT fills_price CHECK (price > 0 AND price < 'Infinity'),
  ref_price    numeric NOT NULL,
  commission   numeric NOT NULL CONSTRAINT fills_commission CHECK (commission >= 0),
  slippage     numeric NOT NULL,
  realized_pnl numeric NOT NULL,
  bar_ts       timestamptz,
  ts           timestamptz NOT NULL,
  recorded_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE trading.fills IS 'The fills ledger: replaying it through trading.pnl_step reproduces every position.';
COMMENT ON COLUMN trading.fills.ref_price IS 'Price before slippage (last price, bar open or the stop/limit level).';
COMMENT ON COLUMN trading.fills.slippage IS 'Cost of slippage: |price - ref_price| x qty.';
COMMENT ON COLUMN trading.fills.realized_pnl IS 'Realized P&L of this fill (gross of commission).';
COMMENT ON COLUMN trading.fills.bar_ts IS 'Open time of the bar that filled a resting order; NULL for immediate market fills.';
CREATE INDEX fills_order ON trading.fills (order_id);
CREATE INDEX fills_account ON trading.fills (account_id, id);

CREATE TABLE trading.positions (
  account_id     bigint NOT NULL,
  symbol         text NOT NULL REFERENCES market.instruments (symbol) ON UPDATE CASCADE,
  allow_short    boolean NOT NULL,
  qty            numeric NOT NULL DEFAULT 0,
  cost_basis     numeric NOT NULL DEFAULT 0,
  avg_price      numeric GENERATED ALWAYS AS (CASE WHEN qty <> 0 THEN round(cost_basis / qty, 10) END) STORED,
  realized_pnl   numeric NOT NULL DEFAULT 0,
  commissions    numeric NOT NULL DEFAULT 0,
  last_price     numeric,
  last_price_at  timestamptz,
  market_value   numeric GENERATED ALWAYS AS (qty * last_price) STORED,
  unrealized_pnl numeric GENERATED ALWAYS AS (qty * last_price - cost_basis) STORED,
  opened_at      timestamptz,
  updated_at     timestamptz NOT NULL,
  closed_at      timestamptz,
  PRIMARY KEY (account_id, symbol),
  -- allow_short follows the account (ON UPDATE CASCADE), so the CHECK below is a real last line of defence
  CONSTRAINT positions_account FOREIGN KEY (account_id, allow_short)
    REFERENCES trading.accounts (id, allow_short) ON UPDATE CASCADE,
  CONSTRAINT positions_no_short CHECK (qty >= 0 OR allow_short),
  CONSTRAINT positions_flat_has_no_basis CHECK (qty <> 0 OR cost_basis = 0)
);
CREATE INDEX positions_symbol ON trading.positions (symbol);
CREATE INDEX positions_account_allow_short ON trading.positions (account_id, allow_short);
COMMENT ON TABLE trading.positions IS 'One row per account and symbol ever traded; a closed position (qty 0) keeps its realized P&L. Updated only by trading.apply_fill (and marked to market by bars).';
COMMENT ON COLUMN trading.positions.cost_basis IS 'Signed cost of the open quantity (qty x average price, average-cost method); the exact figure behind avg_price.';
COMMENT ON COLUMN trading.positions.avg_price IS 'cost_basis / qty, rounded to 10 places for display.';
COMMENT ON COLUMN trading.positions.realized_pnl IS 'Realized P&L of this symbol, gross of commission (see commissions).';
COMMENT ON COLUMN trading.positions.last_price IS 'Mark price: close of the latest bar (or the last price at a fill).';
COMMENT ON COLUMN trading.positions.unrealized_pnl IS 'qty x last_price - cost_basis.';

CREATE TABLE trading.position_history (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  account_id   bigint NOT NULL REFERENCES trading.accounts (id),
  symbol       text NOT NULL,
  fill_id      bigint NOT NULL REFERENCES trading.fills (id),
  ts           timestamptz NOT NULL,
  qty          numeric NOT NULL,
  cost_basis   numeric NOT NULL,
  realized_pnl numeric NOT NULL
);
COMMENT ON TABLE trading.position_history IS 'The position after every fill.';
CREATE INDEX position_history_account ON trading.position_history (account_id, symbol, id);
CREATE INDEX position_history_fill ON trading.position_history (fill_id);

CREATE TABLE trading.cash_ledger (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  account_id bigint NOT NULL REFERENCES trading.accounts (id),
  ts         timestamptz NOT NULL,
  cause      text NOT NULL CONSTRAINT cash_ledger_cause CHECK (cause IN ('deposit', 'withdrawal', 'buy', 'sell', 'commission')),
  amount     numeric NOT NULL,
  balance    numeric NOT NULL,
  fill_id    bigint REFERENCES trading.fills (id),
  order_id   bigint REFERENCES trading.orders (id),
  note       text
);
COMMENT ON TABLE trading.cash_ledger IS 'Every cash movement with its cause; the amounts sum to the account''s cash.';
CREATE INDEX cash_ledger_account ON trading.cash_ledger (account_id, id);
CREATE INDEX cash_ledger_fill ON trading.cash_ledger (fill_id) WHERE fill_id IS NOT NULL;
CREATE INDEX cash_ledger_order ON trading.cash_ledger (order_id) WHERE order_id IS NOT NULL;

CREATE TABLE trading.events (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  account_id bigint NOT NULL REFERENCES trading.accounts (id),
  kind       text NOT NULL CONSTRAINT events_kind CHECK (kind IN
               ('order_accepted', 'order_rejected', 'fill', 'order_cancelled', 'order_expired', 'stop_triggered')),
  order_id   bigint REFERENCES trading.orders (id),
  ts         timestamptz NOT NULL,
  payload    jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE trading.events IS 'Outbox: one row per order accepted/rejected, fill, stop trigger, cancel or expiry; each also sent as NOTIFY pgtrade_events.';
COMMENT ON COLUMN trading.events.ts IS 'Account clock when it happened; created_at is the wall-clock time it was written.';
CREATE INDEX events_account ON trading.events (account_id, id);
CREATE INDEX events_order ON trading.events (order_id) WHERE order_id IS NOT NULL;

CREATE TABLE trading.portfolio_snapshots (
  account_id      bigint NOT NULL REFERENCES trading.accounts (id),
  ts              timestamptz NOT NULL,
  cash            numeric NOT NULL,
  positions_value numeric NOT NULL,
  total_value     numeric NOT NULL,
  realized_pnl    numeric NOT NULL,
  unrealized_pnl  numeric NOT NULL,
  commissions     numeric NOT NULL,
  peak_value      numeric NOT NULL,
  drawdown        numeric NOT NULL,
  PRIMARY KEY (account_id, ts)
);
COMMENT ON TABLE trading.portfolio_snapshots IS 'Portfolio value over time (trading.snapshot_portfolio; every minute for live accounts by pg_cron).';
COMMENT ON COLUMN trading.portfolio_snapshots.drawdown IS 'Fraction below the highest total_value seen so far (0 at a peak).';

CREATE TABLE trading.live_watermarks (
  symbol   text NOT NULL,
  interval text NOT NULL,
  ts       timestamptz NOT NULL,
  PRIMARY KEY (symbol, interval)
);
COMMENT ON TABLE trading.live_watermarks IS 'Open time of the latest bar per symbol and interval seen by the live bar triggers; older bars (backfills, corrections of history) do not fire orders.';

-- What one bar does to one resting order (trading.match_orders hands these to trading.execute_bar_event).
CREATE TYPE trading.bar_event AS (
  order_id bigint, account_id bigint, bar_ts timestamptz, step interval, close numeric,
  triggers boolean, fill_qty numeric, price numeric, ref_price numeric);
COMMENT ON TYPE trading.bar_event IS 'A bar''s effect on a resting order: stop trigger and/or fill quantity and price.';
