-- Resting orders (limit, stop, stop_limit, bracket children) against bars: the same code for live accounts
-- (the bar triggers) and backtest accounts (trading.advance_clock).

CREATE OR REPLACE FUNCTION internal.execute_bar_event(e trading.bar_event)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp  -- its own path: cached plans survive callers with different paths
AS $$
DECLARE
  _o trading.orders;
  _a trading.accounts;
  _now timestamptz;
  _qty numeric;
  _pos numeric;
  _code text;
BEGIN
  SELECT * INTO _o FROM trading.orders o WHERE o.id = e.order_id FOR UPDATE;
  IF _o.status NOT IN ('accepted', 'partially_filled') OR _o.last_bar_ts >= e.bar_ts THEN
    RETURN false;  -- cancelled by an earlier event of this batch (OCO), or this bar already acted
  END IF;
  SELECT * INTO _a FROM trading.accounts a WHERE a.id = _o.account_id;  -- locked by the caller
  _now := trading.account_clock(_a.clock_mode, _a.clock_ts);
  IF e.triggers AND NOT _o.triggered THEN
    UPDATE trading.orders o SET triggered = true, triggered_at = _now, last_bar_ts = e.bar_ts, updated_at = _now
     WHERE o.id = _o.id;
    PERFORM internal.emit(_a.id, 'stop_triggered', _o.id, _now, jsonb_build_object(
      'symbol', _o.symbol, 'stop_price', _o.stop_price, 'bar_ts', e.bar_ts, 'source', _o.source));
  ELSE
    UPDATE trading.orders o SET last_bar_ts = e.bar_ts WHERE o.id = _o.id;
  END IF;
  IF coalesce(e.fill_qty, 0) <= 0 THEN
    RETURN false;
  END IF;

  -- Fill-time guards: the pre-trade checks were estimates; the account must still afford the fill (the same
  -- affordability rule as place_order, on the fill price and what the account holds now).
  _qty := e.fill_qty;
  IF _o.side = 'sell' AND NOT _a.allow_short THEN
    SELECT p.qty INTO _pos FROM trading.positions p WHERE p.account_id = _a.id AND p.symbol = _o.symbol;
  END IF;
  _code := trading.affordability(_o.side, _qty, e.price, _o.filled_qty = 0, _a.cash, _pos, _a.commission_rate,
                                 _a.commission_min, _a.max_gross_leverage, _a.allow_short);
  IF _code = 'TR001' THEN
    PERFORM internal.end_order(_o.id, 'cancelled', 'insufficient cash at fill time (TR001)');
    RETURN false;
  ELSIF _code = 'TR002' THEN
    IF coalesce(_pos, 0) <= 0 THEN
      PERFORM internal.end_order(_o.id, 'cancelled', 'no position left to sell at fill time (TR002)');
      RETURN false;
    END IF;
    _qty := _pos;  -- fill what is held; the rest is cancelled below
  END IF;
  PERFORM internal.apply_fill(_o.id, _qty, e.price, e.ref_price, e.close, e.bar_ts);
  IF _qty < e.fill_qty THEN
    PERFORM internal.end_order(_o.id, 'cancelled', 'position exhausted: filled only what was held (TR002)');
  END IF;
  RETURN true;
END
$$;
COMMENT ON FUNCTION internal.execute_bar_event IS
  'Internal: apply one bar event to an order (stop trigger, then the fill through internal.apply_fill after the fill-time cash and position guards). The caller holds the account lock.';

