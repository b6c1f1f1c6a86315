-- The referential check for market.bars, set-based: one anti-join per statement instead of two foreign-key
-- lookups per row (which cost more than the insert itself at bulk-load rates).
CREATE OR REPLACE FUNCTION market.tg_bars__check_references()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
  _bad record;
BEGIN
  SELECT n.symbol, n.interval INTO _bad
  FROM (SELECT DISTINCT nb.symbol, nb.interval FROM new_bars nb) n
  WHERE NOT EXISTS (SELECT 1 FROM market.instruments i WHERE i.symbol = n.symbol)
     OR NOT EXISTS (SELECT 1 FROM market.intervals iv WHERE iv.code = n.interval)
  LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'bars for unknown instrument or interval (%, %)', _bad.symbol, _bad.interval
      USING ERRCODE = '23503',
            HINT = 'load bars through market.ingest_staged(), which rejects or registers unknown symbols';
  END IF;
  RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER _010_check_references_insert AFTER INSERT ON market.bars
  REFERENCING NEW TABLE AS new_bars FOR EACH STATEMENT EXECUTE FUNCTION market.tg_bars__check_references();
CREATE OR REPLACE TRIGGER _010_check_references_update AFTER UPDATE ON market.bars
  REFERENCING NEW TABLE AS new_bars FOR EACH STATEMENT EXECUTE FUNCTION market.tg_bars__check_references();
