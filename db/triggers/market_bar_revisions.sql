-- Keep every correction of a closed bar (market.bar_revisions, migration 0027), so a backtest can be re-run on the
-- bars as they were (market.bars_as_of, backtest.bars). A bar is closed when its close time ts + step is at or
-- before the feed's clock (ml.feed_now(): now(), or the simulated time a replay feed sets in pgtrade.feed_now).
--   update: an UPDATE (or an upsert's conflict branch) that changes a closed bar's open, high, low, close or volume;
--   delete: a DELETE of a closed bar;
--   insert: a bar inserted at or below its series' closed horizon (the ML watermark, ml.watermarks: the newest bar
--           already handed on as closed), i.e. a backfill into history a run may already have read. Bars appended
--           above the horizon (the live feed, a load of newer history) are not revisions.
-- Updates of a still-forming bar (the live feed upserts the current minute several times) are not recorded.
-- Triggers named _050_: after the validation (_010_), before the trading (_100_) and ML (_200_) triggers, so the ML
-- watermark read here is the one before this statement.
-- The switch pgtrade.bar_revisions = 'off' (transaction-local, set by market.apply_retention) records nothing:
-- retention drops history on purpose, and copying every dropped bar here would undo what it frees.
-- TRUNCATE and TimescaleDB's drop_chunks fire no triggers and are not recorded.

-- UPDATE: statement-level with both transition tables (one pass per statement, as the other triggers on bars).
-- The live feed's forming-bar update is the hot path: one look at the statement's old rows (none is closed) and
-- nothing else. Measured (the function's self time in pg_stat_user_functions, 2,000 single-bar updates, three
-- runs): 32-41 us per statement, beside 70-110 us for the validation trigger and 57-95 us for the ML one. The
-- feed's clock is taken from the clock rule ml.feed_now() wraps, trading.account_clock (a SQL function that can be
-- inlined; ml.feed_now() pins its search_path and cannot). A key moved by an UPDATE is recorded when the bar it
-- moved from was closed (as the delete of it there, and an insert where it lands at or below the closed horizon);
-- moving a forming bar is not.
CREATE OR REPLACE FUNCTION market.tg_bars__record_revisions_on_update()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _now timestamptz;
BEGIN
  IF current_setting('pgtrade.bar_revisions', true) = 'off' THEN
    RETURN NULL;
  END IF;
  _now := trading.account_clock('wall', NULL);  -- the feed's clock (ml.feed_now)
  IF NOT EXISTS (SELECT FROM old_bars o JOIN market.intervals iv ON iv.code = o.interval WHERE o.ts + iv.step <= _now) THEN
    RETURN NULL;
  END IF;
  PERFORM pg_catalog.pg_advisory_xact_lock_shared(market.bar_revisions_lock_key());
  INSERT INTO market.bar_revisions (symbol, "interval", ts, kind, open, high, low, close, volume, source)
  SELECT x.symbol, x.interval, x.ts, x.kind, x.open, x.high, x.low, x.close, x.volume, x.source
  FROM (
    -- closed bars whose values changed (update) or whose key moved away (delete)
    SELECT o.symbol, o.interval, o.ts, CASE WHEN n.ts IS NULL THEN 'delete' ELSE 'update' END AS kind,
           o.open, o.high, o.low, o.close, o.volume, o.source
    FROM old_bars o
    JOIN market.intervals iv ON iv.code = o.interval
    LEFT JOIN new_bars n ON n.symbol = o.symbol AND n.interval = o.interval AND n.ts = o.ts
    WHERE o.ts + iv.step <= _now
      AND (n.ts IS NULL
           OR (n.open, n.high, n.low, n.close, n.volume) IS DISTINCT FROM (o.open, o.high, o.low, o.close, o.volume))
    UNION ALL
    -- a key moved onto history at or below the closed horizon (as an insert there)
    SELECT n.symbol, n.interval, n.ts, 'insert', NULL, NULL, NULL, NULL, NULL, NULL
    FROM new_bars n
    JOIN ml.watermarks w ON w.symbol = n.symbol AND w."interval" = n.interval
    WHERE n.ts <= w.ts
      AND NOT EXISTS (SELECT FROM old_bars o WHERE o.symbol = n.symbol AND o.interval = n.interval AND o.ts = n.ts)
  ) x
  ORDER BY x.symbol, x.interval, x.ts;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION market.tg_bars__record_revisions_on_update IS
  'Statement trigger on market.bars: record the old values of every closed bar an UPDATE changed (market.bar_revisions, kind update).';