-- Can bars spanning [lo, hi] act on this resting order at all? The candidate rule of internal.match_orders, also
-- used by the live bar trigger to skip match_orders when no resting order of a symbol is in reach (a scalar SQL
-- function: inlined into both queries; so no SET search_path, which would stop the inlining; it names nothing but
-- its parameters and pg_catalog's operators). It states the trigger and fill conditions of trading.fill_rule over a
-- range of bars instead of one bar; tests/test_trading_rules_property.py holds the two together (whenever
-- fill_rule acts on a bar, may_act over any range containing that bar's low and high is true).
CREATE OR REPLACE FUNCTION internal.may_act(type text, side text, triggered boolean, limit_price numeric,
                                            stop_price numeric, lo numeric, hi numeric)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT may_act.type <> 'market'
     AND (may_act.type = 'stop' AND may_act.triggered
          OR CASE WHEN may_act.type = 'limit' OR (may_act.type = 'stop_limit' AND may_act.triggered)
                  THEN CASE may_act.side WHEN 'buy' THEN may_act.lo <= may_act.limit_price ELSE may_act.hi >= may_act.limit_price END
                  ELSE CASE may_act.side WHEN 'buy' THEN may_act.hi >= may_act.stop_price ELSE may_act.lo <= may_act.stop_price END
             END)
$$;
COMMENT ON FUNCTION internal.may_act IS
  'Internal: whether bars whose lows and highs reach down to lo and up to hi can trigger or fill a resting order (the candidate rule; trading.fill_rule decides per bar).';

CREATE OR REPLACE FUNCTION internal.match_orders(bars market.ohlcv[], account_id bigint DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp  -- its own path: cached plans survive callers with different paths
AS $$
DECLARE
  _events trading.bar_event[];
  _e trading.bar_event;
  _fills integer := 0;
BEGIN
  IF match_orders.bars IS NULL OR cardinality(match_orders.bars) = 0 THEN
    RETURN 0;
  END IF;
  -- Each round takes, for every open order, the first bar (in time) that triggers or fills it, and applies them
  -- in bar order. An order acted on moves its last_bar_ts, so the next round looks at later bars only
  -- (partial fills, triggered stop-limits, bracket children created by this round's fills).
  LOOP
    WITH b AS (
      SELECT x.symbol, x.interval, x.ts, x.open, x.high, x.low, x.close, x.volume, iv.step
      FROM unnest(match_orders.bars) x JOIN market.intervals iv ON iv.code = x.interval
    ), ext AS (
      SELECT b.symbol, min(b.low) AS lo, max(b.high) AS hi FROM b GROUP BY b.symbol
    ), cand AS (
      SELECT o.id, o.account_id, o.symbol, o.type, o.side, o.limit_price, o.stop_price, o.triggered,
             o.qty - o.filled_qty AS remaining, o.accepted_at, o.last_bar_ts,
             a.slippage_bps, a.volume_cap_pct, a.match_interval, i.qty_step
      FROM ext
      JOIN trading.orders o ON o.symbol = ext.symbol AND o.status IN ('accepted', 'partially_filled')
                            AND o.type <> 'market'  -- orders_resting_by_symbol
      JOIN trading.accounts a ON a.id = o.account_id
      JOIN market.instruments i ON i.symbol = o.symbol
      WHERE CASE WHEN match_orders.account_id IS NULL THEN a.kind = 'live' ELSE a.id = match_orders.account_id END
        AND internal.may_act(o.type, o.side, o.triggered, o.limit_price, o.stop_price, ext.lo, ext.hi)
    ), firsts AS (
      SELECT DISTINCT ON (c.id)
             ROW(c.id, c.account_id, b.ts, b.step, b.close, f.triggers, f.fill_qty, f.price, f.ref_price)::trading.bar_event AS ev
      FROM cand c
      JOIN b ON b.symbol = c.symbol AND b.ts >= c.accepted_at AND b.ts > coalesce(c.last_bar_ts, '-infinity')
            AND (c.match_interval IS NULL OR b.interval = c.match_interval)
      CROSS JOIN LATERAL trading.fill_rule(c.type, c.side, c.limit_price, c.stop_price, c.triggered, c.remaining,
                                           c.qty_step, c.slippage_bps, c.volume_cap_pct,
                                           b.open, b.high, b.low, b.volume) f
      WHERE f.triggers OR f.fill_qty > 0
      ORDER BY c.id, b.ts, b.step
    )
    SELECT array_agg(firsts.ev ORDER BY (firsts.ev).bar_ts, (firsts.ev).step, (firsts.ev).order_id)
      INTO _events FROM firsts;
    EXIT WHEN _events IS NULL;
    -- Lock every account involved, in id order (no deadlock between concurrent ingests).
    PERFORM 1 FROM trading.accounts a
    WHERE a.id IN (SELECT DISTINCT x.account_id FROM unnest(_events) x) ORDER BY a.id FOR NO KEY UPDATE;
    FOREACH _e IN ARRAY _events LOOP
      IF internal.execute_bar_event(_e) THEN
        _fills := _fills + 1;
      END IF;
    END LOOP;
  END LOOP;
  RETURN _fills;
END
$$;
COMMENT ON FUNCTION internal.match_orders IS
  'Match resting orders against a set of bars: of live accounts (account_id NULL) or of one account. A bar acts on an order only if it opens at or after the order''s acceptance (no look-ahead) and after the last bar that acted on it. Returns the number of fills.';

REVOKE ALL ON FUNCTION internal.execute_bar_event(trading.bar_event),
  internal.may_act(text, text, boolean, numeric, numeric, numeric, numeric),
  internal.match_orders(market.ohlcv[], bigint) FROM PUBLIC;
