-- The backtest engine: backtest.run replays a strategy's decisions through the trading core on the run's own
-- backtest account. Two paths, one set of rules:
--   exact: trading.advance_clock to each decision's execution time, then trading.place_order (market-on-open: the
--          account's market_fill is 'open', so the order fills at the open of the bar opening at the clock).
--   fast:  one PL/pgSQL loop over the decisions that change a position, carrying cash and positions in variables
--          and calling the same rule functions (backtest.order_qty, trading.fill_rule, trading.commission,
--          trading.pnl_step, trading.affordability, trading.exposure_rule); the rows the exact path would write
--          (orders and their history, fills, positions and their history, cash ledger, events) are written in a few
--          set-based statements at the end. tests/test_backtest_parity.py proves both paths write identical rows.
-- Decisions are taken at a bar's close and acted on at the open of the symbol's next bar (no look-ahead).

CREATE OR REPLACE FUNCTION internal.backtest_engine_defaults()
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT '{"cash": 100000, "commission": 0.001, "commission_min": 0, "slippage_bps": 0, "sizing": "all_in",
           "fraction": 1, "risk_pct": 1, "allow_short": false, "max_position_pct": 100, "max_gross_leverage": 1,
           "max_order_value": null}'::jsonb
$$;
COMMENT ON FUNCTION internal.backtest_engine_defaults IS
  'Internal: the engine''s parameters and their defaults (a strategy''s defaults and the caller''s parameters override them).';

