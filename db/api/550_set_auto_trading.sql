-- A trader changes its own account's auto-trading settings (an administrator any account's, through `account`).
-- Arguments left out (NULL) keep their current value, or the table's default on the first call. Bad input is
-- refused before anything changes: ML041 for model names that name no direction model in the registry, ML042 for a
-- value out of range (the table's CHECKs would refuse it too, but as an anonymous 23514).
CREATE OR REPLACE FUNCTION api.set_auto_trading(
  enabled boolean DEFAULT NULL, models text[] DEFAULT NULL, min_confidence numeric DEFAULT NULL,
  size_fraction numeric DEFAULT NULL, use_brackets boolean DEFAULT NULL, account text DEFAULT NULL)
RETURNS api.auto_trading
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _id bigint := api.request_account_id(set_auto_trading.account);
  _models text[];
  _unknown text[];
  _row api.auto_trading;
BEGIN
  IF set_auto_trading.min_confidence IS NOT NULL AND NOT set_auto_trading.min_confidence BETWEEN 0 AND 1 THEN
    RAISE EXCEPTION 'min_confidence must be between 0 and 1' USING ERRCODE = 'ML042',
      DETAIL = format('min_confidence = %s', set_auto_trading.min_confidence),
      HINT = 'signals with confidence >= min_confidence trade; confidence runs from 0 to 1';
  END IF;
  IF set_auto_trading.size_fraction IS NOT NULL
     AND NOT (set_auto_trading.size_fraction > 0 AND set_auto_trading.size_fraction <= 1) THEN
    RAISE EXCEPTION 'size_fraction must be greater than 0 and at most 1' USING ERRCODE = 'ML042',
      DETAIL = format('size_fraction = %s', set_auto_trading.size_fraction),
      HINT = 'an order is sized at size_fraction x confidence of the account''s max position';
  END IF;
  IF set_auto_trading.models IS NOT NULL THEN
    -- each name once, in the order given
    SELECT coalesce(array_agg(u.name ORDER BY u.first), '{}') INTO _models
    FROM (SELECT m.name, min(m.ord) AS first FROM unnest(set_auto_trading.models) WITH ORDINALITY m(name, ord)
          GROUP BY m.name) u;
    SELECT array_agg(coalesce(quote_literal(n.name), 'NULL') ORDER BY n.name) INTO _unknown
    FROM unnest(_models) n(name)
    WHERE NOT EXISTS (SELECT FROM ml.models m WHERE m.name = n.name AND m.task = 'direction');
    IF _unknown IS NOT NULL THEN
      RAISE EXCEPTION 'unknown model name(s): %', array_to_string(_unknown, ', ') USING ERRCODE = 'ML041',
        DETAIL = 'auto-trading acts on signals of direction models in the registry',
        HINT = 'pick names from /models?task=eq.direction (pgtrade ml list), or pass an empty list for every active model';
    END IF;
  END IF;
  INSERT INTO trading.auto_trading (account_id) VALUES (_id) ON CONFLICT (account_id) DO NOTHING;
  UPDATE trading.auto_trading t
  SET enabled = coalesce(set_auto_trading.enabled, t.enabled),
      models = coalesce(_models, t.models),
      min_confidence = coalesce(set_auto_trading.min_confidence, t.min_confidence),
      size_fraction = coalesce(set_auto_trading.size_fraction, t.size_fraction),
      use_brackets = coalesce(set_auto_trading.use_brackets, t.use_brackets),
      updated_at = now()
  WHERE t.account_id = _id;
  SELECT * INTO _row FROM api.auto_trading v WHERE v.account_id = _id;
  RETURN _row;
END
$$;
REVOKE ALL ON FUNCTION api.set_auto_trading(boolean, text[], numeric, numeric, boolean, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api.set_auto_trading(boolean, text[], numeric, numeric, boolean, text)
  TO trader, pgtrade_admin;
COMMENT ON FUNCTION api.set_auto_trading(boolean, text[], numeric, numeric, boolean, text) IS
  'Change the auto-trading settings of your account; arguments left out keep their value (the first call starts from the defaults of the settings table: disabled, every active model). enabled: trade signals; models: direction model names (empty: every active one); min_confidence 0..1; size_fraction in (0, 1]; use_brackets: attach the signal''s stop-loss and take-profit. Administrators pass account. Returns the settings. Errors: ML041 unknown model name, ML042 value out of range, TR013 unknown account (admins), 42501 another account (traders). docs/errors.md.';
