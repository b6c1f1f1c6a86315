-- The valuation rule: an open position is worth qty x its mark price (trading.positions.last_price: the close of the
-- latest bar of its symbol, or the last price at its latest fill), however old that mark is. A position without a
-- mark is worth its cost basis, i.e. its unrealized P&L is zero (none arises today: internal.apply_fill marks at
-- every fill). Portfolio value = cash + the sum of position values; gross exposure = the sum of |value|;
-- unrealized P&L = value - cost_basis. The pre-trade checks (TR003, TR004, through trading.portfolio),
-- trading.portfolio (so snapshots and the CLI), api.portfolio and the CLI's positions value positions with this and
-- nothing else.
-- A view, not a function like the rules in trading_rules.sql: api.portfolio must use it, and a function called in a
-- view runs with the caller's privileges (PostgreSQL, CREATE VIEW), so web roles would need EXECUTE on a trading
-- function, which the least-privilege rule forbids (web roles execute nothing outside api). A view read by an api
-- view is read with the api view owner's privileges, and its plain expression inlines into every query that uses
-- it, place_order's cached plans included. CREATE OR REPLACE VIEW may only add columns at the end: to change or drop
-- one, drop the view first in this file (api is rebuilt after the procedures, so nothing else depends on it).
CREATE OR REPLACE VIEW trading.position_values AS
SELECT p.account_id, p.symbol, p.qty, p.cost_basis, p.last_price, p.last_price_at, v.value,
       v.value - p.cost_basis AS unrealized_pnl
FROM trading.positions p
CROSS JOIN LATERAL (SELECT coalesce(p.qty * p.last_price, p.cost_basis) AS value) v;
COMMENT ON VIEW trading.position_values IS
  'The valuation rule: every position (closed ones too, worth 0) with its value (qty x mark price, or the cost basis without a mark) and unrealized P&L (value - cost_basis).';
COMMENT ON COLUMN trading.position_values.value IS 'qty x last_price; cost_basis when the position has no mark.';
