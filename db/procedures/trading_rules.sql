-- The pure rules: commission, the P&L step (average cost), slippage, affordability, and the fill rule. No table
-- access, so they are the same in live trading, backtests and the ledger replay. (The valuation rule is the view
-- trading.position_values, so that api views can use it: trading_position_values.sql.)

CREATE OR REPLACE FUNCTION trading.commission(rate numeric, minimum numeric, notional numeric, first_fill boolean)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT round(greatest(commission.rate * abs(commission.notional),
                        CASE WHEN commission.first_fill THEN commission.minimum ELSE 0 END), 2)
$$;
COMMENT ON FUNCTION trading.commission IS
  'Commission of a fill: rate x notional, at least the minimum on an order''s first fill, rounded to cents.';

-- Average cost, signed quantities (buy +, sell -), cost_basis = qty x average price kept exactly.
-- Adding to a position (or opening one) adds qty x price to the basis and realizes nothing. Reducing keeps the
-- average: the remaining basis is basis x remaining / qty (rounded to 10 places) and the realized P&L is
-- defined from that figure, so cash + basis changes by exactly the realized P&L (the invariant is exact).
-- Going through zero closes the whole position and opens the rest on the other side at the fill price.
-- PL/pgSQL on purpose: a SQL function returning a record is never inlined, so it re-plans its SELECT on every
-- call (~0.09 ms per fill); PL/pgSQL evaluates the same expressions with cached plans.
CREATE OR REPLACE FUNCTION trading.pnl_step(
  qty numeric, cost_basis numeric, fill_qty numeric, price numeric,
  OUT new_qty numeric, OUT new_cost_basis numeric, OUT realized numeric)
RETURNS record
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
  new_qty := pnl_step.qty + pnl_step.fill_qty;
  new_cost_basis :=
         CASE
           WHEN pnl_step.qty = 0 OR sign(pnl_step.qty) = sign(pnl_step.fill_qty)
             THEN pnl_step.cost_basis + pnl_step.fill_qty * pnl_step.price
           WHEN abs(pnl_step.fill_qty) < abs(pnl_step.qty)
             THEN round(pnl_step.cost_basis * (pnl_step.qty + pnl_step.fill_qty) / pnl_step.qty, 10)
           ELSE (pnl_step.qty + pnl_step.fill_qty) * pnl_step.price
         END;
  realized :=
         CASE
           WHEN pnl_step.qty = 0 OR sign(pnl_step.qty) = sign(pnl_step.fill_qty) THEN 0
           WHEN abs(pnl_step.fill_qty) < abs(pnl_step.qty)
             THEN round(pnl_step.cost_basis * (pnl_step.qty + pnl_step.fill_qty) / pnl_step.qty, 10)
                  - pnl_step.cost_basis - pnl_step.fill_qty * pnl_step.price
           ELSE pnl_step.qty * pnl_step.price - pnl_step.cost_basis
         END;
END
$$;
COMMENT ON FUNCTION trading.pnl_step IS
  'The P&L rule (average cost): a position (qty, cost_basis) after a signed fill at price, and the realized P&L (gross of commission). Handles partial closes and flips through zero.';

-- The slippage rule: market and stop fills (and the price place_order estimates for them) pay slippage_bps on
-- the reference price, buys up and sells down, rounded to 8 places. The price is named once in the body, so the
-- function is inlined even when the argument is a large expression (fill_rule passes its CASE).
CREATE OR REPLACE FUNCTION trading.slipped_price(price numeric, side text, slippage_bps numeric)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT round(slipped_price.price * CASE slipped_price.side WHEN 'buy' THEN 1 + slipped_price.slippage_bps / 10000
                                                             ELSE 1 - slipped_price.slippage_bps / 10000 END, 8)
$$;
COMMENT ON FUNCTION trading.slipped_price IS
  'The slippage rule: price x (1 + bps/10000) for a buy, x (1 - bps/10000) for a sell, rounded to 8 places.';

