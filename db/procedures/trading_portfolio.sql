-- The portfolio of an account: what it holds and what that is worth.

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
