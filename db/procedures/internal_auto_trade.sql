-- Auto-trading: the step of internal.on_closed_bars that turns signals of newly closed bars into orders, for live
-- accounts whose trading.auto_trading settings are enabled and which are not paused. Runs in the ingest
-- transaction, after scoring (the signals it reads) and after the bar trigger that matched resting orders against
-- the same bars (trading.tg_bars__fire_live_orders, trigger _100_...).
--
-- The rules (docs/ml-scoring.md, "Auto-trading"):
-- * Which signals: of each series, those of its newest closed bar only (an older bar closed by the same statement
--   is stale by now), BUY or SELL, by an active model the account chose (trading.auto_trading.models; empty: every
--   model), with confidence >= min_confidence. Several such signals of one account and symbol: the most confident
--   decides (then the lowest model id).
-- * No look-ahead: the order is a marketable LIMIT order (BUY at close + tolerance, SELL at close - tolerance;
--   tolerance = the model's param entry_tolerance_atr x ATR, default 0.25, at least one tick), never a market order:
--   place_order would fill a market order at once at bar t's close, a price the decision already saw. The limit
--   order rests and internal.match_orders fills it from the first bar that opens at or after its acceptance, i.e.
--   bar t+1 when the feed's clock is set (a simulated feed; at real speed the order is accepted a moment after bar
--   t+1 opened, so bar t+2 is the first that may fill it).
-- * Lifetime: one bar. An entry order still open once a bar that opened at or after its acceptance has closed is
--   cancelled ('signal order expired unfilled'): the signal it acted on is stale.
-- * Sizing: the target position is max_position_pct of the portfolio value x size_fraction x confidence, in whole
--   qty_steps at the limit price. BUY: a short position is covered; otherwise buy up to the target. SELL: a long
--   position is closed; flat or short, sell down to -target only when the account allows shorting. Open entry
--   orders count as if filled (no pile-up while one rests). Nothing to do: no order.
-- * Brackets: the signal's stop-loss and take-profit when use_brackets, on orders that open or add to a position
--   (not on closing ones). Bracket orders left behind by a position that has since gone flat are cancelled.
-- * Every order goes through trading.place_order (source 'signal', signal_id): its risk rejections are recorded as
--   for any order, and the unique (account, signal) index means a signal gets one order per account, never retried.
CREATE OR REPLACE FUNCTION internal.auto_trade(symbols text[], intervals text[], after_ts timestamptz[],
                                               upto_ts timestamptz[])
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _accounts bigint[];
  _stale bigint[];
  _id bigint;
  _r record;
  _pos numeric;
  _pending numeric;
  _eff numeric;
  _tol numeric;
  _limit numeric;
  _pv numeric;
  _target numeric;
  _qty numeric;
  _side text;
  _opens boolean;
  _n integer := 0;