-- Check and complete a run's parameters: engine defaults, then the strategy's defaults, then the caller's.
CREATE OR REPLACE FUNCTION internal.backtest_params(strategy backtest.strategies, params jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _p jsonb := internal.backtest_engine_defaults() || backtest_params.strategy.defaults || coalesce(backtest_params.params, '{}');
  _bad text;
BEGIN
  IF jsonb_typeof(coalesce(backtest_params.params, '{}')) <> 'object' THEN
    RAISE EXCEPTION 'parameters must be a JSON object' USING ERRCODE = 'BT004', HINT = 'e.g. {"fast": 10, "slow": 20}';
  END IF;
  SELECT string_agg(k, ', ' ORDER BY k) INTO _bad
  FROM jsonb_object_keys(coalesce(backtest_params.params, '{}')) k
  WHERE NOT (internal.backtest_engine_defaults() ? k) AND NOT (backtest_params.strategy.defaults ? k);
  IF _bad IS NOT NULL THEN
    RAISE EXCEPTION 'unknown parameter(s) for strategy %: %', backtest_params.strategy.name, _bad USING ERRCODE = 'BT004',
      HINT = format('engine parameters: %s; strategy parameters: %s',
                    (SELECT string_agg(k, ', ' ORDER BY k) FROM jsonb_object_keys(internal.backtest_engine_defaults()) k),
                    coalesce((SELECT string_agg(k, ', ' ORDER BY k) FROM jsonb_object_keys(backtest_params.strategy.defaults) k), 'none'));
  END IF;
  BEGIN
    IF NOT ((_p->>'cash')::numeric > 0 AND (_p->>'cash')::numeric < 'Infinity') THEN
      _bad := 'cash must be a positive amount';
    ELSIF NOT ((_p->>'commission')::numeric >= 0 AND (_p->>'commission')::numeric < 1) THEN
      _bad := 'commission is a rate in [0, 1) (0.002 = 0.2 % per side)';
    ELSIF NOT ((_p->>'commission_min')::numeric >= 0) THEN
      _bad := 'commission_min must be >= 0';
    ELSIF NOT ((_p->>'slippage_bps')::numeric >= 0 AND (_p->>'slippage_bps')::numeric < 10000) THEN
      _bad := 'slippage_bps must be in [0, 10000)';
    ELSIF (_p->>'sizing') IS NULL OR (_p->>'sizing') NOT IN ('all_in', 'fraction', 'risk') THEN
      _bad := 'sizing must be all_in, fraction or risk';
    ELSIF NOT ((_p->>'fraction')::numeric > 0 AND (_p->>'fraction')::numeric <= 1) THEN
      _bad := 'fraction must be in (0, 1]';
    ELSIF NOT ((_p->>'risk_pct')::numeric > 0 AND (_p->>'risk_pct')::numeric <= 100) THEN
      _bad := 'risk_pct must be in (0, 100]';
    ELSIF (_p->>'allow_short')::boolean IS NULL THEN
      _bad := 'allow_short must be true or false';
    ELSIF NOT ((_p->>'max_position_pct')::numeric > 0 AND (_p->>'max_gross_leverage')::numeric > 0) THEN
      _bad := 'max_position_pct and max_gross_leverage must be positive';
    ELSIF NOT coalesce((_p->>'max_order_value')::numeric > 0, true) THEN
      _bad := 'max_order_value must be positive (or null: no limit)';
    ELSE
      _bad := NULL;
    END IF;
  EXCEPTION WHEN data_exception THEN
    _bad := format('a parameter has the wrong type (%s)', SQLERRM);
  END;
  IF _bad IS NOT NULL THEN
    RAISE EXCEPTION 'invalid backtest parameters: %', _bad USING ERRCODE = 'BT004',
      HINT = 'numbers as JSON numbers or numeric strings; see docs/backtesting.md for every parameter';
  END IF;
  RETURN _p;
END
$$;
COMMENT ON FUNCTION internal.backtest_params IS
  'Internal: a run''s full parameters (engine defaults, strategy defaults, then the given ones), checked. BT004 names an unknown or invalid parameter.';

-- The decisions of a run that change its target, with the time each is acted on (the open of the symbol's next bar
-- in the run) and the execution order. Written to backtest.decisions.
CREATE OR REPLACE FUNCTION internal.backtest_decide(run backtest.runs)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _fn regproc;  -- not text: its output is the quoted, qualified name
  _n integer;
  _bad record;
BEGIN
  SELECT s.fn::oid::regproc INTO _fn FROM backtest.strategies s WHERE s.name = backtest_decide.run.strategy;
  EXECUTE format($q$
    WITH d AS MATERIALIZED (
      SELECT d.symbol, d.ts, d.target, d.stop_loss, d.take_profit FROM %s($1) d
      WHERE d.target IS NOT NULL AND d.ts >= $1.start_ts AND d.ts < $1.end_ts
    ), c AS (
      SELECT d.*, coalesce(lag(d.target) OVER (PARTITION BY d.symbol ORDER BY d.ts), 0) AS prev_target FROM d
    ), rb AS (
      SELECT b.symbol, b.ts, lead(b.ts) OVER (PARTITION BY b.symbol ORDER BY b.ts) AS next_ts FROM backtest.bars($1) b
    ), ch AS (
      SELECT c.*, rb.ts IS NOT NULL AS is_bar, rb.next_ts
      FROM c LEFT JOIN rb ON rb.symbol = c.symbol AND rb.ts = c.ts
      WHERE c.target <> c.prev_target
    )
    INSERT INTO backtest.decisions (run_id, symbol, ts, target, stop_loss, take_profit, prev_target, exec_ts, seq)
    SELECT $1.id, ch.symbol, ch.ts, ch.target, ch.stop_loss, ch.take_profit, ch.prev_target,
           CASE WHEN ch.is_bar THEN ch.next_ts END,
           row_number() OVER (ORDER BY ch.next_ts NULLS LAST,
                                       CASE WHEN ch.target = 0 OR sign(ch.target) <> sign(ch.prev_target)
                                                 OR abs(ch.target) < abs(ch.prev_target) THEN 0 ELSE 1 END,
                                       ch.symbol)
    FROM ch $q$, _fn) USING backtest_decide.run;
  GET DIAGNOSTICS _n = ROW_COUNT;
  SELECT d.symbol, d.ts INTO _bad FROM backtest.decisions d
  WHERE d.run_id = backtest_decide.run.id
    AND (d.symbol <> ALL (backtest_decide.run.symbols)
         OR (d.exec_ts IS NULL AND NOT EXISTS (SELECT 1 FROM market.bars b WHERE b.symbol = d.symbol
                                                AND b.interval = backtest_decide.run.interval AND b.ts = d.ts)))
  LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'strategy % decided at %, %, which is not a % bar of the run', backtest_decide.run.strategy, _bad.symbol,
      _bad.ts, backtest_decide.run.interval USING ERRCODE = 'BT008',
      HINT = 'a strategy returns decisions for the run''s symbols at the open times of their bars (backtest.bars(run))';
  END IF;
  RETURN _n;
END
$$;
COMMENT ON FUNCTION internal.backtest_decide IS
  'Internal: call the run''s strategy once for the whole range and record the decisions that change its target (backtest.decisions) with their execution time and order. BT008 for a decision that is not at a bar of the run.';

-- The exact path: the live procedures, one order at a time.
CREATE OR REPLACE FUNCTION internal.backtest_exact(run backtest.runs)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _p jsonb := backtest_exact.run.params;
  _d record;
  _a trading.accounts;
  _pf record;
  _pos record;
  _open numeric;
  _est numeric;
  _qty numeric;
  _step numeric;
  _o trading.orders;
  _flip boolean;
  _entry boolean;
BEGIN
  FOR _d IN SELECT * FROM backtest.decisions d WHERE d.run_id = backtest_exact.run.id AND d.exec_ts IS NOT NULL ORDER BY d.seq LOOP
    IF trading.account_now(backtest_exact.run.account_id) < _d.exec_ts THEN
      PERFORM trading.advance_clock(backtest_exact.run.account_id, _d.exec_ts);
    END IF;
    -- A reversal with brackets (long to short or back) is two orders: one that closes the position (which cancels
    -- its bracket children) and one, sized on the account as it is then, that opens the other side with the new
    -- brackets. As one order its children would be sized to the whole order, twice the new position, and would
    -- reserve cash for it. Without brackets one order (as the fast path).
    FOR _pass IN 1..2 LOOP
      SELECT * INTO _a FROM trading.accounts a WHERE a.id = backtest_exact.run.account_id;
      SELECT * INTO _pf FROM trading.portfolio(_a.id);
      SELECT coalesce(sum(v.qty) FILTER (WHERE v.symbol = _d.symbol), 0) AS qty,
             coalesce(sum(abs(v.value)) FILTER (WHERE v.symbol <> _d.symbol), 0) AS other_gross
        INTO _pos
      FROM trading.position_values v WHERE v.account_id = _a.id AND v.qty <> 0;
      _open := market.open_at(_d.symbol, backtest_exact.run.interval, _d.exec_ts);
      SELECT i.qty_step INTO _step FROM market.instruments i WHERE i.symbol = _d.symbol;
      _est := trading.slipped_price(_open, CASE WHEN _d.target > _d.prev_target THEN 'buy' ELSE 'sell' END, _a.slippage_bps);
      _qty := backtest.order_qty(_p->>'sizing', _d.target, (_p->>'fraction')::numeric, (_p->>'risk_pct')::numeric,
                                 _d.stop_loss, _pos.qty, _a.cash, _pf.total_value, _pos.other_gross, _est, _step,
                                 _a.commission_rate, _a.commission_min, _a.max_position_pct, _a.max_gross_leverage,
                                 _a.allow_short);
      EXIT WHEN _qty = 0;
      _flip := _pass = 1 AND (_d.stop_loss IS NOT NULL OR _d.take_profit IS NOT NULL)
               AND _pos.qty <> 0 AND sign(_pos.qty + _qty) = -sign(_pos.qty);
      IF _flip THEN
        _qty := -_pos.qty;
      END IF;
      -- an order that reduces a position first cancels the position's bracket children (its fill would cancel them
      -- anyway): a short's buy-stop child reserves the cash that covering the short needs (TR001 otherwise)
      IF _pos.qty <> 0 AND sign(_qty) <> sign(_pos.qty) THEN
        PERFORM trading.cancel_order(c.id, 'position reduced by the strategy')
        FROM trading.orders c
        WHERE c.account_id = _a.id AND c.symbol = _d.symbol AND c.source IN ('stop_loss', 'take_profit')
          AND c.status IN ('accepted', 'partially_filled') AND c.type <> 'market';
      END IF;
      -- brackets protect an entry: an order that opens or adds to a position on the target's side; one that closes
      -- or trims a position carries none (its children would protect nothing, or lie on the wrong side: TR010)
      _entry := sign(_pos.qty + _qty) = sign(_d.target) AND abs(_pos.qty + _qty) > abs(_pos.qty);
      _o := trading.place_order(_a.id, _d.symbol, CASE WHEN _qty > 0 THEN 'buy' ELSE 'sell' END, abs(_qty), 'market',
                                stop_loss => CASE WHEN _entry THEN _d.stop_loss END,
                                take_profit => CASE WHEN _entry THEN _d.take_profit END,
                                source => 'strategy');
      UPDATE backtest.decisions d SET order_id = _o.id WHERE d.run_id = _d.run_id AND d.symbol = _d.symbol AND d.ts = _d.ts;
      EXIT WHEN NOT _flip OR _o.status <> 'filled';
    END LOOP;
  END LOOP;
