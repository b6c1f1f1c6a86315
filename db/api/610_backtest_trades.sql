-- The trade list of the runs a request may see (api.backtests' rule). The round trips of backtest.trades when the
-- database has that table; before it, the fills of each run's account (one row per fill), so the view exists and
-- serves what the run recorded either way (nothing is derived here). Created by a DO block because which of the two
-- it is depends on the schema; the api schema is rebuilt on every migrate, so it follows the schema.
DO $do$
BEGIN
  IF pg_catalog.to_regclass('backtest.trades') IS NOT NULL THEN
    EXECUTE $v$
      CREATE VIEW api.backtest_trades WITH (security_barrier) AS
      SELECT t.*
      FROM backtest.trades t
      JOIN backtest.runs r ON r.id = t.run_id
      WHERE r.owner_account_id = ANY ((SELECT api.request_accounts())::bigint[])
         OR (r.owner_account_id IS NULL AND r.account_id = ANY ((SELECT api.request_accounts())::bigint[])) $v$;
  ELSE
    EXECUTE $v$
      CREATE VIEW api.backtest_trades WITH (security_barrier) AS
      SELECT r.id AS run_id, f.id AS fill_id, f.symbol, f.side, f.qty, f.price, f.ref_price, f.commission,
             f.slippage, f.realized_pnl, f.ts
      FROM backtest.runs r
      JOIN trading.fills f ON f.account_id = r.account_id
      WHERE r.owner_account_id = ANY ((SELECT api.request_accounts())::bigint[])
         OR (r.owner_account_id IS NULL AND r.account_id = ANY ((SELECT api.request_accounts())::bigint[])) $v$;
  END IF;
END
$do$;
GRANT SELECT ON api.backtest_trades TO trader, pgtrade_admin;
COMMENT ON VIEW api.backtest_trades IS
  'The trades of the backtest runs you may see (filter by run_id): the round-trip trades of each run (entry and exit, P&L, commissions); on a database without backtest.trades, the fills of the run (side, qty, price, commission, realized P&L, time). A trader sees its own runs.';