-- INSERT (and COPY, and an upsert's insert branch): bars at or below their series' closed horizon. The check is
-- per series (the statement's lowest bar against the watermark), so a load appending newer bars costs one
-- aggregate over its rows and one watermark probe per series.
CREATE OR REPLACE FUNCTION market.tg_bars__record_revisions_on_insert()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF current_setting('pgtrade.bar_revisions', true) = 'off' THEN
    RETURN NULL;
  END IF;
  IF NOT EXISTS (SELECT FROM (SELECT n.symbol, n.interval, min(n.ts) AS lo FROM new_bars n GROUP BY n.symbol, n.interval) s
                 JOIN ml.watermarks w ON w.symbol = s.symbol AND w."interval" = s.interval
                 WHERE s.lo <= w.ts) THEN
    RETURN NULL;
  END IF;
  PERFORM pg_catalog.pg_advisory_xact_lock_shared(market.bar_revisions_lock_key());
  INSERT INTO market.bar_revisions (symbol, "interval", ts, kind)
  SELECT n.symbol, n.interval, n.ts, 'insert'
  FROM new_bars n
  JOIN ml.watermarks w ON w.symbol = n.symbol AND w."interval" = n.interval
  WHERE n.ts <= w.ts
  ORDER BY n.symbol, n.interval, n.ts;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION market.tg_bars__record_revisions_on_insert IS
  'Statement trigger on market.bars: record bars inserted at or below their series'' closed horizon (ml.watermarks) as market.bar_revisions of kind insert (a backfill into history).';

-- DELETE: row-level, because TimescaleDB refuses transition tables on DELETE triggers of a hypertable
-- ("DELETE triggers with transition tables not supported", TimescaleDB 2.28.3). Deleting bars is rare (corrections;
-- retention switches this off).
CREATE OR REPLACE FUNCTION market.tg_bars__record_revisions_on_delete()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF current_setting('pgtrade.bar_revisions', true) = 'off' THEN
    RETURN NULL;
  END IF;
  IF OLD.ts + (SELECT iv.step FROM market.intervals iv WHERE iv.code = OLD.interval)
     <= trading.account_clock('wall', NULL) THEN
    PERFORM pg_catalog.pg_advisory_xact_lock_shared(market.bar_revisions_lock_key());
    INSERT INTO market.bar_revisions (symbol, "interval", ts, kind, open, high, low, close, volume, source)
    VALUES (OLD.symbol, OLD.interval, OLD.ts, 'delete', OLD.open, OLD.high, OLD.low, OLD.close, OLD.volume, OLD.source);
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION market.tg_bars__record_revisions_on_delete IS
  'Row trigger on market.bars: record a deleted closed bar with its values (market.bar_revisions, kind delete).';

CREATE OR REPLACE TRIGGER _050_revisions_on_update
  AFTER UPDATE ON market.bars REFERENCING OLD TABLE AS old_bars NEW TABLE AS new_bars
  FOR EACH STATEMENT EXECUTE FUNCTION market.tg_bars__record_revisions_on_update();
CREATE OR REPLACE TRIGGER _050_revisions_on_insert
  AFTER INSERT ON market.bars REFERENCING NEW TABLE AS new_bars
  FOR EACH STATEMENT EXECUTE FUNCTION market.tg_bars__record_revisions_on_insert();
CREATE OR REPLACE TRIGGER _050_revisions_on_delete
  AFTER DELETE ON market.bars
  FOR EACH ROW EXECUTE FUNCTION market.tg_bars__record_revisions_on_delete();
