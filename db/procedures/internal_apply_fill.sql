-- The one place that changes positions, cash and realized P&L: internal.apply_fill. Callers hold the account
-- row lock (SELECT ... FOR UPDATE), so fills of one account are serialized.
-- The internal functions that both place_order (the caller's search_path) and the live bar trigger (SECURITY
-- DEFINER with search_path pg_catalog, pg_temp) call pin their own search_path: PostgreSQL re-plans a cached plan
-- when the search_path differs from the one it was planned under, so a session that both places orders and
-- ingests bars re-planned every statement of the fill path at each switch (measured: 1.3 ms of a 4.6 ms
-- bar-to-stop-loss fill). Everything in them is schema-qualified.

CREATE OR REPLACE FUNCTION internal.apply_fill(
  order_id bigint, qty numeric, price numeric, ref_price numeric, mark_price numeric,
  bar_ts timestamptz DEFAULT NULL)
RETURNS trading.fills
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp  -- its own path: cached plans survive callers with different paths
AS $$
DECLARE
  _o trading.orders;
  _a trading.accounts;
  _now timestamptz;
  _d numeric;
  _pq numeric := 0;
  _pb numeric := 0;
  _step record;
  _comm numeric;
  _fill trading.fills;
  _child record;
  _protect numeric;
BEGIN
  SELECT * INTO _o FROM trading.orders o WHERE o.id = apply_fill.order_id FOR UPDATE;
  SELECT * INTO _a FROM trading.accounts a WHERE a.id = _o.account_id;  -- locked by the caller
  _now := trading.account_clock(_a.clock_mode, _a.clock_ts);
  _d := CASE _o.side WHEN 'buy' THEN apply_fill.qty ELSE -apply_fill.qty END;
  _comm := trading.commission(_a.commission_rate, _a.commission_min, apply_fill.qty * apply_fill.price,
                              _o.filled_qty = 0);

  SELECT p.qty, p.cost_basis INTO _pq, _pb
  FROM trading.positions p WHERE p.account_id = _a.id AND p.symbol = _o.symbol FOR UPDATE;
  _pq := coalesce(_pq, 0);
  _pb := coalesce(_pb, 0);
  _step := trading.pnl_step(_pq, _pb, _d, apply_fill.price);

  -- One statement (data-modifying CTEs) for the fill, the position and its history, cash and the cash ledger
  -- and the order's progress: one executor start instead of seven, no re-read of the position just written.
  WITH f AS (
    INSERT INTO trading.fills (order_id, account_id, symbol, side, qty, price, ref_price, commission, slippage,
                               realized_pnl, bar_ts, ts)
    VALUES (_o.id, _a.id, _o.symbol, _o.side, apply_fill.qty, apply_fill.price, apply_fill.ref_price, _comm,
            abs(apply_fill.price - apply_fill.ref_price) * apply_fill.qty, _step.realized, apply_fill.bar_ts, _now)
    RETURNING *
  ), pos AS (
    INSERT INTO trading.positions AS p (account_id, symbol, allow_short, qty, cost_basis, realized_pnl, commissions,
                                        last_price, last_price_at, opened_at, updated_at, closed_at)
    VALUES (_a.id, _o.symbol, _a.allow_short, _step.new_qty, _step.new_cost_basis, _step.realized, _comm,
            apply_fill.mark_price, _now, _now, _now, CASE WHEN _step.new_qty = 0 THEN _now END)
    ON CONFLICT (account_id, symbol) DO UPDATE
      SET qty = excluded.qty, cost_basis = excluded.cost_basis,
          realized_pnl = p.realized_pnl + excluded.realized_pnl, commissions = p.commissions + excluded.commissions,
          last_price = excluded.last_price, last_price_at = excluded.last_price_at,
          opened_at = CASE WHEN excluded.qty <> 0 AND (p.qty = 0 OR sign(p.qty) <> sign(excluded.qty)) THEN excluded.opened_at ELSE p.opened_at END,
          updated_at = excluded.updated_at,
          closed_at = excluded.closed_at
    RETURNING p.account_id, p.symbol, p.qty, p.cost_basis, p.realized_pnl
  ), ph AS (
    INSERT INTO trading.position_history (account_id, symbol, fill_id, ts, qty, cost_basis, realized_pnl)
    SELECT pos.account_id, pos.symbol, f.id, _now, pos.qty, pos.cost_basis, pos.realized_pnl
    FROM pos, f
  ), acc AS (
    UPDATE trading.accounts a
       SET cash = a.cash - _d * apply_fill.price - _comm,
           realized_pnl = a.realized_pnl + _step.realized,
           commissions = a.commissions + _comm
     WHERE a.id = _a.id
    RETURNING a.cash
  ), cl AS (
    INSERT INTO trading.cash_ledger (account_id, ts, cause, amount, balance, fill_id, order_id)
    SELECT _a.id, _now, v.cause, v.amount, v.balance, f.id, _o.id
    FROM f, acc,
         LATERAL (VALUES (_o.side, -_d * apply_fill.price, acc.cash + _comm, 1),
                         ('commission', -_comm, acc.cash, 2)) v(cause, amount, balance, n)
    WHERE v.amount <> 0 OR v.n = 1
    ORDER BY v.n
  ), ord AS (
    UPDATE trading.orders o
       SET filled_qty = o.filled_qty + apply_fill.qty,
           avg_fill_price = round((coalesce(o.avg_fill_price, 0) * o.filled_qty + apply_fill.qty * apply_fill.price)
                                  / (o.filled_qty + apply_fill.qty), 10),
           status = CASE WHEN o.filled_qty + apply_fill.qty = o.qty THEN 'filled' ELSE 'partially_filled' END,
           closed_at = CASE WHEN o.filled_qty + apply_fill.qty = o.qty THEN _now END,
           last_bar_ts = coalesce(apply_fill.bar_ts, o.last_bar_ts),
           updated_at = _now
     WHERE o.id = _o.id
  )
  SELECT * INTO _fill FROM f;
  PERFORM internal.emit(_a.id, 'fill', _o.id, _now, jsonb_build_object(
    'fill_id', _fill.id, 'symbol', _o.symbol, 'side', _o.side, 'qty', apply_fill.qty, 'price', apply_fill.price,
    'source', _o.source, 'position', _step.new_qty));

  -- Brackets: the entry's fills create (then grow) its stop-loss / take-profit children, by the part of each fill
  -- that opens or adds to a position in the entry's direction (a buy that covers a short of 10 and goes long 10
  -- is protected for 10, not 20: its children must not reopen the short).
  _protect := CASE WHEN _step.new_qty <> 0 AND sign(_step.new_qty) = sign(_d)
                   THEN least(apply_fill.qty, abs(_step.new_qty)) ELSE 0 END;
  IF (_o.stop_loss IS NOT NULL OR _o.take_profit IS NOT NULL) AND _protect > 0 THEN
    UPDATE trading.orders c SET qty = c.qty + _protect, updated_at = _now
     WHERE c.parent_id = _o.id AND c.status IN ('accepted', 'partially_filled');
    IF NOT FOUND AND NOT EXISTS (SELECT 1 FROM trading.orders c WHERE c.parent_id = _o.id) THEN
      FOR _child IN
        INSERT INTO trading.orders (account_id, symbol, side, type, qty, limit_price, stop_price, tif, status, source,
                                    parent_id, est_price, accepted_at, created_at, updated_at)
        SELECT _a.id, _o.symbol, CASE _o.side WHEN 'buy' THEN 'sell' ELSE 'buy' END, k.type, _protect,
               k.lim, k.stp, 'gtc', 'accepted', k.source, _o.id, coalesce(k.lim, k.stp), _now, _now, _now
        FROM (VALUES ('stop_loss', 'stop', NULL::numeric, _o.stop_loss),
                     ('take_profit', 'limit', _o.take_profit, NULL::numeric)) k(source, type, lim, stp)
        WHERE coalesce(k.lim, k.stp) IS NOT NULL
        RETURNING orders.id, orders.source, orders.side, orders.type, orders.qty
      LOOP
        PERFORM internal.emit(_a.id, 'order_accepted', _child.id, _now,
                              jsonb_build_object('symbol', _o.symbol, 'side', _child.side, 'type', _child.type,
                                                 'qty', _child.qty, 'source', _child.source, 'parent_id', _o.id));
      END LOOP;
    END IF;
  END IF;

  IF _o.source IN ('stop_loss', 'take_profit') AND _o.parent_id IS NOT NULL THEN
    -- OCO: the sibling shrinks by what this child filled; nothing left means cancelled.
    FOR _child IN
      SELECT c.id, c.qty, c.filled_qty FROM trading.orders c
      WHERE c.parent_id = _o.parent_id AND c.id <> _o.id AND c.status IN ('accepted', 'partially_filled')
      FOR UPDATE
    LOOP
      IF _child.qty - apply_fill.qty <= _child.filled_qty THEN
        PERFORM internal.end_order(_child.id, 'cancelled', 'oco: the other bracket order filled');
      ELSE
        UPDATE trading.orders c SET qty = c.qty - apply_fill.qty, updated_at = _now WHERE c.id = _child.id;
      END IF;
    END LOOP;
  ELSIF _pq <> 0 AND sign(_pq) <> sign(_d) THEN
    -- Reducing a position by hand cancels the bracket orders protecting it.
    FOR _child IN
      SELECT c.id FROM trading.orders c
      WHERE c.account_id = _a.id AND c.symbol = _o.symbol AND c.side = _o.side
        AND c.source IN ('stop_loss', 'take_profit') AND c.status IN ('accepted', 'partially_filled')
        AND c.type <> 'market'  -- bracket children are stop or limit orders (orders_resting_by_account)
    LOOP
      PERFORM internal.end_order(_child.id, 'cancelled', 'position reduced by order ' || _o.id);
    END LOOP;
  END IF;
  RETURN _fill;
END
$$;
COMMENT ON FUNCTION internal.apply_fill IS
  'Internal, the one place positions change: record a fill of an order (caller holds the account lock) and apply it to the position (trading.pnl_step), cash, realized P&L, commissions, cash ledger, order status and brackets (children on entry fills, OCO, manual reduction cancels children).';

REVOKE ALL ON FUNCTION internal.apply_fill(bigint, numeric, numeric, numeric, numeric, timestamptz) FROM PUBLIC;
