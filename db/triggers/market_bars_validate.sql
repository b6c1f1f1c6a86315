-- The last line of defence for market.bars, set-based: one pass over each statement's new rows with the same
-- rules as the ingest path (market.bar_problem) plus the reference checks, instead of per-row CHECK and
-- foreign-key constraints that cost more than the insert itself at bulk-load rates.
-- market.ingest_staged() has validated its rows already and says so for its own statement
-- (pgtrade.ingest_validated, transaction-local); every other INSERT, UPDATE or COPY is checked here, with every rule
-- of market.staged_bars() (the ingest path's direct COPY of well-formed new bars relies on that: a batch with any
-- bar this refuses goes through the staging path instead, which records the reject).
CREATE OR REPLACE FUNCTION market.tg_bars__validate()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
  _bad record;
BEGIN
  IF current_setting('pgtrade.ingest_validated', true) = 'on' THEN
    RETURN NULL;
  END IF;
  SELECT n.symbol, n.interval, n.ts,
         CASE WHEN i.symbol IS NULL THEN 'unknown symbol'
              WHEN iv.code IS NULL THEN 'unknown interval'
              WHEN n.ts > now() + iv.step THEN 'timestamp is in the future'
              ELSE market.bar_problem(iv.step, n.ts, n.open, n.high, n.low, n.close, n.volume) END AS reason
    INTO _bad
  FROM new_bars n
  LEFT JOIN market.instruments i ON i.symbol = n.symbol
  LEFT JOIN market.intervals iv ON iv.code = n.interval
  WHERE i.symbol IS NULL OR iv.code IS NULL OR n.ts > now() + iv.step
     OR market.bar_problem(iv.step, n.ts, n.open, n.high, n.low, n.close, n.volume) IS NOT NULL
  LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'invalid bar %/% at %: %', _bad.symbol, _bad.interval, _bad.ts, _bad.reason
      USING ERRCODE = '23514',
            HINT = 'load bars through market.ingest_staged(), which records invalid bars in market.rejected_bars';
  END IF;
  RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER _010_validate_insert AFTER INSERT ON market.bars
  REFERENCING NEW TABLE AS new_bars FOR EACH STATEMENT EXECUTE FUNCTION market.tg_bars__validate();
CREATE OR REPLACE TRIGGER _010_validate_update AFTER UPDATE ON market.bars
  REFERENCING NEW TABLE AS new_bars FOR EACH STATEMENT EXECUTE FUNCTION market.tg_bars__validate();
