-- The default live-simulation account (wall clock, 100,000 USD, default risk limits and cost model).
WITH a AS (
  INSERT INTO trading.accounts (name, kind, clock_mode, initial_cash, cash)
  VALUES ('default', 'live', 'wall', 100000, 100000)
  RETURNING id, cash
)
INSERT INTO trading.cash_ledger (account_id, ts, cause, amount, balance, note)
SELECT a.id, now(), 'deposit', a.cash, a.cash, 'initial cash' FROM a;
