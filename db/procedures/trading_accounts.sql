-- Accounts: creation, configuration, pause. Their clock is in trading_clock.sql.

CREATE OR REPLACE FUNCTION trading.configure_account(account_id bigint, settings jsonb)
RETURNS trading.accounts
LANGUAGE plpgsql
AS $$
DECLARE
  _row trading.accounts;
  _bad text;
BEGIN
  SELECT string_agg(k, ', ') INTO _bad
  FROM jsonb_object_keys(coalesce(configure_account.settings, '{}')) k
  WHERE k NOT IN ('max_position_pct', 'max_gross_leverage', 'max_order_value', 'allow_short', 'paused',
                  'commission_rate', 'commission_min', 'slippage_bps', 'max_price_age', 'volume_cap_pct',
                  'match_interval', 'currency', 'market_fill', 'max_drawdown');
  IF _bad IS NOT NULL THEN
    RAISE EXCEPTION 'unknown account setting(s): %', _bad USING ERRCODE = 'TR016',
      HINT = 'settings: max_position_pct, max_gross_leverage, max_order_value, allow_short, paused, commission_rate, commission_min, slippage_bps, max_price_age, volume_cap_pct, match_interval, currency, market_fill, max_drawdown';
  END IF;
  UPDATE trading.accounts a SET
    max_position_pct   = CASE WHEN settings ? 'max_position_pct' THEN (settings->>'max_position_pct')::numeric ELSE a.max_position_pct END,
    max_gross_leverage = CASE WHEN settings ? 'max_gross_leverage' THEN (settings->>'max_gross_leverage')::numeric ELSE a.max_gross_leverage END,
    max_order_value    = CASE WHEN settings ? 'max_order_value' THEN (settings->>'max_order_value')::numeric ELSE a.max_order_value END,
    allow_short        = CASE WHEN settings ? 'allow_short' THEN (settings->>'allow_short')::boolean ELSE a.allow_short END,
    paused             = CASE WHEN settings ? 'paused' THEN (settings->>'paused')::boolean ELSE a.paused END,
    commission_rate    = CASE WHEN settings ? 'commission_rate' THEN (settings->>'commission_rate')::numeric ELSE a.commission_rate END,
    commission_min     = CASE WHEN settings ? 'commission_min' THEN (settings->>'commission_min')::numeric ELSE a.commission_min END,
    slippage_bps       = CASE WHEN settings ? 'slippage_bps' THEN (settings->>'slippage_bps')::numeric ELSE a.slippage_bps END,
    max_price_age      = CASE WHEN settings ? 'max_price_age' THEN (settings->>'max_price_age')::interval ELSE a.max_price_age END,
    volume_cap_pct     = CASE WHEN settings ? 'volume_cap_pct' THEN (settings->>'volume_cap_pct')::numeric ELSE a.volume_cap_pct END,
    match_interval     = CASE WHEN settings ? 'match_interval' THEN settings->>'match_interval' ELSE a.match_interval END,
    currency           = CASE WHEN settings ? 'currency' THEN settings->>'currency' ELSE a.currency END,
    market_fill        = CASE WHEN settings ? 'market_fill' THEN settings->>'market_fill' ELSE a.market_fill END,
    max_drawdown       = CASE WHEN settings ? 'max_drawdown' THEN (settings->>'max_drawdown')::numeric ELSE a.max_drawdown END
  WHERE a.id = configure_account.account_id
  RETURNING * INTO _row;
  IF _row.id IS NULL THEN
    RAISE EXCEPTION 'unknown account %', configure_account.account_id USING ERRCODE = 'TR013',
      HINT = 'list accounts in trading.accounts';
  END IF;
  RETURN _row;
END
$$;
COMMENT ON FUNCTION trading.configure_account IS
  'Change an account''s risk limits and cost model from a JSON object of settings (a key with null clears a nullable limit).';

CREATE OR REPLACE FUNCTION trading.create_account(
  name text, initial_cash numeric DEFAULT 100000, kind text DEFAULT 'live', clock_ts timestamptz DEFAULT NULL,
  settings jsonb DEFAULT '{}')
RETURNS trading.accounts
LANGUAGE plpgsql
AS $$
DECLARE
  _row trading.accounts;
  _manual boolean := create_account.kind = 'backtest' OR create_account.clock_ts IS NOT NULL;
BEGIN
  IF create_account.kind = 'backtest' AND create_account.clock_ts IS NULL THEN
    RAISE EXCEPTION 'a backtest account needs a start time (clock_ts)' USING ERRCODE = 'TR016',
      HINT = 'pass clock_ts, the time the backtest starts at';
  END IF;
  INSERT INTO trading.accounts (name, kind, clock_mode, clock_ts, initial_cash, cash, max_price_age)
  VALUES (create_account.name, create_account.kind, CASE WHEN _manual THEN 'manual' ELSE 'wall' END,
          create_account.clock_ts, create_account.initial_cash, create_account.initial_cash,
          CASE WHEN _manual THEN interval '5 days' ELSE interval '15 minutes' END)
  RETURNING * INTO _row;
  INSERT INTO trading.cash_ledger (account_id, ts, cause, amount, balance, note)
  VALUES (_row.id, trading.account_now(_row.id), 'deposit', _row.initial_cash, _row.initial_cash, 'initial cash');
  IF create_account.settings IS NOT NULL AND create_account.settings <> '{}' THEN
    _row := trading.configure_account(_row.id, create_account.settings);
  END IF;
  RETURN _row;
END
$$;
COMMENT ON FUNCTION trading.create_account IS
  'Open an account with its initial cash. kind live (wall clock unless clock_ts is given) or backtest (manual clock starting at clock_ts). Max price age defaults to 15 minutes on wall-clock accounts and 5 days on manual ones.';

CREATE OR REPLACE FUNCTION trading.set_paused(account_id bigint, paused boolean)
RETURNS trading.accounts
LANGUAGE sql
AS $$ SELECT * FROM trading.configure_account(set_paused.account_id, jsonb_build_object('paused', set_paused.paused)) $$;
COMMENT ON FUNCTION trading.set_paused IS 'Pause (true) or resume (false) trading on an account: a paused account rejects new orders (TR007).';
