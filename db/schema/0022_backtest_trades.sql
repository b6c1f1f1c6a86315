-- Round-trip trades of a backtest run (issue 13): a position's life in one symbol from flat (or a flip through
-- zero) back to flat, built set-based from the run's fills and position history by internal.backtest_trades. The
-- P&L is the trading core's (trading.pnl_step wrote each fill's realized_pnl); nothing is re-derived here.
CREATE TABLE backtest.trades (
  run_id         bigint NOT NULL REFERENCES backtest.runs (id) ON DELETE CASCADE,
  n              integer NOT NULL CONSTRAINT trades_n CHECK (n > 0),
  symbol         text NOT NULL,
  direction      text NOT NULL CONSTRAINT trades_direction CHECK (direction IN ('long', 'short')),
  qty            numeric NOT NULL CONSTRAINT trades_qty CHECK (qty > 0),
  entry_ts       timestamptz NOT NULL,
  entry_price    numeric NOT NULL,
  exit_ts        timestamptz,
  exit_price     numeric,
  pnl            numeric NOT NULL,
  commissions    numeric NOT NULL,
  net_pnl        numeric NOT NULL,
  return_pct     numeric,
  bars_held      integer NOT NULL,
  fills          integer NOT NULL,
  mark_price     numeric,
  unrealized_pnl numeric,
  PRIMARY KEY (run_id, n),
  CONSTRAINT trades_exit CHECK ((exit_ts IS NULL) = (exit_price IS NULL)),
  CONSTRAINT trades_open CHECK (exit_ts IS NOT NULL OR return_pct IS NULL)
);
COMMENT ON TABLE backtest.trades IS
  'Round-trip trades of a run: per symbol, a position from flat (or a flip through zero) to flat, from the run''s fills and position history. A trade still open at the end of the run has exit_ts and exit_price NULL and is left out of the closed-trade statistics (docs/backtesting.md, Metrics).';
COMMENT ON COLUMN backtest.trades.n IS 'Trade number in the run, by entry time (then symbol).';
COMMENT ON COLUMN backtest.trades.qty IS 'Units entered over the trade (the sum of its opening and adding fills'' quantities; for a flip, the part beyond zero).';
COMMENT ON COLUMN backtest.trades.entry_price IS 'Quantity-weighted average price of the entry fills.';
COMMENT ON COLUMN backtest.trades.exit_price IS 'Quantity-weighted average price of the exit fills; NULL while the trade is open at the end of the run.';
COMMENT ON COLUMN backtest.trades.pnl IS 'Gross realized P&L: the sum of the exit fills'' realized_pnl (the trading core''s P&L rule, trading.pnl_step).';
COMMENT ON COLUMN backtest.trades.commissions IS 'Commissions of the entry and exit fills (a fill that flips the position is shared pro rata to quantity between the trade it closes and the one it opens).';
COMMENT ON COLUMN backtest.trades.net_pnl IS 'pnl - commissions.';
COMMENT ON COLUMN backtest.trades.return_pct IS 'net_pnl / (qty x entry_price), a fraction (0.05 = 5 %), as backtesting.py''s ReturnPct; NULL for an open trade.';
COMMENT ON COLUMN backtest.trades.bars_held IS 'Bars of the symbol opening after the entry up to and including the exit bar (exit bar index - entry bar index, as backtesting.py); for an open trade, up to the last bar of the run.';
COMMENT ON COLUMN backtest.trades.mark_price IS 'Open trades: the position''s last mark (trading.positions.last_price) at the end of the run.';
COMMENT ON COLUMN backtest.trades.unrealized_pnl IS 'Open trades: the position''s unrealized P&L at the end of the run (trading.positions.unrealized_pnl).';
