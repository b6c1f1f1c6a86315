-- The sizing rule: how many units an order trades to move a position toward a strategy's target. Both engine paths
-- (exact: trading.place_order; fast: the loop in internal.backtest_fast) call it with the same figures, and it sizes
-- every order so that the trading core's own checks pass: trading.affordability (cash, position) and
-- trading.exposure_rule (position and gross exposure limits).
--
--   target    signed fraction of equity (1 all in long, -1 all in short, 0 flat); negative only when shorting
--             is allowed (else taken as 0).
--   sizing    all_in:   |target| x equity buys floor(|target| x equity / (price x (1 + commission_rate))) units
--                       (backtesting.py's convention for size=0.9999...: whole units that the equity buys at the
--                       fill price with the commission on top);
--             fraction: the same with `fraction` x |target| of equity;
--             risk:     the units whose loss at the stop-loss level is risk_pct % of equity,
--                       floor(equity x risk_pct / 100 / |price - stop_loss|), at most what all_in would buy.
--   price     the fill price the order will get (for a market-on-open order: the next bar's open with slippage).
-- Quantities are whole multiples of qty_step. Returns the signed order quantity (buy > 0, sell < 0; 0: none).
CREATE OR REPLACE FUNCTION backtest.order_qty(
  sizing text, target numeric, fraction numeric, risk_pct numeric, stop_loss numeric,
  position_qty numeric, cash numeric, equity numeric, other_gross numeric, price numeric, qty_step numeric,
  commission_rate numeric, commission_min numeric, max_position_pct numeric, max_gross_leverage numeric,
  allow_short boolean)
RETURNS numeric
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
  _t numeric := CASE WHEN order_qty.allow_short THEN order_qty.target ELSE greatest(order_qty.target, 0) END;
  _units numeric;
  _desired numeric;
  _delta numeric;
  _cap numeric;
BEGIN
  IF _t = 0 OR order_qty.equity <= 0 THEN
    _desired := 0;
  ELSE
    _units := abs(_t) * order_qty.equity / (order_qty.price * (1 + order_qty.commission_rate));
    IF order_qty.sizing = 'fraction' THEN
      _units := _units * order_qty.fraction;
    ELSIF order_qty.sizing = 'risk' THEN
      _units := least(_units, order_qty.equity * order_qty.risk_pct / 100 / abs(order_qty.price - order_qty.stop_loss));
    END IF;
    _desired := sign(_t) * floor(_units / order_qty.qty_step) * order_qty.qty_step;
  END IF;
  _delta := _desired - order_qty.position_qty;
  IF _delta = 0 OR abs(_desired) <= abs(order_qty.position_qty) AND sign(_desired) * sign(order_qty.position_qty) >= 0 THEN
    RETURN _delta;  -- reducing (or keeping) a position: always allowed
  END IF;

  -- Increasing exposure: at most what the exposure rule allows ...
  _cap := least(order_qty.max_position_pct / 100 * order_qty.equity,
                order_qty.max_gross_leverage * order_qty.equity - order_qty.other_gross) / order_qty.price;
  _cap := greatest(floor(_cap / order_qty.qty_step) * order_qty.qty_step, 0);
  IF abs(_desired) > _cap THEN
    _desired := sign(_desired) * _cap;
    _delta := _desired - order_qty.position_qty;
  END IF;
  -- ... and, for a buy on an account that may not borrow, what the cash pays for with the commission
  IF _delta > 0 AND order_qty.max_gross_leverage <= 1 THEN
    _cap := floor(order_qty.cash / (order_qty.price * (1 + order_qty.commission_rate)) / order_qty.qty_step) * order_qty.qty_step;
    _delta := greatest(least(_delta, _cap), 0);
    -- the commission is rounded to cents and has a minimum: step down until the affordability rule agrees
    WHILE _delta > 0 AND trading.affordability('buy', _delta, order_qty.price, true, order_qty.cash, NULL,
                                                order_qty.commission_rate, order_qty.commission_min,
                                                order_qty.max_gross_leverage, order_qty.allow_short) IS NOT NULL LOOP
      _delta := _delta - order_qty.qty_step;
    END LOOP;
  END IF;
  WHILE _delta <> 0 AND trading.exposure_rule(order_qty.position_qty + _delta, order_qty.price, order_qty.equity,
                                              order_qty.other_gross, order_qty.max_position_pct,
                                              order_qty.max_gross_leverage) IS NOT NULL
        AND abs(order_qty.position_qty + _delta) > abs(order_qty.position_qty) LOOP
    _delta := _delta - sign(_delta) * order_qty.qty_step;
  END LOOP;
  RETURN _delta;
END
$$;
COMMENT ON FUNCTION backtest.order_qty IS
  'The sizing rule: the signed quantity that moves a position toward a target fraction of equity (sizing all_in, fraction or risk), in whole qty_step units, within the exposure rule and, for buys without leverage, the affordability rule. docs/backtesting.md.';
