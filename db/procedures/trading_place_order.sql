-- trading.place_order: validate, run the pre-trade risk checks under the account row lock, record the order
-- (accepted or rejected, never raised: a raise would roll the record back), fill market orders at once.
-- signal_id links an order to the ml.signals row that caused it (auto-trading, source 'signal'): at most one order
-- per account and signal (orders_account_signal); placing another for the same signal returns the first one, so a
-- rejected signal order is recorded once and never retried blindly.

-- The signal_id parameter was added: the older signature goes first (CREATE OR REPLACE would add an overload, and
-- every call with the old arguments would then be ambiguous until migrate drops it).
DROP FUNCTION IF EXISTS trading.place_order(bigint, text, text, numeric, text, numeric, numeric, text, text, numeric,
                                            numeric, text);

CREATE OR REPLACE FUNCTION trading.place_order(
  account_id bigint, symbol text, side text, qty numeric, type text DEFAULT 'market',
  limit_price numeric DEFAULT NULL, stop_price numeric DEFAULT NULL, tif text DEFAULT 'day',
  client_order_id text DEFAULT NULL, stop_loss numeric DEFAULT NULL, take_profit numeric DEFAULT NULL,
  source text DEFAULT 'manual', signal_id bigint DEFAULT NULL)
RETURNS trading.orders
LANGUAGE plpgsql
AS $$
DECLARE
  _a trading.accounts;
  _o trading.orders;
  _now timestamptz;
  _sym text := upper(btrim(place_order.symbol));
  _side text := lower(btrim(place_order.side));
  _type text := lower(btrim(coalesce(place_order.type, 'market')));
  _tif text := lower(btrim(coalesce(place_order.tif, 'day')));
  _source text := lower(btrim(coalesce(place_order.source, 'manual')));
  _inst market.instruments;
  _code text;
  _reason text;
  _last numeric;
  _last_at timestamptz;
  _est numeric;
  _value numeric;
  _pos_qty numeric := 0;
  _pos_value numeric;
  _reserved_cash numeric := 0;
  _reserved_sell numeric := 0;
  _pv numeric;
  _other_gross numeric;
  _result_qty numeric;
  _diff text;
  _signal bigint;      -- the signal named by signal_id, when it exists
  _signal_sym text;