BEGIN
  IF cardinality(auto_trade.after_ts) IS DISTINCT FROM cardinality(auto_trade.symbols) THEN  -- (a step's contract)
    RAISE EXCEPTION 'internal.auto_trade: % series but % ranges', cardinality(auto_trade.symbols),
      cardinality(auto_trade.after_ts) USING ERRCODE = 'ML023', HINT = 'pass one after_ts and upto_ts per series';
  END IF;
  SELECT array_agg(t.account_id ORDER BY t.account_id) INTO _accounts
  FROM trading.auto_trading t JOIN trading.accounts a ON a.id = t.account_id
  WHERE t.enabled AND a.kind = 'live' AND NOT a.paused;
  IF _accounts IS NULL THEN
    RETURN 0;
  END IF;

  -- Orders to end: entry orders past their one bar, and brackets of positions that went flat
  SELECT array_agg(o.id ORDER BY o.id) INTO _stale
  FROM trading.orders o
  JOIN unnest(auto_trade.symbols, auto_trade.upto_ts) s(symbol, upto) ON s.symbol = o.symbol
  WHERE o.account_id = ANY (_accounts) AND o.status IN ('accepted', 'partially_filled') AND o.type <> 'market'
    AND ((o.source = 'signal' AND o.signal_id IS NOT NULL AND o.accepted_at <= s.upto)
         OR (o.source IN ('stop_loss', 'take_profit')
             AND EXISTS (SELECT FROM trading.orders p WHERE p.id = o.parent_id AND p.source = 'signal')
             AND NOT EXISTS (SELECT FROM trading.positions q
                             WHERE q.account_id = o.account_id AND q.symbol = o.symbol AND q.qty <> 0)));

  -- (end_order takes no account lock: no cash moves)
  FOREACH _id IN ARRAY coalesce(_stale, '{}') LOOP
    PERFORM internal.end_order(_id, 'cancelled',
      CASE WHEN (SELECT o.source FROM trading.orders o WHERE o.id = _id) = 'signal'
           THEN 'signal order expired unfilled: a bar after its signal has closed'
           ELSE 'position closed: bracket of a signal order no longer needed' END);
  END LOOP;

  -- The decisions: per account and symbol, the most confident eligible signal of the newest closed bar; in
  -- account order, each account locked before its position is read (the order internal.match_orders locks in)
  FOR _r IN
    SELECT d.*, a.max_position_pct, a.allow_short, i.qty_step, coalesce(i.tick_size, 0.01) AS tick
    FROM (SELECT DISTINCT ON (t.account_id, s.symbol)
                 t.account_id, s.id AS signal_id, s.symbol, s.signal, s.confidence, s.close, s.atr, s.stop_loss,
                 s.take_profit, m.params, t.size_fraction, t.use_brackets
          FROM unnest(auto_trade.symbols, auto_trade.intervals, auto_trade.upto_ts) u(symbol, iv, upto)
          JOIN ml.signals s ON s.symbol = u.symbol AND s."interval" = u.iv AND s.ts = u.upto
                           AND s.signal IN ('BUY', 'SELL')
          JOIN ml.models m ON m.id = s.model_id AND m.status = 'active'
          JOIN trading.auto_trading t ON t.account_id = ANY (_accounts)
                                     AND (cardinality(t.models) = 0 OR m.name = ANY (t.models))
                                     AND s.confidence >= t.min_confidence
          WHERE NOT EXISTS (SELECT FROM trading.orders o WHERE o.account_id = t.account_id AND o.signal_id = s.id)
          ORDER BY t.account_id, s.symbol, s.confidence DESC, s.model_id) d
    JOIN trading.accounts a ON a.id = d.account_id
    JOIN market.instruments i ON i.symbol = d.symbol
    ORDER BY d.account_id, d.symbol
  LOOP
    PERFORM 1 FROM trading.accounts a WHERE a.id = _r.account_id FOR NO KEY UPDATE;
    SELECT coalesce(sum(p.qty), 0) INTO _pos FROM trading.positions p
    WHERE p.account_id = _r.account_id AND p.symbol = _r.symbol;
    SELECT coalesce(sum(CASE o.side WHEN 'buy' THEN 1 ELSE -1 END * (o.qty - o.filled_qty)), 0) INTO _pending
    FROM trading.orders o
    WHERE o.account_id = _r.account_id AND o.symbol = _r.symbol AND o.source = 'signal'
      AND o.status IN ('accepted', 'partially_filled') AND o.type <> 'market';
    _eff := _pos + _pending;
    _tol := greatest(round(coalesce((_r.params ->> 'entry_tolerance_atr')::numeric, 0.25)
                           * coalesce(_r.atr, 0)::numeric / _r.tick) * _r.tick, _r.tick);
    -- on the tick grid (a close may lie off it: the bundled history's float noise), rounded away from the close
    _limit := CASE _r.signal WHEN 'BUY' THEN ceil((_r.close + _tol) / _r.tick) * _r.tick
                             ELSE floor((_r.close - _tol) / _r.tick) * _r.tick END;
    CONTINUE WHEN _limit <= 0;
    SELECT v.total_value INTO _pv FROM trading.portfolio(_r.account_id) v;
    _target := floor(greatest(_pv, 0) * _r.max_position_pct / 100 * _r.size_fraction * _r.confidence
                     / _limit / _r.qty_step) * _r.qty_step;
    IF _r.signal = 'BUY' THEN
      _side := 'buy';
      _opens := _eff >= 0;
      _qty := CASE WHEN _eff < 0 THEN -_eff ELSE _target - _eff END;
    ELSE
      _side := 'sell';
      _opens := _eff <= 0;
      _qty := CASE WHEN _eff > 0 THEN _eff WHEN _r.allow_short THEN _target + _eff ELSE 0 END;
    END IF;
    CONTINUE WHEN _qty <= 0;
    PERFORM trading.place_order(_r.account_id, _r.symbol, _side, _qty, 'limit', _limit, NULL, 'gtc', NULL,
                              CASE WHEN _opens AND _r.use_brackets THEN _r.stop_loss END,
                              CASE WHEN _opens AND _r.use_brackets THEN _r.take_profit END,
                              'signal', _r.signal_id);
    _n := _n + 1;
  END LOOP;
  RETURN _n;
END
$$;
COMMENT ON FUNCTION internal.auto_trade IS
  'Internal (step of internal.on_closed_bars): turn the BUY/SELL signals of each series'' newest closed bar into marketable limit orders (source signal) of the live accounts that auto-trade them, sized by max position x size_fraction x confidence; cancels signal orders past their one bar. Returns the orders placed (accepted or rejected).';
REVOKE ALL ON FUNCTION internal.auto_trade(text[], text[], timestamptz[], timestamptz[]) FROM PUBLIC;
