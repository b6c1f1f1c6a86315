-- Metrics of a run, from the trading core's rows of its account (snapshots, fills). Formulas: docs/backtesting.md.
CREATE OR REPLACE FUNCTION backtest.compute_metrics(run_id bigint)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
  SELECT jsonb_build_object(
           'initial_cash', a.initial_cash,
           'final_equity', s.total_value,
           'total_return', round(s.total_value / a.initial_cash - 1, 10),
           'commissions', a.commissions,
           'fills', (SELECT count(*) FROM trading.fills f WHERE f.account_id = a.id))
  FROM backtest.runs r
  JOIN trading.accounts a ON a.id = r.account_id
  LEFT JOIN LATERAL (SELECT ps.total_value FROM trading.portfolio_snapshots ps
                     WHERE ps.account_id = a.id ORDER BY ps.ts DESC LIMIT 1) s ON true
  WHERE r.id = compute_metrics.run_id
$$;
COMMENT ON FUNCTION backtest.compute_metrics IS
  'The metrics of a run as a JSON object (docs/backtesting.md lists each with its formula).';
