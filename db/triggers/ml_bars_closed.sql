-- New or updated bars close earlier ones (ml.closed_upto): hand the newly closed bars to ML processing in the
-- ingest transaction (signals, anomalies, auto-trading; internal.on_closed_bars). In the same transaction, not
-- after it: a closed bar's signal, anomalies and orders commit with it or not at all, and nothing outside the
-- database has to be running. Statement-level with a transition table: a bulk load runs this once.
-- Runs after the trading trigger (_100_...): resting orders fill on the new bars before signals place new ones.
CREATE OR REPLACE FUNCTION ml.tg_bars__closed()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _syms text[];
  _ivs text[];
  _los timestamptz[];
  _his timestamptz[];
BEGIN
  SELECT array_agg(s.symbol), array_agg(s.interval), array_agg(s.lo), array_agg(s.hi) INTO _syms, _ivs, _los, _his
  FROM (SELECT n.symbol, n.interval, min(n.ts) AS lo, max(n.ts) AS hi FROM new_bars n GROUP BY n.symbol, n.interval) s;
  IF _syms IS NOT NULL THEN
    PERFORM internal.process_closed(_syms, _ivs, _los, _his);
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION ml.tg_bars__closed IS
  'Statement trigger on market.bars: hand the bars this statement closed to ML processing (internal.process_closed).';

CREATE OR REPLACE TRIGGER _200_ml_closed_on_insert
  AFTER INSERT ON market.bars REFERENCING NEW TABLE AS new_bars
  FOR EACH STATEMENT EXECUTE FUNCTION ml.tg_bars__closed();
CREATE OR REPLACE TRIGGER _200_ml_closed_on_update
  AFTER UPDATE ON market.bars REFERENCING NEW TABLE AS new_bars
  FOR EACH STATEMENT EXECUTE FUNCTION ml.tg_bars__closed();
