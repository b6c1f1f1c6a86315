-- The portfolio of an account: every figure of its value, from one valuation rule (trading.position_values).

-- The result columns grew (net_pnl, gross_exposure): CREATE OR REPLACE cannot change a function's result type, so
-- an older definition goes first. Nothing depends on it here (api, whose views read positions directly, is rebuilt
-- after the procedures; PL/pgSQL callers bind at run time).
DO $$
BEGIN
  IF pg_catalog.pg_get_function_result(pg_catalog.to_regprocedure('trading.portfolio(bigint)'))
     NOT LIKE '%gross_exposure numeric%' THEN
    DROP FUNCTION trading.portfolio(bigint);
  END IF;
END
$$;

-- A SQL function returning a set, STABLE, without SET or SECURITY DEFINER: place_order selects from it in FROM, so
-- it is inlined into place_order's cached plan instead of being planned on every call.
CREATE OR REPLACE FUNCTION trading.portfolio(account_id bigint)
RETURNS TABLE (cash numeric, positions_value numeric, total_value numeric, realized_pnl numeric,
               unrealized_pnl numeric, commissions numeric, initial_cash numeric, net_pnl numeric,
               gross_exposure numeric)
LANGUAGE sql STABLE
AS $$
  SELECT a.cash, coalesce(p.mv, 0), a.cash + coalesce(p.mv, 0), a.realized_pnl, coalesce(p.mv - p.basis, 0),
         a.commissions, a.initial_cash, a.cash + coalesce(p.mv, 0) - a.initial_cash, coalesce(p.gross, 0)
  FROM trading.accounts a
  LEFT JOIN LATERAL (SELECT sum(v.value) AS mv, sum(v.cost_basis) AS basis, sum(abs(v.value)) AS gross
                     FROM trading.position_values v WHERE v.account_id = a.id AND v.qty <> 0) p ON true
  WHERE a.id = portfolio.account_id
$$;
COMMENT ON FUNCTION trading.portfolio IS
  'Cash, value of open positions (trading.position_values: at their mark prices), total, realized P&L (gross of commission), unrealized P&L, commissions, initial cash, net P&L (total - initial cash) and gross exposure (sum of |position value|). Identity: cash + positions_value = initial_cash + realized_pnl + unrealized_pnl - commissions.';
