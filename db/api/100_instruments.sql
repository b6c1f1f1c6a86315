CREATE VIEW api.instruments AS
SELECT i.symbol, i.name, i.asset_class, i.currency, i.exchange, i.active, i.qty_step, i.session_tz,
       i.session_open, i.session_close, i.trades_weekends, i.tick_size
FROM market.instruments i;
GRANT SELECT ON api.instruments TO web_anon, trader, pgtrade_admin;
COMMENT ON VIEW api.instruments IS
  'Tradable instruments: quantity step (whole shares for stocks), trading session (local times in session_tz), active flag. Readable without a token.';
COMMENT ON COLUMN api.instruments.qty_step IS 'Order quantities must be a multiple of this (TR011 otherwise).';
COMMENT ON COLUMN api.instruments.tick_size IS 'Smallest price step (0.01 by default, 0.00001 for fx).';
COMMENT ON COLUMN api.instruments.active IS 'Orders for inactive instruments are rejected (TR006).';
