-- Session and quantity step default to the asset class's (market.asset_classes): a NULL session_tz takes the class's
-- whole session (zone, open, close); a given session_tz takes session_open/session_close as given (NULL = around
-- the clock). A NULL qty_step or trades_weekends takes the class's.
CREATE OR REPLACE FUNCTION market.upsert_instrument(
  symbol text, name text DEFAULT NULL, asset_class text DEFAULT 'stock', currency text DEFAULT 'USD',
  exchange text DEFAULT NULL, qty_step numeric DEFAULT NULL, session_tz text DEFAULT NULL,
  session_open time DEFAULT NULL, session_close time DEFAULT NULL, trades_weekends boolean DEFAULT NULL)
RETURNS market.instruments
LANGUAGE plpgsql
AS $$
DECLARE
  _row market.instruments;
  _sym text := upper(btrim(upsert_instrument.symbol));
  _class market.asset_classes;
BEGIN
  SELECT * INTO _class FROM market.asset_classes a WHERE a.asset_class = upsert_instrument.asset_class;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown asset class %', coalesce(quote_literal(upsert_instrument.asset_class), 'NULL')
      USING ERRCODE = '22023',
            HINT = 'use one of: ' || (SELECT string_agg(a.asset_class, ', ' ORDER BY a.asset_class)
                                      FROM market.asset_classes a);
  END IF;
  IF upsert_instrument.session_tz IS NULL THEN
    upsert_instrument.session_tz := _class.session_tz;
    upsert_instrument.session_open := _class.session_open;
    upsert_instrument.session_close := _class.session_close;
  END IF;
  upsert_instrument.qty_step := coalesce(upsert_instrument.qty_step, _class.qty_step);
  upsert_instrument.trades_weekends := coalesce(upsert_instrument.trades_weekends, _class.trades_weekends);
  IF NOT coalesce(market.is_valid_symbol(_sym), false) THEN
    RAISE EXCEPTION 'invalid symbol %', coalesce(quote_literal(upsert_instrument.symbol), 'NULL')
      USING ERRCODE = '22023', HINT = 'symbols are 1-32 characters of A-Z 0-9 . _ / = ^ -';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE pg_timezone_names.name = upsert_instrument.session_tz) THEN
    RAISE EXCEPTION 'unknown time zone %', quote_literal(upsert_instrument.session_tz)
      USING ERRCODE = '22023', HINT = 'use an IANA zone name such as America/New_York';
  END IF;
  INSERT INTO market.instruments AS i (symbol, name, asset_class, currency, exchange, qty_step, session_tz,
                                       session_open, session_close, trades_weekends, auto_registered)
  VALUES (_sym, upsert_instrument.name, upsert_instrument.asset_class, upsert_instrument.currency,
          upsert_instrument.exchange, upsert_instrument.qty_step, upsert_instrument.session_tz,
          upsert_instrument.session_open, upsert_instrument.session_close, upsert_instrument.trades_weekends, false)
  ON CONFLICT ON CONSTRAINT instruments_pkey DO UPDATE
    SET name = excluded.name, asset_class = excluded.asset_class, currency = excluded.currency,
        exchange = excluded.exchange, qty_step = excluded.qty_step, session_tz = excluded.session_tz,
        session_open = excluded.session_open, session_close = excluded.session_close,
        trades_weekends = excluded.trades_weekends, auto_registered = false
  RETURNING * INTO _row;
  RETURN _row;
END
$$;
COMMENT ON FUNCTION market.upsert_instrument IS
  'Register an instrument or update its definition (clears auto_registered); session and qty_step default to the asset class''s (market.asset_classes).';
