-- The registered backtest strategies (what rpc/run_backtest accepts as strategy), with their default parameters and
-- the default grid of a walk-forward. No row filter: every trader sees the whole registry.
CREATE VIEW api.strategies AS
SELECT s.name, s.description, s.defaults, s.grid, s.created_at
FROM backtest.strategies s;
GRANT SELECT ON api.strategies TO trader, pgtrade_admin;
COMMENT ON VIEW api.strategies IS
  'Backtest strategies: name (the strategy argument of rpc/run_backtest), what it does, its default parameters (override them in params) and the parameter grid a walk-forward searches by default. Traders and administrators.';
