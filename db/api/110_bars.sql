-- No row filter here (market data is public), so no security barrier either: PostgREST's filters
-- (?symbol=eq.SPX&interval=eq.1d&ts=gte.2018-01-01) reach the hypertable's index and chunk exclusion.
CREATE VIEW api.bars AS
SELECT b.symbol, b.interval, b.ts, b.open, b.high, b.low, b.close, b.volume
FROM market.bars b;
GRANT SELECT ON api.bars TO web_anon, trader, pgtrade_admin;
COMMENT ON VIEW api.bars IS
  'OHLCV bars (ts = bar open, UTC). Filter with PostgREST query syntax, e.g. /bars?symbol=eq.SPX&interval=eq.1d&ts=gte.2018-01-01&order=ts&limit=100. Intervals: 1m, 5m, 15m, 30m, 1h, 4h, 1d. Readable without a token.';
COMMENT ON COLUMN api.bars.ts IS 'Bar open time (UTC).';
COMMENT ON COLUMN api.bars.interval IS 'Bar interval: 1m, 5m, 15m, 30m, 1h, 4h or 1d.';
