-- Scoring and auto-trading (issue 12): orders are looked up by the signal that caused them (ml.signals rows are
-- referenced by trading.orders.signal_id; the unique (account_id, signal_id) index does not lead with signal_id),
-- so the foreign key is indexed, as every foreign key is (tests/sql/market_structure.sql).
CREATE INDEX orders_signal ON trading.orders (signal_id) WHERE signal_id IS NOT NULL;
