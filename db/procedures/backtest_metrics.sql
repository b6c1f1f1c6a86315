-- Metrics of a run, from the trading core's rows of its account (snapshots, fills) and its round-trip trades
-- (backtest.trades). Every formula is in docs/backtesting.md, section Metrics; tests/test_backtest_metrics.py holds
-- them against empyrical-reloaded on real series.

-- The annualization rule: how many bars of the run's interval make a year. Days per year: 365 when any of the
-- run's instruments trades at weekends (crypto), else 252 trading days. Bars per day: 1 for daily bars; intraday,
-- ceil(session length / bar step) for an instrument with session hours (09:30-16:00 New York: 390 one-minute bars)
-- and 24 h / step around the clock (fx, crypto). With several symbols, the largest figure (the snapshot grid is the
-- union of their bar closes).
CREATE OR REPLACE FUNCTION backtest.periods_per_year(run backtest.runs)
RETURNS numeric
LANGUAGE sql STABLE
AS $$
  SELECT max(CASE WHEN i.trades_weekends THEN 365 ELSE 252 END
             * CASE WHEN iv.step >= interval '1 day' THEN 86400 / extract(epoch FROM iv.step)
                    WHEN i.session_open IS NULL THEN ceil(86400 / extract(epoch FROM iv.step))
                    ELSE ceil(extract(epoch FROM (i.session_close - i.session_open)) / extract(epoch FROM iv.step))
               END)
  FROM market.instruments i
  JOIN market.intervals iv ON iv.code = periods_per_year.run.interval
  WHERE i.symbol = ANY (periods_per_year.run.symbols)
$$;
COMMENT ON FUNCTION backtest.periods_per_year IS
  'The annualization rule: bars of the run''s interval per year (252 trading days, 365 for instruments that trade at weekends; x bars per session intraday, 24 h for instruments without session hours). Used by every annualized metric.';

