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
