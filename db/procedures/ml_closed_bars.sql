-- Closed bars: when a bar is final, and the one place that hands newly closed bars to ML processing.
--
-- The rule (one place, ml.closed_upto): a bar (symbol, interval, ts) is closed when the series has a later bar, or
-- when the feed's clock has reached the bar's end (ts + step). The feed's clock is now(), unless the ingest
-- transaction sets pgtrade.feed_now (a replay or synthetic feed running faster than real time sets its simulated
-- time, so its forming bars, stamped in the past, are not taken as closed on their first update).
-- A forming 1-minute bar that the feed upserts six times is therefore processed once: when the next minute's bar
-- arrives, or when the clock passes its end (the statement trigger below, or the every-minute sweep,
-- ml.process_closed_bars, for a series whose feed stopped after its last bar).

CREATE OR REPLACE FUNCTION ml.feed_now()
RETURNS timestamptz LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT trading.account_clock('wall', NULL) $$;  -- the one clock rule (db/procedures/trading_clock.sql)
COMMENT ON FUNCTION ml.feed_now IS
  'The feed''s clock, a wall-clock account''s (trading.account_clock): the setting pgtrade.feed_now when the ingest transaction set one (a simulated feed), never later than now(); else now().';

-- The newest bar of a series, found without planning every chunk of the hypertable: searched from `since` on (a bar
-- time the caller knows is at or before the newest: the series' ML watermark, a bar already seen), which confines
-- the search to the newest chunks; over the whole series when `since` is NULL or -infinity or nothing is found
-- there. PL/pgSQL with plans made for each call's values: a SQL function's query is planned for every call over
-- all the chunks (measured: 28 ms per call over the bundled daily history). Every ingest transaction calls it once
-- per series (ml.closed_upto); health for every series (ops.data_freshness: on the dev cluster's history, 244 of
-- 245 chunks compressed, the unbounded newest-bar query per instrument cost ~70 ms a call).
CREATE OR REPLACE FUNCTION ml.newest_bar(symbol text, "interval" text, since timestamptz, OUT last_ts timestamptz,
                                         OUT last_ingested_at timestamptz, OUT last_source text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_custom_plan
AS $$
BEGIN
  IF newest_bar.since > '-infinity' THEN
    SELECT b.ts, b.ingested_at, b.source INTO last_ts, last_ingested_at, last_source FROM market.bars b
    WHERE b.symbol = newest_bar.symbol AND b.interval = newest_bar."interval" AND b.ts >= newest_bar.since
    ORDER BY b.ts DESC LIMIT 1;
    IF FOUND THEN
      RETURN;
    END IF;
  END IF;
  SELECT b.ts, b.ingested_at, b.source INTO last_ts, last_ingested_at, last_source FROM market.bars b
  WHERE b.symbol = newest_bar.symbol AND b.interval = newest_bar."interval"
  ORDER BY b.ts DESC LIMIT 1;
END
$$;
COMMENT ON FUNCTION ml.newest_bar(text, text, timestamptz) IS
  'The newest bar of a series (its time, arrival and source; NULLs when it has none), searched from since on (the series'' ML watermark: only the newest chunks are planned), over the whole series when since is NULL or nothing is found there.';

-- PL/pgSQL with plans made for each call's values (as ml.newest_bar, which finds the series' newest bar from the
-- watermark): the bar before the newest is searched from the watermark on too.
DROP FUNCTION IF EXISTS ml.closed_upto(text, text);
CREATE OR REPLACE FUNCTION ml.closed_upto(symbol text, "interval" text, at_least timestamptz DEFAULT NULL)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
  _from timestamptz;
  _last timestamptz;
  _prev timestamptz;
  _step interval;
BEGIN
  SELECT iv.step INTO _step FROM market.intervals iv WHERE iv.code = closed_upto."interval";
  SELECT w.ts INTO _from FROM ml.watermarks w
  WHERE w.symbol = closed_upto.symbol AND w."interval" = closed_upto."interval";
  _from := coalesce(_from, '-infinity');
  SELECT nb.last_ts INTO _last FROM ml.newest_bar(closed_upto.symbol, closed_upto."interval", _from) nb;
  IF _last IS NULL OR _step IS NULL THEN
    RETURN NULL;
  END IF;
  -- its last bar once the clock passed its end, else the bar before it
  IF ml.feed_now() >= _last + _step THEN
    RETURN _last;
  END IF;
  SELECT max(b.ts) INTO _prev FROM market.bars b
  WHERE b.symbol = closed_upto.symbol AND b.interval = closed_upto."interval" AND b.ts < _last AND b.ts >= _from;
  IF _prev IS NULL AND _from > '-infinity' THEN
    -- no bar from the watermark to the last one (the last bar is the watermark's own, handed on before and corrected
    -- now): the bar before lies below the watermark. A caller that only moves the watermark (at_least: the
    -- watermark) needs no search there; unbounded, it plans every chunk of the hypertable (measured: 63 ms for the
    -- correction of 4 series' newest 1m bars beside the 244 chunks of daily history)
    IF closed_upto.at_least >= _from THEN
      RETURN closed_upto.at_least;
    END IF;
    SELECT max(b.ts) INTO _prev FROM market.bars b
    WHERE b.symbol = closed_upto.symbol AND b.interval = closed_upto."interval" AND b.ts < _last;
  END IF;
  RETURN _prev;
END
$$;
COMMENT ON FUNCTION ml.closed_upto IS
  'The newest closed bar of a series (a later bar exists, or ml.feed_now() passed its end); NULL when none is. With at_least (a watermark), at_least when the newest closed bar is at or below it, without searching below it.';

-- Hand the newly closed bars of these series to ML processing, once each: the bars after each series' watermark
-- up to its newest closed bar. Returns the number of series that had newly closed bars.
-- Late bars: a statement's bars (lo_ts[i]..hi_ts[i], from the trigger) at or below the series' watermark arrived
-- after a later bar was handed on: a backfilled gap, a correction, or a bulk load whose batches commit out of time
-- order over several connections (measured: a two-worker load of SPX left the September 2001 bars behind the
-- watermark, unscored and undetected). They go to internal.on_late_bars (anomalies and signals, not trading, which
-- acts on the newest bar only); the watermark stays.
DROP FUNCTION IF EXISTS internal.process_closed(text[], text[]);
CREATE OR REPLACE FUNCTION internal.process_closed(
  symbols text[], intervals text[], lo_ts timestamptz[] DEFAULT NULL, hi_ts timestamptz[] DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _syms text[];
  _ivs text[];
  _after timestamptz[];
  _upto timestamptz[];
  _late_syms text[];
  _late_ivs text[];
  _late_after timestamptz[];
  _late_upto timestamptz[];
BEGIN
  INSERT INTO ml.watermarks (symbol, "interval", ts)
  SELECT DISTINCT u.symbol, u.iv, '-infinity'::timestamptz
  FROM unnest(process_closed.symbols, process_closed.intervals) u(symbol, iv)
  ON CONFLICT (symbol, "interval") DO NOTHING;
  -- under the watermark rows' locks (FOR UPDATE reads the newest committed watermark): two sessions closing the
  -- same bars hand them on once
  WITH locked AS (
    SELECT w.symbol, w."interval", w.ts FROM ml.watermarks w
    WHERE (w.symbol, w."interval") IN (SELECT u.symbol, u.iv
                                       FROM unnest(process_closed.symbols, process_closed.intervals) u(symbol, iv))
    ORDER BY w.symbol, w."interval"
    FOR UPDATE OF w
  ), c AS MATERIALIZED (
    SELECT l.symbol, l."interval", l.ts AS after_ts, ml.closed_upto(l.symbol, l."interval", l.ts) AS upto
    FROM locked l
  ), late AS (
    -- this statement's bars at or below the watermark as it was (bars above it are handed on below)
    SELECT c.symbol, c."interval", u.lo - interval '1 microsecond' AS after_ts, least(u.hi, c.after_ts) AS upto
    FROM c
    JOIN unnest(process_closed.symbols, process_closed.intervals, process_closed.lo_ts, process_closed.hi_ts)
         u(symbol, iv, lo, hi) ON u.symbol = c.symbol AND u.iv = c."interval"
    WHERE u.lo <= c.after_ts
  ), late_agg AS (
    SELECT array_agg(l.symbol) AS syms, array_agg(l."interval") AS ivs, array_agg(l.after_ts) AS afters,
           array_agg(l.upto) AS uptos
    FROM late l
  ), moved AS (
    UPDATE ml.watermarks w SET ts = c.upto FROM c
    WHERE w.symbol = c.symbol AND w."interval" = c."interval" AND c.upto > c.after_ts
    RETURNING c.symbol, c."interval", c.after_ts, c.upto
  )
  SELECT array_agg(m.symbol), array_agg(m."interval"), array_agg(m.after_ts), array_agg(m.upto),
         (SELECT la.syms FROM late_agg la), (SELECT la.ivs FROM late_agg la), (SELECT la.afters FROM late_agg la),
         (SELECT la.uptos FROM late_agg la)
    INTO _syms, _ivs, _after, _upto, _late_syms, _late_ivs, _late_after, _late_upto
  FROM moved m;
  IF _late_syms IS NOT NULL THEN
    PERFORM internal.on_late_bars(_late_syms, _late_ivs, _late_after, _late_upto);
  END IF;
  IF _syms IS NULL THEN
    RETURN 0;
  END IF;
  PERFORM internal.on_closed_bars(_syms, _ivs, _after, _upto);
  RETURN cardinality(_syms);
END
$$;
REVOKE ALL ON FUNCTION internal.process_closed(text[], text[], timestamptz[], timestamptz[]) FROM PUBLIC;
COMMENT ON FUNCTION internal.process_closed IS
  'Move the ML watermark of these series to their newest closed bar and hand the bars in between to internal.on_closed_bars, once each; the statement''s late bars (lo_ts..hi_ts at or below the watermark) to internal.on_late_bars.';

-- What happens to newly closed bars: series i's bars in (after_ts[i], upto_ts[i]]. Each step is set-based over
-- all the series at once and runs in the transaction that closed the bars.
CREATE OR REPLACE FUNCTION internal.on_closed_bars(
  symbols text[], intervals text[], after_ts timestamptz[], upto_ts timestamptz[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- the steps of late bars (anomalies, then signals), then trading on the signals
  PERFORM internal.on_late_bars(on_closed_bars.symbols, on_closed_bars.intervals, on_closed_bars.after_ts,
                                on_closed_bars.upto_ts);
  PERFORM internal.auto_trade(on_closed_bars.symbols, on_closed_bars.intervals, on_closed_bars.after_ts, on_closed_bars.upto_ts);
END
$$;
REVOKE ALL ON FUNCTION internal.on_closed_bars(text[], text[], timestamptz[], timestamptz[]) FROM PUBLIC;
COMMENT ON FUNCTION internal.on_closed_bars(text[], text[], timestamptz[], timestamptz[]) IS
  'The ML steps for newly closed bars (series i: bars in (after_ts[i], upto_ts[i]]), in the transaction that closed them: anomalies, then signals, then auto-trading.';

-- Late bars (see internal.process_closed): anomalies and signals, the steps newly closed bars also take
-- (internal.on_closed_bars calls this, then trades), but no trading. Both steps are idempotent: detection updates
-- a bar's anomaly rows in place (no second alert), scoring keeps a bar's first signal per model.
CREATE OR REPLACE FUNCTION internal.on_late_bars(
  symbols text[], intervals text[], after_ts timestamptz[], upto_ts timestamptz[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM internal.detect_anomalies(on_late_bars.symbols, on_late_bars.intervals, on_late_bars.after_ts,
                                    on_late_bars.upto_ts);
  PERFORM internal.score_bars(on_late_bars.symbols, on_late_bars.intervals, on_late_bars.after_ts, on_late_bars.upto_ts);
END
$$;
REVOKE ALL ON FUNCTION internal.on_late_bars(text[], text[], timestamptz[], timestamptz[]) FROM PUBLIC;
COMMENT ON FUNCTION internal.on_late_bars(text[], text[], timestamptz[], timestamptz[]) IS
  'The ML steps for late bars (series i: bars in (after_ts[i], upto_ts[i]], at or below the watermark): anomalies and signals, no trading.';

-- The sweep (pg_cron, every minute; db/jobs/ml_jobs.sql): series whose last bar closed by the clock with no later
-- bar arriving (a feed that stopped, a daily bar after its day).
CREATE OR REPLACE FUNCTION ml.process_closed_bars()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _syms text[];
  _ivs text[];
BEGIN
  SELECT array_agg(w.symbol), array_agg(w."interval") INTO _syms, _ivs
  FROM ml.watermarks w
  WHERE EXISTS (SELECT FROM market.bars b WHERE b.symbol = w.symbol AND b.interval = w."interval" AND b.ts > w.ts);
  IF _syms IS NULL THEN
    RETURN 0;
  END IF;
  RETURN internal.process_closed(_syms, _ivs);
END
$$;
COMMENT ON FUNCTION ml.process_closed_bars IS
  'Process the bars closed by the clock since the last statement on their series (run every minute by pg_cron); returns the number of series processed.';