END
$$;
COMMENT ON FUNCTION internal.backtest_exact IS
  'Internal: the exact engine path: for each decision in execution order, trading.advance_clock to its execution time, size it (backtest.order_qty) and place it through trading.place_order (market-on-open); a reversal with brackets is a closing order and then an opening one with the brackets.';

-- The fast path. Per decision (execution order) the state it needs: the fill price (the open of the bar at
-- exec_ts) and the marks of the run's symbols at that moment (close of each symbol's latest bar closed by then).
CREATE OR REPLACE FUNCTION internal.backtest_fast(run backtest.runs)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET enable_nestloop = off  -- the windowed timelines are estimated at a few rows; a nested loop over them is quadratic
AS $$
DECLARE
  _p jsonb := backtest_fast.run.params;
  _a trading.accounts;
  _syms text[] := backtest_fast.run.symbols;
  _n integer := cardinality(backtest_fast.run.symbols);
  _steps numeric[];
  _qty numeric[];
  _basis numeric[];
  _mark numeric[];
  _mark_at timestamptz[];
  _preal numeric[];
  _pcomm numeric[];
  _opened timestamptz[];
  _closed timestamptz[];
  _updated timestamptz[];
  _cash numeric;
  _realized numeric := 0;
  _comm_total numeric := 0;
  _d record;
  _i integer;
  _equity numeric;
  _other numeric;
  _side text;
  _est numeric;
  _q numeric;
  _c numeric;
  _st record;
  _oid bigint;
  _fid bigint;
  _order_seq regclass := pg_catalog.pg_get_serial_sequence('trading.orders', 'id')::regclass;
  _fill_seq regclass := pg_catalog.pg_get_serial_sequence('trading.fills', 'id')::regclass;
  _hist_seq regclass := pg_catalog.pg_get_serial_sequence('trading.order_history', 'id')::regclass;
  _hist bigint[];
  -- what is written at the end, one element per order (o_), fill (same index), ledger row (l_)
  o_id bigint[] := ARRAY[]::bigint[]; o_sym text[] := ARRAY[]::text[]; o_side text[] := ARRAY[]::text[]; o_qty numeric[] := ARRAY[]::numeric[];
  o_price numeric[] := ARRAY[]::numeric[]; o_ref numeric[] := ARRAY[]::numeric[]; o_ts timestamptz[] := ARRAY[]::timestamptz[]; o_comm numeric[] := ARRAY[]::numeric[];
  o_real numeric[] := ARRAY[]::numeric[]; o_fid bigint[] := ARRAY[]::bigint[]; o_pq numeric[] := ARRAY[]::numeric[]; o_pb numeric[] := ARRAY[]::numeric[];
  o_preal numeric[] := ARRAY[]::numeric[]; o_cash numeric[] := ARRAY[]::numeric[]; o_dec_ts timestamptz[] := ARRAY[]::timestamptz[];
