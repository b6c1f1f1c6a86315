-- Portfolio value, snapshots, day-order expiry and the ledger replay.

CREATE OR REPLACE FUNCTION trading.portfolio(account_id bigint)
RETURNS TABLE (cash numeric, positions_value numeric, total_value numeric, realized_pnl numeric,
               unrealized_pnl numeric, commissions numeric, initial_cash numeric)
LANGUAGE sql STABLE
AS $$
  SELECT a.cash, coalesce(p.mv, 0), a.cash + coalesce(p.mv, 0), a.realized_pnl, coalesce(p.upnl, 0), a.commissions,
         a.initial_cash
  FROM trading.accounts a
  LEFT JOIN LATERAL (SELECT sum(x.market_value) AS mv, sum(x.unrealized_pnl) AS upnl
                     FROM trading.positions x WHERE x.account_id = a.id AND x.qty <> 0) p ON true
  WHERE a.id = portfolio.account_id
$$;
COMMENT ON FUNCTION trading.portfolio IS
  'Cash, market value of open positions (at their mark prices), total, realized P&L (gross of commission), unrealized P&L and commissions. Identity: cash + positions_value = initial_cash + realized_pnl + unrealized_pnl - commissions.';

CREATE OR REPLACE FUNCTION trading.portfolio_value(account_id bigint)
RETURNS numeric
LANGUAGE sql STABLE
AS $$ SELECT p.total_value FROM trading.portfolio(portfolio_value.account_id) p $$;
COMMENT ON FUNCTION trading.portfolio_value IS 'Cash plus the market value of open positions at their mark prices.';

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

CREATE OR REPLACE FUNCTION trading.expire_orders(account_id bigint DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
  _id bigint;
  _n integer := 0;
BEGIN
  FOR _id IN
    SELECT o.id FROM trading.orders o JOIN trading.accounts a ON a.id = o.account_id
    WHERE o.status IN ('accepted', 'partially_filled') AND o.tif = 'day'
      AND CASE WHEN expire_orders.account_id IS NULL THEN a.kind = 'live' ELSE a.id = expire_orders.account_id END
      AND o.expires_at <= trading.account_now(a.id)
    ORDER BY o.id
  LOOP
    PERFORM trading.end_order(_id, 'expired', 'day order: the session ended');
    _n := _n + 1;
  END LOOP;
  RETURN _n;
END
$$;
COMMENT ON FUNCTION trading.expire_orders IS
  'Expire open day orders whose session has ended by the account clock (all live accounts when account_id is NULL; the pg_cron job runs it every minute).';

-- Replays the fills ledger through the P&L rule (a check: it must equal trading.positions).
CREATE OR REPLACE FUNCTION trading.replay_positions(account_id bigint)
RETURNS TABLE (symbol text, qty numeric, cost_basis numeric, realized_pnl numeric, commissions numeric)
LANGUAGE plpgsql
AS $$
DECLARE
  _f record;
  _s record;
  _q numeric; _b numeric; _r numeric; _c numeric;
BEGIN
  CREATE TEMP TABLE IF NOT EXISTS replay_state (symbol text PRIMARY KEY, qty numeric, cost_basis numeric,
                                                realized numeric, commissions numeric) ON COMMIT DROP;
  TRUNCATE replay_state;
  FOR _f IN SELECT f.symbol, f.side, f.qty, f.price, f.commission FROM trading.fills f
            WHERE f.account_id = replay_positions.account_id ORDER BY f.id LOOP
    SELECT r.qty, r.cost_basis, r.realized, r.commissions INTO _q, _b, _r, _c FROM replay_state r WHERE r.symbol = _f.symbol;
    _s := trading.pnl_step(coalesce(_q, 0), coalesce(_b, 0), CASE _f.side WHEN 'buy' THEN _f.qty ELSE -_f.qty END, _f.price);
    INSERT INTO replay_state VALUES (_f.symbol, _s.new_qty, _s.new_cost_basis, coalesce(_r, 0) + _s.realized, coalesce(_c, 0) + _f.commission)
    ON CONFLICT ON CONSTRAINT replay_state_pkey DO UPDATE SET qty = excluded.qty, cost_basis = excluded.cost_basis,
      realized = excluded.realized, commissions = excluded.commissions;
  END LOOP;
  RETURN QUERY SELECT r.symbol, r.qty, r.cost_basis, r.realized, r.commissions FROM replay_state r ORDER BY r.symbol;
END
$$;
COMMENT ON FUNCTION trading.replay_positions IS
  'Rebuild every position of an account from its fills ledger with trading.pnl_step (a consistency check against trading.positions).';