BEGIN
  -- The account lock: NO KEY UPDATE, as everywhere an account's writers serialize (cancel_order, close_position,
  -- match_orders, mark_latest, advance_clock, auto_trade). It excludes the other writers as FOR UPDATE does but not
  -- the KEY SHARE lock a foreign-key check takes: the pg_cron job inserting every live account's snapshot would
  -- otherwise hold those on many accounts while waiting for one, and deadlock with the live bar trigger, which
  -- locks accounts in more than one round (tests/test_load.py, 100 API clients and the live feed).
  SELECT * INTO _a FROM trading.accounts a WHERE a.id = place_order.account_id FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown account %', coalesce(place_order.account_id::text, 'NULL') USING ERRCODE = 'TR013',
      DETAIL = 'no order was recorded', HINT = 'pass the id of an existing trading account';
  END IF;
  _now := trading.account_clock(_a.clock_mode, _a.clock_ts);  -- the row is locked: no second read

  -- Idempotency: the same client_order_id returns the same order; different parameters are an error.
  IF place_order.client_order_id IS NOT NULL THEN
    SELECT * INTO _o FROM trading.orders o
    WHERE o.account_id = _a.id AND o.client_order_id = place_order.client_order_id;
    IF FOUND THEN
      SELECT string_agg(f.name, ', ') INTO _diff
      FROM (VALUES ('symbol', _o.symbol IS DISTINCT FROM _sym),
                   ('side', _o.side IS DISTINCT FROM _side),
                   ('qty', _o.qty IS DISTINCT FROM place_order.qty),
                   ('type', _o.type IS DISTINCT FROM _type),
                   ('limit_price', _o.limit_price IS DISTINCT FROM place_order.limit_price),
                   ('stop_price', _o.stop_price IS DISTINCT FROM place_order.stop_price),
                   ('tif', _o.tif IS DISTINCT FROM _tif),
                   ('stop_loss', _o.stop_loss IS DISTINCT FROM place_order.stop_loss),
                   ('take_profit', _o.take_profit IS DISTINCT FROM place_order.take_profit),
                   ('source', _o.source IS DISTINCT FROM _source),
                   ('signal_id', _o.signal_id IS DISTINCT FROM place_order.signal_id)) f(name, differs)
      WHERE f.differs;
      IF _diff IS NOT NULL THEN
        RAISE EXCEPTION 'client_order_id % was already used for a different order', quote_literal(place_order.client_order_id)
          USING ERRCODE = 'TR012',
                DETAIL = format('order %s has different %s', _o.id, _diff),
                HINT = 'use a new client_order_id for a new order, or resend the original parameters to get the original order';
      END IF;
      RETURN _o;
    END IF;
  END IF;

  -- One order per account and signal: the first one is the answer (whatever became of it)
  IF place_order.signal_id IS NOT NULL THEN
    SELECT * INTO _o FROM trading.orders o
    WHERE o.account_id = _a.id AND o.signal_id = place_order.signal_id;
    IF FOUND THEN
      RETURN _o;
    END IF;
  END IF;

  IF place_order.signal_id IS NOT NULL THEN  -- only then: ml is the owner's schema
    SELECT s.id, s.symbol INTO _signal, _signal_sym FROM ml.signals s WHERE s.id = place_order.signal_id;
  END IF;

  -- Malformed requests (recorded as rejected, TR010)
  IF _side IS NULL OR _side NOT IN ('buy', 'sell') THEN
    _code := 'TR010'; _reason := 'side must be buy or sell';
  ELSIF _type NOT IN ('market', 'limit', 'stop', 'stop_limit') THEN
    _code := 'TR010'; _reason := 'type must be market, limit, stop or stop_limit';
  ELSIF _tif NOT IN ('day', 'gtc') THEN
    _code := 'TR010'; _reason := 'time in force must be day or gtc';
  ELSIF _source NOT IN ('manual', 'signal', 'strategy') THEN
    _code := 'TR010'; _reason := 'source must be manual, signal or strategy';
  ELSIF place_order.signal_id IS NOT NULL AND _source <> 'signal' THEN
    _code := 'TR010'; _reason := 'only an order of source signal names a signal';
  ELSIF place_order.signal_id IS NOT NULL AND _signal_sym IS DISTINCT FROM _sym THEN
    _code := 'TR010'; _reason := format('signal %s is not a signal of %s', place_order.signal_id, coalesce(_sym, 'NULL'));
  ELSIF NOT coalesce(place_order.qty > 0 AND place_order.qty < 'Infinity', false) THEN
    _code := 'TR010'; _reason := 'quantity must be a positive finite number';
  ELSIF _type IN ('limit', 'stop_limit') AND NOT coalesce(place_order.limit_price > 0 AND place_order.limit_price < 'Infinity', false) THEN
    _code := 'TR010'; _reason := _type || ' order needs a positive limit price';
  ELSIF _type IN ('stop', 'stop_limit') AND NOT coalesce(place_order.stop_price > 0 AND place_order.stop_price < 'Infinity', false) THEN
    _code := 'TR010'; _reason := _type || ' order needs a positive stop price';
  ELSIF _type IN ('market', 'stop') AND place_order.limit_price IS NOT NULL THEN
    _code := 'TR010'; _reason := 'a limit price is only for limit and stop_limit orders';
  ELSIF _type IN ('market', 'limit') AND place_order.stop_price IS NOT NULL THEN
    _code := 'TR010'; _reason := 'a stop price is only for stop and stop_limit orders';
  ELSIF NOT coalesce(place_order.stop_loss > 0 AND place_order.stop_loss < 'Infinity', true)
        OR NOT coalesce(place_order.take_profit > 0 AND place_order.take_profit < 'Infinity', true) THEN
    _code := 'TR010'; _reason := 'stop-loss and take-profit levels must be positive';
  END IF;

  IF _code IS NULL THEN
    SELECT * INTO _inst FROM market.instruments i WHERE i.symbol = _sym;
    IF NOT FOUND THEN
      _code := 'TR009'; _reason := format('unknown symbol %s', coalesce(_sym, 'NULL'));
    ELSIF NOT _inst.active THEN
      _code := 'TR006'; _reason := format('symbol %s is not active', _sym);
    ELSIF _a.paused THEN
      _code := 'TR007'; _reason := 'trading is paused on this account';
    ELSIF place_order.qty % _inst.qty_step <> 0 THEN
      _code := 'TR011'; _reason := format('quantity %s is not a multiple of the quantity step %s', place_order.qty, _inst.qty_step);
    END IF;
  END IF;

  IF _code IS NULL THEN
    IF _type = 'market' AND _a.market_fill = 'open' THEN
      -- market-on-open (backtest accounts): the open of the bar opening now; the checks below see the fill price
      _last := market.open_at(_sym, _a.match_interval, _now);
      IF _last IS NULL THEN
        _code := 'TR008'; _reason := format('no %s bar of %s opens at %s (market orders of this account fill at the open)', _a.match_interval, _sym, _now);
      ELSE
        SELECT f.price INTO _est
        FROM trading.fill_rule('market', _side, NULL, NULL, false, place_order.qty, _inst.qty_step,
                               _a.slippage_bps, NULL, _last, _last, _last, 0) f;
      END IF;
    ELSIF _type = 'market' THEN
      SELECT p.price, p.as_of INTO _last, _last_at FROM market.price_at(_sym, _now, coalesce(_now - _a.max_price_age, '-infinity')) p;
      IF _last IS NULL THEN
        _code := 'TR008'; _reason := format('no price for %s at %s', _sym, _now);
      ELSIF _a.max_price_age IS NOT NULL AND _now - _last_at > _a.max_price_age THEN
        _code := 'TR008'; _reason := format('last price of %s is from %s, older than %s', _sym, _last_at, _a.max_price_age);
      ELSE
        -- in FROM, so the SQL rule is inlined into this cached plan (as an expression it re-plans every call)
        SELECT f.price INTO _est
        FROM trading.fill_rule('market', _side, NULL, NULL, false, place_order.qty, _inst.qty_step,
                               _a.slippage_bps, NULL, _last, _last, _last, 0) f;
      END IF;
    ELSIF _type = 'stop' THEN
      _est := trading.slipped_price(place_order.stop_price, _side, _a.slippage_bps);  -- fills as market once triggered
    ELSE
      _est := place_order.limit_price;
    END IF;
  END IF;

  IF _code IS NULL AND (place_order.stop_loss IS NOT NULL OR place_order.take_profit IS NOT NULL) THEN
    IF (_side = 'buy' AND NOT (coalesce(place_order.stop_loss < _est, true) AND coalesce(place_order.take_profit > _est, true)))
       OR (_side = 'sell' AND NOT (coalesce(place_order.stop_loss > _est, true) AND coalesce(place_order.take_profit < _est, true))) THEN
      _code := 'TR010';
      _reason := format('bracket levels must lie on either side of the entry price %s (a buy: stop-loss below, take-profit above)', _est);
    END IF;
  END IF;

  -- Pre-trade risk checks
  IF _code IS NULL THEN
    _value := place_order.qty * _est;
    SELECT p.qty, p.value INTO _pos_qty, _pos_value
    FROM trading.position_values p WHERE p.account_id = _a.id AND p.symbol = _sym;
    _pos_qty := coalesce(_pos_qty, 0);
    SELECT coalesce(sum((o.qty - o.filled_qty) * o.est_price
                        + trading.commission(_a.commission_rate, _a.commission_min, (o.qty - o.filled_qty) * o.est_price, o.filled_qty = 0))
                    -- not the buy-side bracket children protecting the short this buy covers: its fill cancels
                    -- them (internal.apply_fill), so their cash is never spent twice
                    FILTER (WHERE o.side = 'buy' AND NOT (_side = 'buy' AND _pos_qty < 0 AND o.symbol = _sym
                                                          AND o.source IN ('stop_loss', 'take_profit'))), 0),
           coalesce(sum(o.qty - o.filled_qty) FILTER (WHERE o.side = 'sell' AND o.symbol = _sym
                                                      AND o.source NOT IN ('stop_loss', 'take_profit')), 0)
      INTO _reserved_cash, _reserved_sell
    FROM trading.orders o
    -- resting orders only (orders_resting_by_account): a committed market order is never open, and this
    -- account's own are not in flight (its row is locked)
    WHERE o.account_id = _a.id AND o.status IN ('accepted', 'partially_filled') AND o.type <> 'market';
    _result_qty := _pos_qty + CASE _side WHEN 'buy' THEN place_order.qty ELSE -place_order.qty END;

    IF _a.max_order_value IS NOT NULL AND _value > _a.max_order_value THEN
      _code := 'TR005'; _reason := format('order value %s exceeds the limit %s', round(_value, 2), _a.max_order_value);
    ELSE
      -- the affordability rule on the estimate, against what open orders have not reserved yet
      _code := trading.affordability(_side, place_order.qty, _est, true, _a.cash - _reserved_cash,
                                     _pos_qty - _reserved_sell, _a.commission_rate, _a.commission_min,
                                     _a.max_gross_leverage, _a.allow_short);
    END IF;
    IF _code = 'TR001' THEN
      _reason := format('insufficient cash: order needs %s including commission, available %s (cash %s less %s reserved by open buy orders)',
                        round(_value + trading.commission(_a.commission_rate, _a.commission_min, _value, true), 2),
                        round(_a.cash - _reserved_cash, 2), round(_a.cash, 2), round(_reserved_cash, 2));
    ELSIF _code = 'TR002' THEN
      _reason := format('insufficient position: selling %s, holding %s of which %s are in open sell orders; shorting is not allowed',
                        place_order.qty, _pos_qty, _reserved_sell);
    ELSIF _code IS NULL AND abs(_result_qty) > abs(_pos_qty) THEN
      -- portfolio value and gross exposure as trading.portfolio states them (in FROM: inlined into this plan)
      SELECT v.total_value, v.gross_exposure - abs(coalesce(_pos_value, 0)) INTO _pv, _other_gross
      FROM trading.portfolio(_a.id) v;
      _code := trading.exposure_rule(_result_qty, _est, _pv, _other_gross, _a.max_position_pct, _a.max_gross_leverage);
      IF _code = 'TR003' THEN
        _reason := format('resulting position %s x %s = %s exceeds %s%% of portfolio value %s',
                          _result_qty, _est, round(abs(_result_qty) * _est, 2), _a.max_position_pct, round(_pv, 2));
      ELSIF _code = 'TR004' THEN
        _reason := format('gross exposure %s would exceed %s x portfolio value %s',
                          round(_other_gross + abs(_result_qty) * _est, 2), _a.max_gross_leverage, round(_pv, 2));
      END IF;
    END IF;
  END IF;

  INSERT INTO trading.orders AS o (account_id, client_order_id, symbol, side, type, qty, limit_price, stop_price, tif,
                                   status, reject_code, reject_reason, source, stop_loss, take_profit, est_price,
                                   accepted_at, expires_at, created_at, updated_at, closed_at, signal_id)
  VALUES (_a.id, place_order.client_order_id, coalesce(_sym, place_order.symbol), coalesce(_side, place_order.side),
          _type, place_order.qty, place_order.limit_price, place_order.stop_price, _tif,
          CASE WHEN _code IS NULL THEN 'accepted' ELSE 'rejected' END, _code, _reason, _source,
          place_order.stop_loss, place_order.take_profit, _est,
          CASE WHEN _code IS NULL THEN _now END,
          CASE WHEN _code IS NULL AND _tif = 'day' AND _type <> 'market' THEN market.session_end(_sym, _now) END,
          _now, _now, CASE WHEN _code IS NOT NULL THEN _now END,
          CASE WHEN _source = 'signal' AND _signal_sym = _sym THEN _signal END)
  RETURNING * INTO _o;

  IF _code IS NOT NULL THEN
    PERFORM internal.emit(_a.id, 'order_rejected', _o.id, _now,
                          jsonb_build_object('code', _code, 'reason', _reason, 'symbol', _o.symbol));
    RETURN _o;
  END IF;
  PERFORM internal.emit(_a.id, 'order_accepted', _o.id, _now,
                        jsonb_build_object('symbol', _sym, 'side', _side, 'type', _type, 'qty', place_order.qty));
  IF _type = 'market' THEN
    PERFORM internal.apply_fill(_o.id, place_order.qty, _est, _last, _last, NULL);
    SELECT * INTO _o FROM trading.orders o WHERE o.id = _o.id;
  END IF;
  RETURN _o;
END
$$;
COMMENT ON FUNCTION trading.place_order IS
  'Place an order. Validates and runs the pre-trade risk checks under the account lock; a failed check records the order as rejected (reject_code, reject_reason) and returns it (no exception). Market orders fill at once at the last price plus slippage (on a market-on-open account, market_fill open: at the open of the bar opening at the account''s clock); limit, stop and stop_limit orders rest until a bar crosses them. Raises TR013 for an unknown account and TR012 for a reused client_order_id with different parameters. signal_id (source signal) links the order to the ml.signals row that caused it: one order per account and signal, a second call for the same signal returns the first order.';
