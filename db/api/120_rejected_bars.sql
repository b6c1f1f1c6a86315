CREATE VIEW api.rejected_bars AS
SELECT r.id, r.rejected_at, r.source, r.reason, r.symbol, r.interval, r.ts, r.open, r.high, r.low, r.close,
       r.volume, r.raw
FROM market.rejected_bars r;
GRANT SELECT ON api.rejected_bars TO pgtrade_admin;
COMMENT ON VIEW api.rejected_bars IS 'Every bar the ingest path refused, with its reason (administrators only).';
