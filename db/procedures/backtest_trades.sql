-- Round-trip trades of a run (backtest.trades), set-based from the trading core's rows of the run's account.
-- Each fill is split into at most two legs by the position before it (prev) and its signed quantity (q):
--   exit leg:  the part that reduces the position, min(|prev|, |q|) when prev <> 0 and q has the opposite sign; it
--              carries the fill's realized_pnl whole (trading.pnl_step realizes only on the reducing part);
--   entry leg: the rest, |q| - exit; it starts a new trade when the position before it is zero (prev = 0, or the
--              fill flips the position through zero), otherwise it adds to the open trade.
-- A fill's commission is shared between its legs pro rata to quantity (the exit leg's share rounded to 10
-- places, the entry leg gets the rest, so the shares add up to the fill's commission). A trade is the legs of one symbol from a
-- starting entry leg to the leg before the next one; it is closed when its exit quantity equals its entry
-- quantity, else it is still open at the end of the run (exit NULL; marked by the position's last price).
CREATE OR REPLACE FUNCTION internal.backtest_trades(run backtest.runs)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET enable_nestloop = off  -- the CTEs are estimated at a few rows; a nested loop over the bar counts is quadratic
SET jit = off  -- (and the disabled nested loops' cost constant would start JIT compiling)
AS $$
DECLARE
  _n integer;
BEGIN
  DELETE FROM backtest.trades t WHERE t.run_id = backtest_trades.run.id;
  WITH f AS (
    SELECT f.id, f.symbol, f.ts, f.price, f.commission, f.realized_pnl, f.qty AS aq,
           CASE f.side WHEN 'buy' THEN f.qty ELSE -f.qty END AS q,
           ph.qty - CASE f.side WHEN 'buy' THEN f.qty ELSE -f.qty END AS prev
    FROM trading.fills f
    JOIN trading.position_history ph ON ph.fill_id = f.id
    WHERE f.account_id = backtest_trades.run.account_id
  ), fx AS (
    SELECT f.*, x.xq,
           CASE WHEN x.xq = 0 THEN 0 WHEN x.xq = f.aq THEN f.commission ELSE round(f.commission * x.xq / f.aq, 10) END
             AS xcomm
    FROM f
    CROSS JOIN LATERAL (SELECT CASE WHEN f.prev <> 0 AND sign(f.prev) <> sign(f.q) THEN least(abs(f.prev), f.aq)
                                    ELSE 0 END AS xq) x
  ), legs AS (
    SELECT fx.id, fx.symbol, fx.ts, fx.price, l.k, l.lq, sign(fx.q) AS dir,
           CASE l.k WHEN 0 THEN fx.realized_pnl ELSE 0 END AS realized,
           CASE l.k WHEN 0 THEN fx.xcomm ELSE fx.commission - fx.xcomm END AS comm,
           (l.k = 1 AND (fx.prev = 0 OR sign(fx.prev) <> sign(fx.q)))::int AS starts
    FROM fx
    CROSS JOIN LATERAL (VALUES (0, fx.xq), (1, fx.aq - fx.xq)) l(k, lq)
    WHERE l.lq > 0
  ), seq AS (
    SELECT legs.*, sum(legs.starts) OVER (PARTITION BY legs.symbol ORDER BY legs.ts, legs.id, legs.k) AS s
    FROM legs
  ), tr AS (
    SELECT seq.symbol, array_position(backtest_trades.run.symbols, seq.symbol) AS si, seq.s,
           (array_agg(seq.dir ORDER BY seq.ts, seq.id, seq.k) FILTER (WHERE seq.k = 1))[1] AS dir,
           sum(seq.lq) FILTER (WHERE seq.k = 1) AS qty,
           min(seq.ts) FILTER (WHERE seq.k = 1) AS entry_ts,
           sum(seq.lq * seq.price) FILTER (WHERE seq.k = 1) AS entry_value,
           coalesce(sum(seq.lq) FILTER (WHERE seq.k = 0), 0) AS exit_qty,
           max(seq.ts) FILTER (WHERE seq.k = 0) AS exit_ts,
           sum(seq.lq * seq.price) FILTER (WHERE seq.k = 0) AS exit_value,
           sum(seq.realized) AS pnl, sum(seq.comm) AS comm, count(DISTINCT seq.id) AS fills
    FROM seq
    WHERE seq.s > 0
    GROUP BY seq.symbol, seq.s
  ), pts AS (  -- bar counts: per symbol (by its position in the run's symbols: an integer sorts faster than
               -- text), how many bars open at or before each entry, exit and the end ('infinity')
    SELECT array_position(backtest_trades.run.symbols, b.symbol) AS si, b.ts AS t, 0 AS k
    FROM backtest.bars(backtest_trades.run) b
    UNION ALL
    SELECT tr.si, tr.entry_ts, 1 FROM tr
    UNION ALL
    SELECT tr.si, tr.exit_ts, 1 FROM tr WHERE tr.exit_qty = tr.qty
    UNION ALL
    SELECT DISTINCT tr.si, timestamptz 'infinity', 1 FROM tr
  ), cnt AS (
    SELECT DISTINCT c.si, c.t, c.c
    FROM (SELECT pts.si, pts.t, pts.k,
                 count(*) FILTER (WHERE pts.k = 0) OVER (PARTITION BY pts.si ORDER BY pts.t, pts.k
                                                         ROWS UNBOUNDED PRECEDING) AS c
          FROM pts) c
    WHERE c.k = 1
  ), ins AS (
    INSERT INTO backtest.trades (run_id, n, symbol, direction, qty, entry_ts, entry_price, exit_ts, exit_price, pnl,
                                 commissions, net_pnl, return_pct, bars_held, fills, mark_price, unrealized_pnl)
    SELECT backtest_trades.run.id, row_number() OVER (ORDER BY tr.entry_ts, tr.symbol, tr.s), tr.symbol,
           CASE WHEN tr.dir > 0 THEN 'long' ELSE 'short' END, tr.qty, tr.entry_ts,
           trim_scale(round(tr.entry_value / tr.qty, 10)),
           CASE WHEN c.closed THEN tr.exit_ts END,
           CASE WHEN c.closed THEN trim_scale(round(tr.exit_value / tr.exit_qty, 10)) END,
           tr.pnl, tr.comm, tr.pnl - tr.comm,
           CASE WHEN c.closed THEN (tr.pnl - tr.comm) / tr.entry_value END,
           xc.c - ec.c, tr.fills,
           CASE WHEN NOT c.closed THEN p.last_price END,
           CASE WHEN NOT c.closed THEN p.unrealized_pnl END
    FROM tr
    CROSS JOIN LATERAL (SELECT tr.exit_qty = tr.qty AS closed) c
    JOIN cnt ec ON ec.si = tr.si AND ec.t = tr.entry_ts
    JOIN cnt xc ON xc.si = tr.si AND xc.t = CASE WHEN c.closed THEN tr.exit_ts ELSE 'infinity' END
    LEFT JOIN trading.positions p ON NOT c.closed AND p.account_id = backtest_trades.run.account_id
                                 AND p.symbol = tr.symbol
    RETURNING 1
  )
  SELECT count(*) INTO _n FROM ins;
  RETURN _n;
END
$$;
COMMENT ON FUNCTION internal.backtest_trades IS
  'Internal: (re)write a run''s round-trip trades (backtest.trades) set-based from its fills and position history: per symbol, flat (or a flip through zero) to flat; P&L from the fills'' realized_pnl; open trades at the end have exit NULL.';