CREATE OR REPLACE FUNCTION backtest.compute_metrics(run_id bigint)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
  WITH r AS MATERIALIZED (
    SELECT r AS run, r.account_id, a.initial_cash, backtest.periods_per_year(r) AS ppy, cardinality(r.symbols) AS nsym
    FROM backtest.runs r JOIN trading.accounts a ON a.id = r.account_id
    WHERE r.id = compute_metrics.run_id
  ), snap AS MATERIALIZED (
    SELECT ps.ts, ps.total_value AS v, ps.positions_value
    FROM trading.portfolio_snapshots ps, r WHERE ps.account_id = r.account_id
  ), bh AS (  -- buy and hold: initial cash split equally at each symbol's first close, valued at its latest close
    SELECT b.close_ts AS ts, sum(b.d) AS d
    FROM (SELECT b.ts + iv.step AS close_ts,
                 (b.close - coalesce(lag(b.close) OVER w, b.close)) / first_value(b.close) OVER w AS d
          FROM r, backtest.bars(r.run) b JOIN market.intervals iv ON iv.code = b.interval
          WINDOW w AS (PARTITION BY b.symbol ORDER BY b.ts)) b
    GROUP BY b.close_ts
  ), bhv AS (
    SELECT bh.ts, r.initial_cash * (1 + sum(bh.d) OVER (ORDER BY bh.ts) / r.nsym) AS v FROM bh, r
  ), curve AS (  -- both equity curves on the snapshot grid, with returns and drawdowns
    SELECT c.*, c.v / lag(c.v) OVER w - 1 AS ret, c.v / max(c.v) OVER w - 1 AS dd,
           row_number() OVER w - 1 AS i
    FROM (SELECT 'strategy' AS curve, snap.ts, snap.v FROM snap
          UNION ALL
          SELECT 'buy_and_hold', snap.ts, bhv.v FROM snap JOIN bhv ON bhv.ts = snap.ts) c
    WINDOW w AS (PARTITION BY c.curve ORDER BY c.ts)
  ), ddg AS (  -- drawdown periods: a peak (dd = 0) and the bars under it until the next one (or the end)
    SELECT curve.*, count(*) FILTER (WHERE curve.dd = 0) OVER (PARTITION BY curve.curve ORDER BY curve.i) AS g
    FROM curve
  ), ddp AS (
    SELECT ddg.curve, ddg.g, min(ddg.i) AS i0, min(ddg.ts) AS t0, bool_or(ddg.dd < 0) AS under
    FROM ddg GROUP BY ddg.curve, ddg.g
  ), ddw AS (
    SELECT ddp.curve,
           CASE WHEN ddp.under THEN coalesce(lead(ddp.i0) OVER w, l.i) - ddp.i0 ELSE 0 END AS bars,
           CASE WHEN ddp.under THEN coalesce(lead(ddp.t0) OVER w, l.ts) - ddp.t0 ELSE interval '0' END AS span
    FROM ddp
    JOIN (SELECT curve.curve, max(curve.i) AS i, max(curve.ts) AS ts FROM curve GROUP BY curve.curve) l
      ON l.curve = ddp.curve
    WINDOW w AS (PARTITION BY ddp.curve ORDER BY ddp.g)
  ), ddd AS (
    SELECT ddw.curve, max(ddw.bars) AS bars, max(ddw.span) AS span FROM ddw GROUP BY ddw.curve
  ), st AS (
    SELECT curve.curve, count(curve.ret) AS n, avg(curve.ret) AS mean, stddev_samp(curve.ret) AS sd,
           sqrt(avg(least(curve.ret, 0) ^ 2)) AS down, min(curve.dd) AS mdd,
           (array_agg(curve.v ORDER BY curve.i DESC))[1] AS last, (array_agg(curve.v ORDER BY curve.i))[1] AS first
    FROM curve GROUP BY curve.curve
  ), perf AS (
    SELECT st.curve, x.*,
           x.cagr / nullif(-st.mdd, 0) AS calmar
    FROM st, r
    CROSS JOIN LATERAL (
      SELECT st.last / r.initial_cash - 1 AS total_return,
             CASE WHEN st.n > 0 AND st.last > 0 THEN power(st.last / st.first, r.ppy / st.n) - 1 END AS cagr,
             st.sd * sqrt(r.ppy) AS annual_volatility,
             st.mean / nullif(st.sd, 0) * sqrt(r.ppy) AS sharpe,
             st.mean * r.ppy / nullif(st.down * sqrt(r.ppy), 0) AS sortino,
             st.mdd AS max_drawdown, st.last AS final_equity) x
  ), tr AS (  -- closed trades only; trades still open at the end are counted apart
    SELECT count(*) FILTER (WHERE t.exit_ts IS NOT NULL) AS closed, count(*) FILTER (WHERE t.exit_ts IS NULL) AS open,
           count(*) FILTER (WHERE t.exit_ts IS NOT NULL AND t.net_pnl > 0) AS wins,
           avg(t.net_pnl) FILTER (WHERE t.exit_ts IS NOT NULL AND t.net_pnl > 0) AS avg_win,
           avg(t.net_pnl) FILTER (WHERE t.exit_ts IS NOT NULL AND t.net_pnl < 0) AS avg_loss,
           sum(t.net_pnl) FILTER (WHERE t.exit_ts IS NOT NULL AND t.net_pnl > 0) AS gross_win,
           sum(t.net_pnl) FILTER (WHERE t.exit_ts IS NOT NULL AND t.net_pnl < 0) AS gross_loss,
           avg(t.net_pnl) FILTER (WHERE t.exit_ts IS NOT NULL) AS expectancy,
           avg(t.return_pct) FILTER (WHERE t.exit_ts IS NOT NULL) AS expectancy_pct,
           max(t.return_pct) AS best, min(t.return_pct) AS worst,
           avg(t.bars_held) FILTER (WHERE t.exit_ts IS NOT NULL) AS avg_bars
    FROM backtest.trades t WHERE t.run_id = compute_metrics.run_id
  ), ex AS (  -- exposure: snapshots at which a position is held (entry_ts < ts <= exit_ts, or open to the end)
    SELECT avg((e.open > 0)::int) AS exposure
    FROM (SELECT x.k, sum(x.delta) OVER (ORDER BY x.ts, x.k ROWS UNBOUNDED PRECEDING) AS open
          FROM (SELECT snap.ts, 1 AS k, 0 AS delta FROM snap
                UNION ALL
                SELECT t.entry_ts, 2, 1 FROM backtest.trades t WHERE t.run_id = compute_metrics.run_id
                UNION ALL
                SELECT t.exit_ts, 2, -1 FROM backtest.trades t
                WHERE t.run_id = compute_metrics.run_id AND t.exit_ts IS NOT NULL) x) e
    WHERE e.k = 1
  ), fl AS (
    SELECT count(*) AS fills, coalesce(sum(f.qty * f.price), 0) AS traded, coalesce(sum(f.commission), 0) AS comm
    FROM trading.fills f, r WHERE f.account_id = r.account_id
  ), o AS (
    SELECT jsonb_build_object(
           'initial_cash', r.initial_cash,
           'final_equity', s.final_equity,
           'total_return', s.total_return,
           'cagr', s.cagr,
           'annual_volatility', s.annual_volatility,
           'sharpe', s.sharpe,
           'sortino', s.sortino,
           'calmar', s.calmar,
           'max_drawdown', s.max_drawdown,
           'max_drawdown_duration_bars', sd.bars,
           'max_drawdown_duration', sd.span,
           'trades', tr.closed,
           'open_trades', tr.open,
           'win_rate', tr.wins::numeric / nullif(tr.closed, 0),
           'avg_win', tr.avg_win,
           'avg_loss', tr.avg_loss,
           'profit_factor', tr.gross_win / nullif(-tr.gross_loss, 0),
           'expectancy', tr.expectancy,
           'expectancy_pct', tr.expectancy_pct,
           'best_trade_pct', tr.best,
           'worst_trade_pct', tr.worst,
           'avg_bars_held', tr.avg_bars,
           'exposure', ex.exposure,
           'turnover', fl.traded / nullif((SELECT avg(snap.v) FROM snap), 0),
           'traded_value', fl.traded,
           'commissions', fl.comm,
           'fills', fl.fills,
           'bars', (SELECT count(*) FROM snap),
           'periods_per_year', r.ppy,
           'buy_and_hold', (SELECT jsonb_build_object(
                              'total_return', b.total_return, 'cagr', b.cagr, 'annual_volatility', b.annual_volatility,
                              'sharpe', b.sharpe, 'sortino', b.sortino, 'calmar', b.calmar,
                              'max_drawdown', b.max_drawdown, 'max_drawdown_duration_bars', bd.bars,
                              'max_drawdown_duration', bd.span, 'final_equity', b.final_equity)
                            FROM perf b JOIN ddd bd ON bd.curve = b.curve WHERE b.curve = 'buy_and_hold')) AS o
  FROM r
  CROSS JOIN tr CROSS JOIN ex CROSS JOIN fl
  LEFT JOIN perf s ON s.curve = 'strategy'
  LEFT JOIN ddd sd ON sd.curve = 'strategy'
  )  -- numbers to 15 decimal places, trailing zeros dropped (square roots and divisions carry dozens of digits)
  SELECT jsonb_object_agg(e.key, CASE jsonb_typeof(e.value)
           WHEN 'number' THEN to_jsonb(trim_scale(round(e.value::text::numeric, 15)))
           WHEN 'object' THEN (SELECT jsonb_object_agg(n.key, CASE jsonb_typeof(n.value)
                                      WHEN 'number' THEN to_jsonb(trim_scale(round(n.value::text::numeric, 15)))
                                      ELSE n.value END)
                               FROM jsonb_each(e.value) n)
           ELSE e.value END)
  FROM o CROSS JOIN LATERAL jsonb_each(o.o) e
$$;
COMMENT ON FUNCTION backtest.compute_metrics IS
  'The metrics of a run as a JSON object, from its snapshots, fills and round-trip trades, with buy and hold of its symbols as the benchmark (docs/backtesting.md, Metrics, gives each formula).';