-- The affordability rule, checked when an order is placed (on estimates, with what open orders reserve) and again
-- when a resting order fills (on the fill's price, with what the account holds then):
--   TR001 a buy on an account that may not borrow (max_gross_leverage <= 1) needs qty x price + commission (the
--         minimum only on the order's first fill) <= the cash available;
--   TR002 a sell on an account that may not short needs qty <= the position available.
-- NULL when affordable. A scalar SQL function: inlined into the callers' cached plans.
CREATE OR REPLACE FUNCTION trading.affordability(
  side text, qty numeric, price numeric, first_fill boolean, cash numeric, position_qty numeric,
  commission_rate numeric, commission_min numeric, max_gross_leverage numeric, allow_short boolean)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT CASE
           WHEN affordability.side = 'buy' AND affordability.max_gross_leverage <= 1
                AND affordability.qty * affordability.price
                    + trading.commission(affordability.commission_rate, affordability.commission_min,
                                         affordability.qty * affordability.price, affordability.first_fill)
                    > affordability.cash
             THEN 'TR001'
           WHEN affordability.side = 'sell' AND NOT affordability.allow_short
                AND affordability.qty > coalesce(affordability.position_qty, 0)
             THEN 'TR002'
         END
$$;
COMMENT ON FUNCTION trading.affordability IS
  'The affordability rule: TR001 when a buy (account without leverage) costs more than the available cash including commission, TR002 when a sell (account without shorting) exceeds the available position, else NULL.';

-- The fill rule: what one bar (or a last price, passed as open = high = low = last) does to one order.
--   market: fills at the open (the last price) plus slippage (buys up, sells down).
--   limit: a buy fills when low <= limit at min(open, limit) (the open when the bar gaps through it); a sell when
--     high >= limit at max(open, limit). No slippage.
--   stop: a buy triggers when high >= stop, a sell when low <= stop, at the stop or at the open on a gap, and
--     fills as a market order with slippage; a triggered stop not yet filled fills at the next bar's open.
--   stop_limit: triggers like a stop, then rests as a limit; on the trigger bar it fills only when the trigger
--     price already satisfies the limit (at that price).
-- Quantity: the remaining quantity, or with a volume cap at most cap % of the bar's volume, in qty_step units.
CREATE OR REPLACE FUNCTION trading.fill_rule(
  type text, side text, limit_price numeric, stop_price numeric, triggered boolean, remaining numeric,
  qty_step numeric, slippage_bps numeric, volume_cap_pct numeric,
  open numeric, high numeric, low numeric, volume numeric)
RETURNS TABLE (triggers boolean, fill_qty numeric, price numeric, ref_price numeric)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT r.now_triggers,
         CASE WHEN r.ref IS NULL THEN 0
              WHEN fill_rule.volume_cap_pct IS NULL THEN fill_rule.remaining
              ELSE least(fill_rule.remaining,
                         floor(fill_rule.volume * fill_rule.volume_cap_pct / 100 / fill_rule.qty_step) * fill_rule.qty_step)
         END,
         CASE WHEN r.ref IS NULL OR NOT r.slipped THEN r.ref
              ELSE trading.slipped_price(r.ref, fill_rule.side, fill_rule.slippage_bps)
         END,
         r.ref
  FROM (
    SELECT t.now_triggers,
           t.type IN ('market', 'stop') AS slipped,
           CASE
             WHEN t.type = 'market' OR (t.type = 'stop' AND fill_rule.triggered) THEN fill_rule.open
             WHEN t.type = 'stop' AND t.now_triggers THEN t.trigger_ref
             WHEN t.type = 'limit' OR (t.type = 'stop_limit' AND fill_rule.triggered) THEN
               CASE WHEN fill_rule.side = 'buy' AND fill_rule.low <= fill_rule.limit_price
                      THEN least(fill_rule.open, fill_rule.limit_price)
                    WHEN fill_rule.side = 'sell' AND fill_rule.high >= fill_rule.limit_price
                      THEN greatest(fill_rule.open, fill_rule.limit_price)
               END
             WHEN t.type = 'stop_limit' AND t.now_triggers THEN
               CASE WHEN fill_rule.side = 'buy' AND t.trigger_ref <= fill_rule.limit_price THEN t.trigger_ref
                    WHEN fill_rule.side = 'sell' AND t.trigger_ref >= fill_rule.limit_price THEN t.trigger_ref
               END
           END AS ref
    FROM (
      SELECT fill_rule.type,
             (fill_rule.type IN ('stop', 'stop_limit') AND NOT fill_rule.triggered
              AND CASE fill_rule.side WHEN 'buy' THEN fill_rule.high >= fill_rule.stop_price
                                      ELSE fill_rule.low <= fill_rule.stop_price END) AS now_triggers,
             CASE fill_rule.side WHEN 'buy' THEN greatest(fill_rule.open, fill_rule.stop_price)
                                 ELSE least(fill_rule.open, fill_rule.stop_price) END AS trigger_ref
    ) t
  ) r
$$;
COMMENT ON FUNCTION trading.fill_rule IS
  'The fill rule: whether a bar (or a last price as open=high=low) triggers and/or fills an order, the fill quantity (volume cap) and price (with slippage for market and stop fills), and the reference price before slippage.';

-- The exposure rule, checked when an order increases a position (place_order; the backtest sizing rule sizes
-- orders so that they pass it):
--   TR003 the resulting position |result_qty| x price exceeds max_position_pct % of the portfolio value;
--   TR004 the gross exposure of the other positions plus |result_qty| x price exceeds max_gross_leverage x the
--         portfolio value.
-- NULL when within the limits. A scalar SQL function: inlined into the callers' cached plans.
CREATE OR REPLACE FUNCTION trading.exposure_rule(
  result_qty numeric, price numeric, portfolio_value numeric, other_gross numeric, max_position_pct numeric,
  max_gross_leverage numeric)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT CASE
           WHEN abs(exposure_rule.result_qty) * exposure_rule.price
                > exposure_rule.max_position_pct / 100 * exposure_rule.portfolio_value THEN 'TR003'
           WHEN exposure_rule.other_gross + abs(exposure_rule.result_qty) * exposure_rule.price
                > exposure_rule.max_gross_leverage * exposure_rule.portfolio_value THEN 'TR004'
         END
$$;
COMMENT ON FUNCTION trading.exposure_rule IS
  'The exposure rule: TR003 when a resulting position is worth more than max_position_pct % of the portfolio value, TR004 when gross exposure would exceed max_gross_leverage x the portfolio value, else NULL.';
