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
SET enable_nestloop = off  -- the curves join on time: a merge join of two sorted streams, not 98,000 index probes
SET jit = off  -- (disabled nested loops add a large constant to the cost, which would start JIT compiling)
AS $$
  WITH r AS MATERIALIZED (
    SELECT r AS run, r.account_id, a.initial_cash, backtest.periods_per_year(r)::float8 AS ppy,
           cardinality(r.symbols) AS nsym, (SELECT iv.step FROM market.intervals iv WHERE iv.code = r.interval) AS step,
           l.total_value AS final, l.ts AS final_ts
    FROM backtest.runs r JOIN trading.accounts a ON a.id = r.account_id
    LEFT JOIN LATERAL (SELECT ps.ts, ps.total_value FROM trading.portfolio_snapshots ps
                       WHERE ps.account_id = r.account_id ORDER BY ps.ts DESC LIMIT 1) l ON true
    WHERE r.id = compute_metrics.run_id
  ), snap AS (
    SELECT ps.ts, ps.total_value AS v
    FROM trading.portfolio_snapshots ps WHERE ps.account_id = (SELECT r.account_id FROM r)
  ), bhv AS (  -- buy and hold: initial cash split equally at each symbol's first close, valued at its latest close:
                -- the running sum of all symbols' close-to-close changes relative to their first close, read at the
                -- last bar of each close time
    SELECT d.close_ts AS ts, r.initial_cash::float8 * (1 + sum(d.d) OVER w / r.nsym) AS v,
           lead(d.close_ts) OVER w IS DISTINCT FROM d.close_ts AS lastpeer
    FROM r, (SELECT b.ts + r.step AS close_ts,
                    (b.close::float8 - coalesce(lag(b.close::float8) OVER w, b.close::float8))
                    / first_value(b.close::float8) OVER w AS d
             FROM r, backtest.bars(r.run) b
             WINDOW w AS (PARTITION BY array_position((r.run).symbols, b.symbol) ORDER BY b.ts)) d  -- int sorts fast
    WINDOW w AS (ORDER BY d.close_ts)
  ), w1 AS (  -- the strategy (s) and buy-and-hold (b) equity curves on the snapshot grid, in float8 (returns,
              -- ratios, square roots): returns, drawdowns from the running peak, position i
    SELECT c.ts, c.sv, c.bv, row_number() OVER w - 1 AS i, c.ts = (SELECT r.final_ts FROM r) AS last,
           c.sv / lag(c.sv) OVER w - 1 AS sr, c.bv / lag(c.bv) OVER w - 1 AS br,
           c.sv / max(c.sv) OVER w - 1 AS sdd, c.bv / max(c.bv) OVER w - 1 AS bdd
    FROM (SELECT snap.ts, snap.v::float8 AS sv, bhv.v AS bv  -- (a left join: the benchmark never drops a bar)
          FROM snap LEFT JOIN bhv ON bhv.ts = snap.ts AND bhv.lastpeer) c
    WINDOW w AS (ORDER BY c.ts ROWS UNBOUNDED PRECEDING)  -- (ROWS: the times are unique; no peers to look for)
  ), w2 AS (  -- drawdown periods end where a curve is back at its peak (or at the last bar)
    SELECT w1.*,
           w1.sdd = 0 AND lag(w1.sdd) OVER w < 0 OR w1.last AND w1.sdd < 0 AS s_end,
           w1.bdd = 0 AND lag(w1.bdd) OVER w < 0 OR w1.last AND w1.bdd < 0 AS b_end,
           max(w1.i) FILTER (WHERE w1.sdd = 0) OVER p AS s_pi, max(w1.ts) FILTER (WHERE w1.sdd = 0) OVER p AS s_pt,
           max(w1.i) FILTER (WHERE w1.bdd = 0) OVER p AS b_pi, max(w1.ts) FILTER (WHERE w1.bdd = 0) OVER p AS b_pt
    FROM w1
    WINDOW w AS (ORDER BY w1.ts), p AS (ORDER BY w1.ts ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
  ), agg AS (  -- (least() skips NULLs: the first bar has no return, hence the FILTERs)
    SELECT count(w2.sr) AS n,
           avg(w2.sr) AS s_mean, stddev_samp(w2.sr) AS s_sd, sqrt(avg(least(w2.sr, 0) * least(w2.sr, 0)) FILTER (WHERE w2.sr IS NOT NULL)) AS s_down,
           min(w2.sdd) AS s_mdd, max(w2.sv) FILTER (WHERE w2.last) AS s_last, max(w2.sv) FILTER (WHERE w2.i = 0) AS s_first,
           coalesce(max(w2.i - w2.s_pi) FILTER (WHERE w2.s_end), 0) AS s_ddb,
           coalesce(max(w2.ts - w2.s_pt) FILTER (WHERE w2.s_end), interval '0') AS s_ddt,
           avg(w2.br) AS b_mean, stddev_samp(w2.br) AS b_sd, sqrt(avg(least(w2.br, 0) * least(w2.br, 0)) FILTER (WHERE w2.br IS NOT NULL)) AS b_down,
           min(w2.bdd) AS b_mdd, max(w2.bv) FILTER (WHERE w2.last) AS b_last, max(w2.bv) FILTER (WHERE w2.i = 0) AS b_first,
           coalesce(max(w2.i - w2.b_pi) FILTER (WHERE w2.b_end), 0) AS b_ddb,
           coalesce(max(w2.ts - w2.b_pt) FILTER (WHERE w2.b_end), interval '0') AS b_ddt,
           avg(w2.sv) AS s_avg
    FROM w2
  ), perf AS (  -- the same formulas for both curves
    SELECT st.curve, st.ddb, st.ddt, x.*, x.cagr / nullif(-st.mdd, 0) AS calmar
    FROM agg, r
    CROSS JOIN LATERAL (VALUES
      ('strategy', agg.s_mean, agg.s_sd, agg.s_down, agg.s_mdd, agg.s_last, agg.s_first, agg.s_ddb, agg.s_ddt,
       to_jsonb(r.final), to_jsonb(r.final / r.initial_cash - 1)),
      ('buy_and_hold', agg.b_mean, agg.b_sd, agg.b_down, agg.b_mdd, agg.b_last, agg.b_first, agg.b_ddb, agg.b_ddt,
       to_jsonb(agg.b_last), to_jsonb(agg.b_last / r.initial_cash::float8 - 1))
      ) st(curve, mean, sd, down, mdd, last, first, ddb, ddt, final_equity, total_return)
    CROSS JOIN LATERAL (
      SELECT st.total_return, st.final_equity,
             CASE WHEN agg.n > 0 AND st.last > 0 THEN power(st.last / st.first, r.ppy / agg.n) - 1 END AS cagr,
             st.sd * sqrt(r.ppy) AS annual_volatility,
             st.mean / nullif(st.sd, 0) * sqrt(r.ppy) AS sharpe,
             st.mean * r.ppy / nullif(st.down * sqrt(r.ppy), 0) AS sortino,
             st.mdd AS max_drawdown) x
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
  ), ex AS (  -- exposure: snapshots at which a position is held (entry_ts < ts <= exit_ts, open trades to the end),
              -- counted over the union of the trades' intervals
    SELECT coalesce(sum((SELECT count(*) FROM trading.portfolio_snapshots ps
                         WHERE ps.account_id = (SELECT r.account_id FROM r) AND ps.ts > m.s AND ps.ts <= m.e)), 0)
           / nullif((SELECT agg.n + 1 FROM agg), 0)::numeric AS exposure
    FROM (SELECT min(g.s) AS s, max(g.e) AS e
          FROM (SELECT t.s, t.e, count(*) FILTER (WHERE t.s >= t.pe OR t.pe IS NULL) OVER (ORDER BY t.s, t.e) AS g
                FROM (SELECT t.entry_ts AS s, coalesce(t.exit_ts, 'infinity') AS e,
                             max(coalesce(t.exit_ts, 'infinity')) OVER (ORDER BY t.entry_ts, t.exit_ts
                                                                       ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS pe
                      FROM backtest.trades t WHERE t.run_id = compute_metrics.run_id) t) g
          GROUP BY g.g) m
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
           'max_drawdown_duration_bars', s.ddb,
           'max_drawdown_duration', s.ddt,
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
           'turnover', fl.traded / nullif(agg.s_avg, 0),
           'traded_value', fl.traded,
           'commissions', fl.comm,
           'fills', fl.fills,
           'bars', agg.n + 1,
           'periods_per_year', r.ppy,
           'buy_and_hold', (SELECT jsonb_build_object(
                              'total_return', b.total_return, 'cagr', b.cagr, 'annual_volatility', b.annual_volatility,
                              'sharpe', b.sharpe, 'sortino', b.sortino, 'calmar', b.calmar,
                              'max_drawdown', b.max_drawdown, 'max_drawdown_duration_bars', b.ddb,
                              'max_drawdown_duration', b.ddt, 'final_equity', b.final_equity)
                            FROM perf b WHERE b.curve = 'buy_and_hold')) AS o
  FROM r
  CROSS JOIN tr CROSS JOIN ex CROSS JOIN fl CROSS JOIN agg
  LEFT JOIN perf s ON s.curve = 'strategy'
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
