-- The default price tick of an instrument (migration 0014): by asset class, when none is given.

-- The tick rule lives in market.asset_classes.tick_size (fx quotes to the fifth decimal, a pipette; the rest to the cent).
CREATE OR REPLACE FUNCTION market.default_tick_size(asset_class text)
RETURNS numeric
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT a.tick_size FROM market.asset_classes a WHERE a.asset_class = default_tick_size.asset_class $$;
COMMENT ON FUNCTION market.default_tick_size IS
  'The default price tick of an asset class (market.asset_classes.tick_size: 0.00001 for fx, 0.01 for the others).';

-- Row-level and BEFORE (a NOT NULL column is checked after BEFORE triggers): an insert without a tick gets its
-- class's default; a change of class moves a tick that was the old class's default to the new class's one.
-- Instruments are few and inserted a handful at a time (market.upsert_instrument, auto-registration on ingest).
CREATE OR REPLACE FUNCTION market.tg_instruments__default_tick_size()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF (TG_OP = 'INSERT' AND NEW.tick_size IS NULL)
     OR (TG_OP = 'UPDATE' AND NEW.asset_class IS DISTINCT FROM OLD.asset_class
         AND NEW.tick_size = OLD.tick_size AND OLD.tick_size = market.default_tick_size(OLD.asset_class)) THEN
    NEW.tick_size := market.default_tick_size(NEW.asset_class);
  END IF;
  RETURN NEW;
END
$$;
COMMENT ON FUNCTION market.tg_instruments__default_tick_size IS
  'Row trigger on market.instruments: a missing tick_size takes the asset class''s default (market.default_tick_size); a class change carries a default tick along.';

CREATE OR REPLACE TRIGGER _050_default_tick_size
  BEFORE INSERT OR UPDATE OF asset_class ON market.instruments
  FOR EACH ROW EXECUTE FUNCTION market.tg_instruments__default_tick_size();
