-- The account clock: the clock rule, an account's now (the only source of "now" in trading logic), and
-- advancing a manual clock.

-- The clock rule, in one place. A scalar SQL function without FROM, so it is inlined wherever it is called:
-- procedures that already hold the account row take the time from it without reading the row again.
-- A wall-clock account's now is the feed's clock: now(), unless the transaction set pgtrade.feed_now (a simulated
-- feed -- pgtrade stream replaying or synthesizing faster than real time -- sets its simulated time in each ingest
-- transaction; the same setting ml.feed_now reads for the closed-bar rule). So orders that the bars of such a feed
-- cause (auto-trading) are accepted at the feed's time, and the feed's next bars can fill them (internal.match_orders
-- fills from the first bar opening at or after acceptance), as they would at real speed. Whoever can set the
-- setting moves wall-clock accounts' time (a market order would then fill at an older price): the ingest sessions
-- do; a web request cannot (PostgREST sets only request.* settings, and the api functions set none). The setting
-- never moves the clock past now(): a simulated feed's bars lie in the past, and no setting makes a forming bar
-- closed or a resting order fillable before its time.
CREATE OR REPLACE FUNCTION trading.account_clock(clock_mode text, clock_ts timestamptz)
RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT CASE account_clock.clock_mode WHEN 'manual' THEN account_clock.clock_ts
              ELSE least(nullif(current_setting('pgtrade.feed_now', true), '')::timestamptz, now()) END
$$;
COMMENT ON FUNCTION trading.account_clock IS
  'The clock rule: now() for a wall-clock account (the simulated time pgtrade.feed_now when the transaction set one: a simulated feed), clock_ts for a manual-clock one (from an account row already read; trading.account_now reads it by id).';

-- PL/pgSQL rather than SQL on purpose: a SQL function that reads a table cannot be inlined into an expression, and
-- then re-plans its query on every call (~0.1 ms); PL/pgSQL keeps the plan (~0.01 ms).
CREATE OR REPLACE FUNCTION trading.account_now(account_id bigint)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
AS $$
BEGIN
  RETURN (SELECT trading.account_clock(a.clock_mode, a.clock_ts)
          FROM trading.accounts a WHERE a.id = account_now.account_id);
END
$$;
COMMENT ON FUNCTION trading.account_now IS
  'The account''s clock: now() for wall-clock accounts, clock_ts for manual-clock (backtest/replay) accounts. Trading procedures take time from here only (or from trading.account_clock on the account row they hold).';

-- Manual-clock accounts (backtests, replays) move in time only through trading.advance_clock: it walks the bars
-- that close in (clock, upto] in time order, setting the clock to each close time, expiring day orders, matching
-- resting orders with the same internal.match_orders the live triggers use, and marking positions to market.
CREATE OR REPLACE FUNCTION trading.advance_clock(account_id bigint, upto timestamptz)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
  _a trading.accounts;
  _syms text[];
  _maxstep interval;
  _t timestamptz;
  _bars market.ohlcv[];
  _fills integer := 0;
BEGIN
  SELECT * INTO _a FROM trading.accounts a WHERE a.id = advance_clock.account_id FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown account %', advance_clock.account_id USING ERRCODE = 'TR013',
      HINT = 'pass the id of an existing trading account';
  END IF;
  IF _a.clock_mode <> 'manual' THEN
    RAISE EXCEPTION 'account % runs on the wall clock', _a.id USING ERRCODE = 'TR017',
      HINT = 'only manual-clock (backtest) accounts are advanced explicitly';
  END IF;
  IF advance_clock.upto IS NULL OR advance_clock.upto < _a.clock_ts THEN
    RAISE EXCEPTION 'cannot move the clock of account % back from % to %', _a.id, _a.clock_ts, advance_clock.upto
      USING ERRCODE = 'TR017', HINT = 'the clock only moves forward';
  END IF;
  SELECT max(iv.step) INTO _maxstep FROM market.intervals iv;
  SELECT array_agg(DISTINCT s.symbol) INTO _syms FROM (
    SELECT o.symbol FROM trading.orders o WHERE o.account_id = _a.id AND o.status IN ('accepted', 'partially_filled')
    UNION SELECT p.symbol FROM trading.positions p WHERE p.account_id = _a.id AND p.qty <> 0) s;

  IF _syms IS NOT NULL THEN
    FOR _t IN
      SELECT DISTINCT b.ts + iv.step
      FROM market.bars b JOIN market.intervals iv ON iv.code = b.interval
      WHERE b.symbol = ANY (_syms) AND (_a.match_interval IS NULL OR b.interval = _a.match_interval)
        AND b.ts > _a.clock_ts - _maxstep AND b.ts < advance_clock.upto
        AND b.ts + iv.step > _a.clock_ts AND b.ts + iv.step <= advance_clock.upto
      ORDER BY 1
    LOOP
      UPDATE trading.accounts a SET clock_ts = _t WHERE a.id = _a.id;
      PERFORM trading.expire_orders(_a.id);
      SELECT array_agg(ROW(b.symbol, b.interval, b.ts, b.open, b.high, b.low, b.close, b.volume)::market.ohlcv)
        INTO _bars
      FROM market.bars b JOIN market.intervals iv ON iv.code = b.interval
      WHERE b.symbol = ANY (_syms) AND (_a.match_interval IS NULL OR b.interval = _a.match_interval)
        AND b.ts >= _t - _maxstep AND b.ts < _t AND b.ts + iv.step = _t;
      _fills := _fills + internal.match_orders(_bars, _a.id);
      PERFORM internal.mark_positions(_bars, _a.id);
    END LOOP;
  END IF;
  UPDATE trading.accounts a SET clock_ts = advance_clock.upto WHERE a.id = _a.id;
  PERFORM trading.expire_orders(_a.id);
  RETURN _fills;
END
$$;
COMMENT ON FUNCTION trading.advance_clock IS
  'Move a manual-clock account''s clock forward to upto, bar close by bar close: expire day orders, fill resting orders (internal.match_orders), mark positions. Returns the number of fills. TR017 for a wall-clock account or a backwards move.';
