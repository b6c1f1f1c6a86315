-- Resting orders (limit, stop, stop_limit, bracket children) by symbol and by account, without market orders.
-- A market order is filled or rejected inside place_order's own transaction, so it is never open once committed;
-- but it is inserted as accepted and then updated, so it leaves a dead entry in orders_open_by_symbol and
-- orders_open_by_account for every market order until vacuum. The hot lookups (the pre-trade reservation, the live
-- bar trigger, match_orders, the bracket cancel on a manual reduction) add `type <> 'market'` and use these
-- instead, which only ever hold resting orders. The 0004 indexes stay for other readers of open orders.
CREATE INDEX orders_resting_by_symbol ON trading.orders (symbol)
  WHERE status IN ('accepted', 'partially_filled') AND type <> 'market';
CREATE INDEX orders_resting_by_account ON trading.orders (account_id)
  WHERE status IN ('accepted', 'partially_filled') AND type <> 'market';