BEGIN
  SELECT * INTO _a FROM trading.accounts a WHERE a.id = backtest_fast.run.account_id FOR UPDATE;
  _cash := _a.cash;
  SELECT array_agg(i.qty_step ORDER BY s.n) INTO _steps
  FROM unnest(_syms) WITH ORDINALITY s(symbol, n) JOIN market.instruments i ON i.symbol = s.symbol;
  _qty := array_fill(0::numeric, ARRAY[_n]); _basis := _qty; _preal := _qty; _pcomm := _qty;
  _mark := array_fill(NULL::numeric, ARRAY[_n]);
  _mark_at := array_fill(NULL::timestamptz, ARRAY[_n]); _opened := _mark_at; _closed := _mark_at; _updated := _mark_at;

  FOR _d IN
    WITH dec AS (
      SELECT d.* FROM backtest.decisions d WHERE d.run_id = backtest_fast.run.id AND d.exec_ts IS NOT NULL
    ), rb AS MATERIALIZED (  -- with the symbol's previous bar: its close is the latest close at this bar's open
      SELECT b.symbol, b.ts, b.open, b.close, b.ts + iv.step AS close_ts,
             lag(b.close) OVER w AS prev_close, lag(b.ts + iv.step) OVER w AS prev_close_ts
      FROM backtest.bars(backtest_fast.run) b JOIN market.intervals iv ON iv.code = b.interval
      WINDOW w AS (PARTITION BY b.symbol ORDER BY b.ts)
    ), ex AS (
      SELECT DISTINCT dec.exec_ts FROM dec WHERE _n > 1
    ), tl AS (  -- several symbols: per symbol, bar closes and execution times in one timeline; a close at exec_ts
                -- counts (one symbol: its previous bar's close, above)
      SELECT rb.symbol, rb.close_ts AS t, 0 AS k, ARRAY[extract(epoch FROM rb.close_ts), rb.close] AS mk FROM rb
      WHERE _n > 1
      UNION ALL
      SELECT s.symbol, ex.exec_ts, 1, NULL FROM ex CROSS JOIN unnest(backtest_fast.run.symbols) s(symbol)
    ), m AS (  -- the latest close and its time: the running maximum of (close time, close) and of the close time
      SELECT tl.symbol, tl.t, tl.k, (max(tl.mk) OVER w)[2] AS mark, max(tl.t) FILTER (WHERE tl.k = 0) OVER w AS mark_at
      FROM tl WINDOW w AS (PARTITION BY tl.symbol ORDER BY tl.t, tl.k)
    ), marks AS (
      SELECT m.t AS exec_ts, array_agg(m.mark ORDER BY s.n) AS marks, array_agg(m.mark_at ORDER BY s.n) AS mark_ats
      FROM m JOIN unnest(backtest_fast.run.symbols) WITH ORDINALITY s(symbol, n) ON s.symbol = m.symbol
      WHERE m.k = 1
      GROUP BY m.t
    )
    SELECT dec.symbol, dec.ts, dec.target, dec.prev_target, dec.exec_ts, dec.seq, rb.open,
           array_position(backtest_fast.run.symbols, dec.symbol) AS i,
           CASE WHEN _n = 1 THEN ARRAY[rb.prev_close] ELSE marks.marks END AS marks,
           CASE WHEN _n = 1 THEN ARRAY[rb.prev_close_ts] ELSE marks.mark_ats END AS mark_ats,
           lag(dec.exec_ts) OVER (ORDER BY dec.seq) AS prev_exec
    FROM dec
    JOIN rb ON rb.symbol = dec.symbol AND rb.ts = dec.exec_ts
    LEFT JOIN marks ON marks.exec_ts = dec.exec_ts
    ORDER BY dec.seq
  LOOP
    _i := _d.i;
    IF _d.prev_exec IS DISTINCT FROM _d.exec_ts THEN
      -- a new execution time: every held position is marked at its latest close (trading.advance_clock's marks),
      -- unless a fill marked it later
      FOR _j IN 1.._n LOOP
        IF _qty[_j] <> 0 AND _d.marks[_j] IS NOT NULL AND (_mark_at[_j] IS NULL OR _mark_at[_j] <= _d.mark_ats[_j]) THEN
          _mark[_j] := _d.marks[_j];
          _mark_at[_j] := _d.mark_ats[_j];
        END IF;
      END LOOP;
    END IF;
    -- the valuation rule (trading.position_values): qty x mark
    _equity := _cash;
    _other := 0;
    FOR _j IN 1.._n LOOP
      IF _qty[_j] <> 0 THEN
        _equity := _equity + coalesce(_qty[_j] * _mark[_j], _basis[_j]);
        IF _j <> _i THEN
          _other := _other + abs(coalesce(_qty[_j] * _mark[_j], _basis[_j]));
        END IF;
      END IF;
    END LOOP;
    _side := CASE WHEN _d.target > _d.prev_target THEN 'buy' ELSE 'sell' END;
    _est := trading.slipped_price(_d.open, _side, _a.slippage_bps);
    _q := backtest.order_qty(_p->>'sizing', _d.target, (_p->>'fraction')::numeric, (_p->>'risk_pct')::numeric,
                             NULL, _qty[_i], _cash, _equity, _other, _est, _steps[_i], _a.commission_rate,
                             _a.commission_min, _a.max_position_pct, _a.max_gross_leverage, _a.allow_short);
    CONTINUE WHEN _q = 0;
    _side := CASE WHEN _q > 0 THEN 'buy' ELSE 'sell' END;
    -- the fill rule for a market order at this open (place_order's estimate is the same price)
    SELECT f.price INTO _est
    FROM trading.fill_rule('market', _side, NULL, NULL, false, abs(_q), _steps[_i], _a.slippage_bps, NULL,
                           _d.open, _d.open, _d.open, 0) f;
    -- place_order's checks, which the sizing rule already satisfies; an order they would reject cannot be
    -- recorded here without the live procedure, so it stops the run (run it with mode exact)
    IF coalesce(abs(_q) * _est > _a.max_order_value, false)
       OR trading.affordability(_side, abs(_q), _est, true, _cash, _qty[_i], _a.commission_rate, _a.commission_min,
                                _a.max_gross_leverage, _a.allow_short) IS NOT NULL
       OR (abs(_qty[_i] + _q) > abs(_qty[_i])
           AND trading.exposure_rule(_qty[_i] + _q, _est, _equity, _other, _a.max_position_pct, _a.max_gross_leverage) IS NOT NULL) THEN
      RAISE EXCEPTION 'the order at % for % % % would be rejected by the risk checks', _d.exec_ts, _side, abs(_q), _d.symbol
        USING ERRCODE = 'BT006', HINT = 'the fast engine records no rejected orders; run with mode => ''exact''';
    END IF;
    -- internal.apply_fill's arithmetic: commission, the P&L step, cash
    _c := trading.commission(_a.commission_rate, _a.commission_min, abs(_q) * _est, true);
    _st := trading.pnl_step(_qty[_i], _basis[_i], _q, _est);
    _cash := _cash - _q * _est - _c;
    _realized := _realized + _st.realized;
    _comm_total := _comm_total + _c;
    IF _st.new_qty <> 0 AND (_qty[_i] = 0 OR sign(_qty[_i]) <> sign(_st.new_qty)) THEN
      _opened[_i] := _d.exec_ts;
    END IF;
    _qty[_i] := _st.new_qty;
    _basis[_i] := _st.new_cost_basis;
    _preal[_i] := _preal[_i] + _st.realized;
    _pcomm[_i] := _pcomm[_i] + _c;
    _mark[_i] := _d.open;
    _mark_at[_i] := _d.exec_ts;
    _updated[_i] := _d.exec_ts;
    _closed[_i] := CASE WHEN _st.new_qty = 0 THEN _d.exec_ts END;
    _oid := nextval(_order_seq);
    _fid := nextval(_fill_seq);
    o_id := o_id || _oid; o_fid := o_fid || _fid; o_sym := o_sym || _d.symbol; o_side := o_side || _side;
    o_qty := o_qty || abs(_q); o_price := o_price || _est; o_ref := o_ref || _d.open; o_ts := o_ts || _d.exec_ts;
    o_comm := o_comm || _c; o_real := o_real || _st.realized; o_pq := o_pq || _st.new_qty;
    o_pb := o_pb || _st.new_cost_basis; o_preal := o_preal || _preal[_i]; o_cash := o_cash || _cash;
    o_dec_ts := o_dec_ts || _d.ts;
  END LOOP;

  -- The rows, as trading.place_order and internal.apply_fill write them.
  -- Each order is inserted in its final (filled) state, which the history trigger records; the 'accepted' row that
  -- place_order's first step leaves before it gets an id reserved ahead of them, so it comes first as in the live
  -- path (one insert instead of an insert and an update of every order: 11 indexes each).
  _hist := ARRAY(SELECT nextval(_hist_seq) FROM generate_series(1, cardinality(o_id)) ORDER BY 1);
  INSERT INTO trading.orders (id, account_id, symbol, side, type, qty, tif, status, source, est_price, accepted_at,
                              created_at, updated_at, filled_qty, avg_fill_price, closed_at)
  OVERRIDING SYSTEM VALUE
  SELECT x.id, _a.id, x.sym, x.side, 'market', x.qty, 'day', 'filled', 'strategy', x.price, x.ts, x.ts, x.ts,
         x.qty, round(x.price, 10), x.ts
  FROM unnest(o_id, o_sym, o_side, o_qty, o_price, o_ts) x(id, sym, side, qty, price, ts)
  ORDER BY x.id;
  INSERT INTO trading.order_history (id, order_id, ts, status, filled_qty, reason)
  OVERRIDING SYSTEM VALUE
  SELECT x.h, x.id, x.ts, 'accepted', 0, NULL
  FROM unnest(_hist, o_id, o_ts) x(h, id, ts)
  ORDER BY x.h;
  INSERT INTO trading.fills (id, order_id, account_id, symbol, side, qty, price, ref_price, commission, slippage,
                             realized_pnl, bar_ts, ts)
  OVERRIDING SYSTEM VALUE
  SELECT x.fid, x.id, _a.id, x.sym, x.side, x.qty, x.price, x.ref, x.comm, abs(x.price - x.ref) * x.qty, x.real, NULL, x.ts
  FROM unnest(o_fid, o_id, o_sym, o_side, o_qty, o_price, o_ref, o_comm, o_real, o_ts)
       x(fid, id, sym, side, qty, price, ref, comm, real, ts)
  ORDER BY x.fid;
  INSERT INTO trading.position_history (account_id, symbol, fill_id, ts, qty, cost_basis, realized_pnl)
  SELECT _a.id, x.sym, x.fid, x.ts, x.pq, x.pb, x.preal
  FROM unnest(o_fid, o_sym, o_ts, o_pq, o_pb, o_preal) x(fid, sym, ts, pq, pb, preal)
  ORDER BY x.fid;
  INSERT INTO trading.cash_ledger (account_id, ts, cause, amount, balance, fill_id, order_id)
  SELECT _a.id, x.ts, v.cause, v.amount, v.balance, x.fid, x.id
  FROM unnest(o_fid, o_id, o_side, o_qty, o_price, o_comm, o_cash, o_ts) WITH ORDINALITY
         x(fid, id, side, qty, price, comm, cash, ts, n),
       LATERAL (VALUES (x.side, CASE x.side WHEN 'buy' THEN -x.qty * x.price ELSE x.qty * x.price END, x.cash + x.comm, 1),
                       ('commission', -x.comm, x.cash, 2)) v(cause, amount, balance, k)
  WHERE v.amount <> 0 OR v.k = 1
  ORDER BY x.n, v.k;
  INSERT INTO trading.events (account_id, kind, order_id, ts, payload)
  SELECT _a.id, v.kind, x.id, x.ts, v.payload
  FROM unnest(o_id, o_fid, o_sym, o_side, o_qty, o_price, o_ts, o_pq) WITH ORDINALITY
         x(id, fid, sym, side, qty, price, ts, pq, n),
       LATERAL (VALUES ('order_accepted', jsonb_build_object('symbol', x.sym, 'side', x.side, 'type', 'market', 'qty', x.qty), 1),
                       ('fill', jsonb_build_object('fill_id', x.fid, 'symbol', x.sym, 'side', x.side, 'qty', x.qty,
                                                   'price', x.price, 'source', 'strategy', 'position', x.pq), 2)) v(kind, payload, k)
  ORDER BY x.n, v.k;
  UPDATE backtest.decisions d SET order_id = x.id
  FROM unnest(o_id, o_sym, o_dec_ts) x(id, sym, ts)
  WHERE d.run_id = backtest_fast.run.id AND d.symbol = x.sym AND d.ts = x.ts;
  INSERT INTO trading.positions (account_id, symbol, allow_short, qty, cost_basis, realized_pnl, commissions,
                                 last_price, last_price_at, opened_at, updated_at, closed_at)
  SELECT _a.id, s.symbol, _a.allow_short, _qty[s.n], _basis[s.n], _preal[s.n], _pcomm[s.n], _mark[s.n],
         _mark_at[s.n], _opened[s.n], _updated[s.n], _closed[s.n]
  FROM unnest(_syms) WITH ORDINALITY s(symbol, n)
  WHERE _updated[s.n] IS NOT NULL;
  UPDATE trading.accounts a
     SET cash = _cash, realized_pnl = a.realized_pnl + _realized, commissions = a.commissions + _comm_total,
         clock_ts = greatest(a.clock_ts, (SELECT max(x) FROM unnest(o_ts) x))
   WHERE a.id = _a.id;
END
$$;
COMMENT ON FUNCTION internal.backtest_fast IS
  'Internal: the fast engine path for market-on-open decisions: the rule functions in one loop with cash and positions carried in variables, the trading core''s rows written set-based at the end (identical to the exact path''s: tests/test_backtest_parity.py).';

-- Portfolio snapshots of a run, one per bar close time of its bars, set-based from the trading core's rows of its
-- account: the state after the fills before that time (orders placed at that instant, at the next bar's open, come
-- after it), each position valued at its symbol's latest close (the valuation rule: qty x mark). Both engine paths
-- end with this (one statement for the whole run instead of a snapshot per bar).
-- Every figure is a running sum of its changes, exact in numeric: per symbol, the position (running sum of its
-- changes at the fills) times the latest close (running max of (close time, close)) and that value's change at
-- every step (one window pass); over the account, those changes, the ledger's amounts (the balance is the running
-- sum of the amounts) and the commissions summed in time order (a second pass) give each snapshot, including a
-- symbol with no bar at that time (its last value carries). A position always has a close of its own symbol: its
-- fills come at the open or the close of a bar after the symbol's first bar in the run. Two sorts, no join over bars
-- (a timeline crossed with every snapshot time, carried first_values and joins back took 1.5 s of CPU for
-- 98,280 bars where this takes 1.1, of which 0.46 is the insert).
CREATE OR REPLACE FUNCTION internal.backtest_snapshots(run backtest.runs)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _n integer;
BEGIN
  WITH ph AS (  -- each fill's change of its symbol's position, basis and realized P&L; a fill by a bar (a resting
                -- bracket child: fills.bar_ts) is stamped with that bar's close and belongs to the snapshot of that
                -- close (k -1); a market-on-open fill at the same instant comes after it (k 1)
    SELECT h.symbol, h.ts, h.id, CASE WHEN f.bar_ts IS NOT NULL THEN -1 ELSE 1 END AS k,
           h.qty - coalesce(lag(h.qty) OVER w, 0) AS dqty,
           h.cost_basis - coalesce(lag(h.cost_basis) OVER w, 0) AS dbasis,
           h.realized_pnl - coalesce(lag(h.realized_pnl) OVER w, 0) AS drealized
    FROM trading.position_history h LEFT JOIN trading.fills f ON f.id = h.fill_id
    WHERE h.account_id = backtest_snapshots.run.account_id
    WINDOW w AS (PARTITION BY h.symbol ORDER BY h.id)
  ), pos AS (  -- per symbol in time order (a close at t before a fill at t): the position (running sum of its
               -- changes) times the latest close (running max of (close time, close))
    SELECT x.symbol, x.t, x.k, x.id, x.dbasis, x.drealized,
           sum(x.dqty) OVER w * coalesce((max(x.mk) OVER w)[2], 0) AS value
    FROM (SELECT b.symbol, b.ts + iv.step AS t, 0 AS k, 0::bigint AS id,
                 ARRAY[extract(epoch FROM b.ts + iv.step), b.close] AS mk, 0::numeric AS dqty, 0::numeric AS dbasis,
                 0::numeric AS drealized
          FROM backtest.bars(backtest_snapshots.run) b JOIN market.intervals iv ON iv.code = b.interval
          UNION ALL
          SELECT ph.symbol, ph.ts, ph.k, ph.id, NULL, ph.dqty, ph.dbasis, ph.drealized FROM ph) x
    WINDOW w AS (PARTITION BY x.symbol ORDER BY x.t, x.k, x.id)
  ), tl AS (  -- the account's changes: position values (per symbol step), basis, realized, cash, commissions (a
              -- ledger row of a fill by a bar at k -1, as its fill)
    SELECT pos.t, pos.k, pos.value - coalesce(lag(pos.value) OVER (PARTITION BY pos.symbol ORDER BY pos.t, pos.k, pos.id), 0)
             AS dvalue, pos.dbasis, pos.drealized, 0::numeric AS dcash, 0::numeric AS dcomm
    FROM pos
    UNION ALL
    SELECT l.ts, CASE WHEN f.bar_ts IS NOT NULL THEN -1 ELSE 1 END, 0, 0, 0, l.amount,
           CASE WHEN l.cause = 'commission' THEN -l.amount ELSE 0 END
    FROM trading.cash_ledger l LEFT JOIN trading.fills f ON f.id = l.fill_id
    WHERE l.account_id = backtest_snapshots.run.account_id
  ), acc AS (  -- at each close time t: every change before t, the fills by bars closing at t (k -1) and every
              -- close at t (peers of the RANGE frame)
    SELECT tl.t, tl.k, sum(tl.dvalue) OVER w AS value, sum(tl.dbasis) OVER w AS basis,
           sum(tl.drealized) OVER w AS realized, sum(tl.dcash) OVER w AS cash, sum(tl.dcomm) OVER w AS comm
    FROM tl WINDOW w AS (ORDER BY tl.t, tl.k)
  ), v AS (
    SELECT DISTINCT ON (acc.t) acc.t, acc.cash, acc.value, acc.cash + acc.value AS total, acc.realized,
           acc.value - acc.basis AS unrealized, acc.comm
    FROM acc WHERE acc.k = 0
    ORDER BY acc.t
  ), pk AS (
    SELECT v.*, max(v.total) OVER (ORDER BY v.t) AS peak FROM v
  ), ins AS (
    INSERT INTO trading.portfolio_snapshots AS s (account_id, ts, cash, positions_value, total_value, realized_pnl,
                                                  unrealized_pnl, commissions, peak_value, drawdown)
    SELECT backtest_snapshots.run.account_id, pk.t, pk.cash, pk.value, pk.total, pk.realized, pk.unrealized, pk.comm,
           pk.peak, CASE WHEN pk.peak > 0 THEN round((pk.peak - pk.total) / pk.peak, 10) ELSE 0 END
    FROM pk
    -- no ON CONFLICT: the account is the run's own, created in this transaction, and nothing else snapshots it
    -- (the upsert's speculative insertion cost 0.12 s of CPU per 98,000 rows)
    RETURNING 1
  )
  SELECT count(*) INTO _n FROM ins;
  RETURN _n;
END
$$;
COMMENT ON FUNCTION internal.backtest_snapshots IS
  'Internal: a run''s portfolio snapshots, one per bar close time, computed set-based from its fills, position history and cash ledger (state before the orders placed at that instant; positions at their latest close).';

-- What makes a request a run at all (backtest.run, the parents of grids and walk-forwards, and, without the
-- active-instrument rule, a look-ahead check): a registered strategy (BT001), active symbols (BT002), a known
-- interval and a finite, non-empty range (BT003). Returns the symbols upper-cased, trimmed and without duplicates.
DROP FUNCTION IF EXISTS internal.backtest_request(text, text[], text, timestamptz, timestamptz);
CREATE OR REPLACE FUNCTION internal.backtest_request(strategy text, symbols text[], "interval" text,
                                                    start_ts timestamptz, end_ts timestamptz,
                                                    what text DEFAULT 'a backtest', active_only boolean DEFAULT true)
RETURNS text[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _syms text[];
  _bad text;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM backtest.strategies s WHERE s.name = backtest_request.strategy) THEN
    RAISE EXCEPTION 'unknown strategy %', coalesce(quote_literal(backtest_request.strategy), 'NULL') USING ERRCODE = 'BT001',
      HINT = format('registered strategies: %s', (SELECT string_agg(s.name, ', ' ORDER BY s.name) FROM backtest.strategies s));
  END IF;
  SELECT array_agg(DISTINCT upper(btrim(x))) INTO _syms FROM unnest(backtest_request.symbols) x WHERE x IS NOT NULL;
  IF _syms IS NULL THEN
    RAISE EXCEPTION '% needs at least one symbol', backtest_request.what USING ERRCODE = 'BT002',
      HINT = 'pass symbols, e.g. ARRAY[''GOOG'']';
  END IF;
  SELECT string_agg(x, ', ') INTO _bad FROM unnest(_syms) x
  WHERE NOT EXISTS (SELECT 1 FROM market.instruments i
                    WHERE i.symbol = x AND (i.active OR NOT backtest_request.active_only));
  IF _bad IS NOT NULL THEN
    RAISE EXCEPTION '% symbol(s): %', CASE WHEN backtest_request.active_only THEN 'unknown or inactive' ELSE 'unknown' END,
      _bad USING ERRCODE = 'BT002',
      HINT = format('symbols are market.instruments rows%s (pgtrade summary lists them)',
                    CASE WHEN backtest_request.active_only THEN ' with active = true' ELSE '' END);
  END IF;
  IF NOT EXISTS (SELECT 1 FROM market.intervals iv WHERE iv.code = backtest_request.interval) THEN
    RAISE EXCEPTION 'unknown interval %', coalesce(quote_literal(backtest_request.interval), 'NULL') USING ERRCODE = 'BT003',
      HINT = format('intervals: %s', (SELECT string_agg(iv.code, ', ' ORDER BY iv.step) FROM market.intervals iv));
  END IF;
  IF backtest_request.start_ts IS NULL OR backtest_request.end_ts IS NULL
     OR NOT (backtest_request.start_ts < backtest_request.end_ts)
     OR NOT isfinite(backtest_request.start_ts) OR NOT isfinite(backtest_request.end_ts) THEN
    RAISE EXCEPTION 'invalid range [%, %)', backtest_request.start_ts, backtest_request.end_ts USING ERRCODE = 'BT003',
      HINT = 'start must be before end, both finite times';
  END IF;
  RETURN _syms;
END
$$;
COMMENT ON FUNCTION internal.backtest_request IS
  'Internal: the checks that make a backtest request (strategy BT001, symbols BT002, interval and range BT003); returns the normalized symbols.';

CREATE OR REPLACE FUNCTION backtest.run(
  strategy text, symbols text[], "interval" text, start_ts timestamptz, end_ts timestamptz,
  params jsonb DEFAULT '{}', mode text DEFAULT 'auto', parent_id bigint DEFAULT NULL, purpose text DEFAULT 'single',
  owner_account_id bigint DEFAULT NULL)
RETURNS backtest.runs
LANGUAGE plpgsql
-- JIT compiles a plan whose estimated cost is high (the engine's set-based statements over a whole range; the
-- disabled nested loops add a large constant): 0.7 s of compiling for a 60 ms query, measured on GOOG daily
SET jit = off
AS $$
DECLARE
  _s backtest.strategies;
  _syms text[];
  _p jsonb;
  _r backtest.runs;
  _a trading.accounts;
  _t0 timestamptz := clock_timestamp();
  _final timestamptz;
  _brackets boolean;
  _mode text := lower(coalesce(run.mode, 'auto'));
  _state text;
  _msg text;
  _hint text;
  _bars market.ohlcv[];
  _tail backtest.runs;
  _begun bigint;
BEGIN
  _syms := internal.backtest_request(run.strategy, run.symbols, run.interval, run.start_ts, run.end_ts);
  SELECT * INTO _s FROM backtest.strategies s WHERE s.name = run.strategy;
  IF _mode NOT IN ('auto', 'fast', 'exact') THEN
    RAISE EXCEPTION 'unknown engine mode %', quote_literal(run.mode) USING ERRCODE = 'BT004', HINT = 'mode is auto, fast or exact';
  END IF;
  IF run.purpose IS NULL OR run.purpose NOT IN ('single', 'grid', 'walk_forward', 'wf_train', 'wf_test', 'lookahead', 'rerun') THEN
    RAISE EXCEPTION 'unknown run purpose %', coalesce(quote_literal(run.purpose), 'NULL') USING ERRCODE = 'BT004',
      HINT = 'purpose is single, grid, walk_forward, wf_train, wf_test, lookahead or rerun';
  END IF;
  _p := internal.backtest_params(_s, run.params);

  -- a run this session began and committed as running (backtest.run_begin, db/procedures/backtest_recovery.sql)
  -- with the same request is done in that row (a crash then leaves it running, for backtest.fail_interrupted_runs
  -- to mark failed); any other call inserts its own row
  _begun := nullif(current_setting('pgtrade.backtest_run_id', true), '')::bigint;
  IF _begun IS NOT NULL THEN
    UPDATE backtest.runs r
       SET params = _p, mode = CASE WHEN _mode = 'auto' THEN 'fast' ELSE _mode END, parent_id = run.parent_id
     WHERE r.id = _begun AND r.status = 'running' AND r.account_id IS NULL AND r.backend_pid = pg_backend_pid()
       AND (r.strategy, r.symbols, r.interval, r.start_ts, r.end_ts, r.purpose)
           IS NOT DISTINCT FROM (_s.name, _syms, run.interval, run.start_ts, run.end_ts, run.purpose)
       AND r.owner_account_id IS NOT DISTINCT FROM run.owner_account_id
    RETURNING * INTO _r;
    IF _r.id IS NOT NULL THEN
      PERFORM set_config('pgtrade.backtest_run_id', '', false);
    END IF;
  END IF;
  IF _r.id IS NULL THEN
    INSERT INTO backtest.runs (owner_account_id, parent_id, purpose, strategy, symbols, "interval", start_ts, end_ts,
                               params, mode)
    VALUES (run.owner_account_id, run.parent_id, run.purpose, _s.name, _syms, run.interval, run.start_ts, run.end_ts,
            _p, CASE WHEN _mode = 'auto' THEN 'fast' ELSE _mode END)
    RETURNING * INTO _r;
  END IF;

  BEGIN
    _a := trading.create_account(format('backtest run %s', _r.id), (_p->>'cash')::numeric, 'backtest', run.start_ts,
            jsonb_build_object('commission_rate', _p->'commission', 'commission_min', _p->'commission_min',
                               'slippage_bps', _p->'slippage_bps', 'allow_short', _p->'allow_short',
                               'max_position_pct', _p->'max_position_pct', 'max_gross_leverage', _p->'max_gross_leverage',
                               'max_order_value', _p->'max_order_value', 'match_interval', run.interval,
                               'market_fill', 'open', 'max_price_age', NULL));
    UPDATE backtest.runs r SET account_id = _a.id WHERE r.id = _r.id RETURNING * INTO _r;
    PERFORM internal.backtest_fingerprint(_r);
    SELECT * INTO _r FROM backtest.runs r WHERE r.id = _r.id;
    IF _r.bars = 0 THEN
      RAISE EXCEPTION 'no % bars of % in [%, %)', run.interval, array_to_string(_syms, ', '), run.start_ts, run.end_ts
        USING ERRCODE = 'BT007', HINT = 'load data first (pgtrade load ...) or choose a range with bars';
    END IF;

    PERFORM internal.backtest_decide(_r);
    PERFORM internal.backtest_fingerprint_warmup(_r);  -- the warmup bars the strategy read join the data hash
    SELECT bool_or(d.stop_loss IS NOT NULL OR d.take_profit IS NOT NULL) INTO _brackets
    FROM backtest.decisions d WHERE d.run_id = _r.id;
    IF coalesce(_brackets, false) AND _mode = 'fast' THEN
      RAISE EXCEPTION 'strategy % sets stop-loss or take-profit levels, which the fast engine does not handle', _s.name
        USING ERRCODE = 'BT006', HINT = 'run it with mode => ''exact'' (or auto)';
    END IF;
    IF (_p->>'sizing') = 'risk' AND EXISTS (SELECT 1 FROM backtest.decisions d WHERE d.run_id = _r.id
                                            AND d.target <> 0 AND d.stop_loss IS NULL) THEN
      RAISE EXCEPTION 'risk sizing needs a stop-loss level on every entry, and strategy % gives none', _s.name
        USING ERRCODE = 'BT005', HINT = 'use sizing all_in or fraction, or a strategy that sets stop_loss';
    END IF;
    _mode := CASE WHEN _mode = 'auto' THEN CASE WHEN coalesce(_brackets, false) THEN 'exact' ELSE 'fast' END ELSE _mode END;
    UPDATE backtest.runs r SET mode = _mode WHERE r.id = _r.id RETURNING * INTO _r;

    -- each symbol's last bar of the run: backtest.bars' warmup before the end of the range (an index probe per
    -- symbol, not a pass over every bar); without the run's id, so that this read is not noted as the strategy's
    -- warmup (pgtrade.backtest_warmup, the fingerprint's)
    _tail := _r;
    _tail.start_ts := _r.end_ts;
    _tail.id := NULL;
    SELECT array_agg(ROW(b.symbol, b.interval, b.ts, b.open, b.high, b.low, b.close, b.volume)::market.ohlcv),
           max(b.ts + iv.step)
      INTO _bars, _final
    FROM backtest.bars(_tail, 1) b JOIN market.intervals iv ON iv.code = b.interval
    WHERE b.ts >= _r.start_ts;
    IF _mode = 'exact' THEN
      PERFORM internal.backtest_exact(_r);
      PERFORM trading.advance_clock(_a.id, greatest(_final, trading.account_now(_a.id)));
    ELSE
      PERFORM internal.backtest_fast(_r);
      -- no resting orders: marking the held positions at their last close is what advance_clock would do
      PERFORM internal.mark_positions(_bars, _a.id);
      UPDATE trading.accounts a SET clock_ts = greatest(_final, a.clock_ts) WHERE a.id = _a.id;
    END IF;
    PERFORM internal.backtest_snapshots(_r);
    PERFORM internal.backtest_trades(_r);
    UPDATE backtest.runs r
       SET decisions = (SELECT count(*) FROM backtest.decisions d WHERE d.run_id = r.id),
           orders = (SELECT count(*) FROM trading.orders o WHERE o.account_id = r.account_id),
           fills = (SELECT count(*) FROM trading.fills f WHERE f.account_id = r.account_id),
           metrics = backtest.compute_metrics(r.id),
           status = 'done', finished_at = clock_timestamp(),
           elapsed_ms = round(extract(epoch FROM clock_timestamp() - _t0) * 1000, 1)
     WHERE r.id = _r.id
    RETURNING * INTO _r;
  EXCEPTION WHEN OTHERS THEN
    -- everything the run wrote is rolled back with this block; the run is kept as failed, with the reason
    GET STACKED DIAGNOSTICS _state = RETURNED_SQLSTATE, _msg = MESSAGE_TEXT, _hint = PG_EXCEPTION_HINT;
    UPDATE backtest.runs r
       SET status = 'failed', account_id = NULL, finished_at = clock_timestamp(),
           error = format('%s: %s%s', _state, _msg, CASE WHEN _hint <> '' THEN ' (hint: ' || _hint || ')' ELSE '' END),
           elapsed_ms = round(extract(epoch FROM clock_timestamp() - _t0) * 1000, 1)
     WHERE r.id = _r.id
    RETURNING * INTO _r;
  END;
  RETURN _r;
END
$$;
COMMENT ON FUNCTION backtest.run IS
  'Run a backtest: strategy, symbols, interval, [start_ts, end_ts), parameters (docs/backtesting.md), engine mode (auto: fast unless the strategy sets brackets; fast; exact). Creates the run''s backtest account, trades the strategy''s decisions through the trading core''s rules, writes snapshots and metrics. Invalid requests raise BT001-BT004; a run that fails on the way is kept with status failed and the error (nothing of it half-written). A run this session began with the same request (backtest.run_begin, committed as running) is done in that row.';
