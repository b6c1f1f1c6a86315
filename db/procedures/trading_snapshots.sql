-- Portfolio snapshots: one account at its clock, and every live account (the pg_cron job).

CREATE OR REPLACE FUNCTION trading.snapshot_portfolio(account_id bigint)
RETURNS trading.portfolio_snapshots
LANGUAGE plpgsql
AS $$
DECLARE
  _now timestamptz := trading.account_now(snapshot_portfolio.account_id);
  _p record;
  _peak numeric;
  _row trading.portfolio_snapshots;
BEGIN
  IF _now IS NULL THEN
    RAISE EXCEPTION 'unknown account %', snapshot_portfolio.account_id USING ERRCODE = 'TR013',
      HINT = 'pass the id of an existing trading account';
  END IF;
  SELECT * INTO _p FROM trading.portfolio(snapshot_portfolio.account_id);
  SELECT s.peak_value INTO _peak FROM trading.portfolio_snapshots s
  WHERE s.account_id = snapshot_portfolio.account_id AND s.ts < _now ORDER BY s.ts DESC LIMIT 1;
  _peak := greatest(coalesce(_peak, _p.total_value), _p.total_value);
  INSERT INTO trading.portfolio_snapshots AS s (account_id, ts, cash, positions_value, total_value, realized_pnl,
                                                unrealized_pnl, commissions, peak_value, drawdown)
  VALUES (snapshot_portfolio.account_id, _now, _p.cash, _p.positions_value, _p.total_value, _p.realized_pnl,
          _p.unrealized_pnl, _p.commissions, _peak,
          CASE WHEN _peak > 0 THEN round((_peak - _p.total_value) / _peak, 10) ELSE 0 END)
  ON CONFLICT ON CONSTRAINT portfolio_snapshots_pkey DO UPDATE
    SET cash = excluded.cash, positions_value = excluded.positions_value, total_value = excluded.total_value,
        realized_pnl = excluded.realized_pnl, unrealized_pnl = excluded.unrealized_pnl,
        commissions = excluded.commissions, peak_value = excluded.peak_value, drawdown = excluded.drawdown
  RETURNING * INTO _row;
  RETURN _row;
END
$$;
COMMENT ON FUNCTION trading.snapshot_portfolio IS
  'Record the account''s portfolio at its clock (cash, positions value, total, P&L, commissions, peak and drawdown from peak); a second snapshot at the same time replaces the first.';

CREATE OR REPLACE FUNCTION trading.snapshot_live_portfolios()
RETURNS integer
LANGUAGE sql
AS $$
  SELECT count(trading.snapshot_portfolio(a.id))::int FROM trading.accounts a WHERE a.kind = 'live'
$$;
COMMENT ON FUNCTION trading.snapshot_live_portfolios IS 'Snapshot every live account (the pg_cron job, every minute).';
