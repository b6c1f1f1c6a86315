-- Reading bars as of a data version (market.bar_revisions, migration 0027; written by the triggers of
-- db/triggers/market_bar_revisions.sql).
--
-- The bars as of version v: the current bars, except that every bar with a revision after v takes the old values
-- of its FIRST revision after v (what it held at v), and is left out when that revision is an insert (it was not
-- there at v). A bar deleted after v is thus restored, a bar corrected after v reads as it was, a bar backfilled
-- after v is absent.

-- The advisory lock that orders revisions against the reading of a version: every transaction that records a
-- revision holds it shared (from before its first revision id is drawn until it ends); market.data_version()
-- takes it exclusively for the instant of reading the newest id. So when a version v is read, every revision
-- with an id <= v has committed (or rolled back) and is visible to the reader's later statements, and every
-- revision committed later has an id > v. Without it, a correction that drew id 100 and commits after one that
-- drew id 101 could be missed by a reader who saw 101 as the newest (sequence order is not commit order).
CREATE OR REPLACE FUNCTION market.bar_revisions_lock_key()
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT 7213400027::bigint $$;
COMMENT ON FUNCTION market.bar_revisions_lock_key IS
  'The advisory lock key that orders bar revisions against market.data_version() (held shared by revising transactions, exclusively while a version is read).';

-- The current data version: the newest revision id (0 before the first revision). Exact under READ COMMITTED
-- (each statement sees what committed before it): the reader waits for revising transactions in flight.
CREATE OR REPLACE FUNCTION market.data_version()
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _v bigint;
BEGIN
  PERFORM pg_catalog.pg_advisory_lock(market.bar_revisions_lock_key());
  BEGIN
    SELECT coalesce(max(r.id), 0) INTO _v FROM market.bar_revisions r;
  EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM pg_catalog.pg_advisory_unlock(market.bar_revisions_lock_key());  -- a session lock outlives an error
    RAISE;
  END;
  PERFORM pg_catalog.pg_advisory_unlock(market.bar_revisions_lock_key());
  RETURN _v;
END
$$;
COMMENT ON FUNCTION market.data_version IS
  'The current data version: the newest market.bar_revisions id (0 when there is none), read after every revising transaction in flight has ended, so each revision committed later has a larger id.';

-- The query text of a bar read: the bars of `symbols` and `interval` in [start_ts, end_ts), plus up to `warmup`
-- bars per symbol before start_ts, as of data version `as_of` (NULL: the current bars). parts 'warmup' gives the
-- warmup bars alone. The times, symbols and version go in as literals: TimescaleDB then excludes chunks while
-- planning (a generic plan of the same query started up every chunk of the hypertable: 1.8 s for GOOG daily).
-- The as-of form is produced only when revisions after as_of exist for these series before end_ts (one index probe);
-- otherwise the current bars are the bars as of as_of, and the plain query (as fast as before versions) is used.
CREATE OR REPLACE FUNCTION internal.bars_query(symbols text[], "interval" text, start_ts timestamptz,
                                               end_ts timestamptz, warmup integer DEFAULT 0,
                                               as_of bigint DEFAULT NULL, parts text DEFAULT 'all')
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _w integer := greatest(coalesce(bars_query.warmup, 0), 0);
  _range text;
  _warm text;
BEGIN
  IF bars_query.parts NOT IN ('all', 'warmup') THEN
    RAISE EXCEPTION 'internal.bars_query: parts is all or warmup, not %', bars_query.parts USING ERRCODE = '22023';
  END IF;
  IF bars_query.as_of IS NULL OR NOT EXISTS (
       SELECT 1 FROM market.bar_revisions r
       WHERE r.symbol = ANY (bars_query.symbols) AND r."interval" = bars_query."interval"
         AND r.id > bars_query.as_of AND r.ts < bars_query.end_ts) THEN
    _range := format($q$
      SELECT b.symbol, b.interval, b.ts, b.open, b.high, b.low, b.close, b.volume
      FROM market.bars b
      WHERE b.symbol = ANY (%1$L::text[]) AND b.interval = %2$L
        AND b.ts >= %3$L::timestamptz AND b.ts < %4$L::timestamptz $q$,
      bars_query.symbols, bars_query."interval", bars_query.start_ts, bars_query.end_ts);
    _warm := format($q$
      SELECT x.symbol, x.interval, x.ts, x.open, x.high, x.low, x.close, x.volume
      FROM unnest(%1$L::text[]) s(symbol)
      CROSS JOIN LATERAL (
        SELECT b.symbol, b.interval, b.ts, b.open, b.high, b.low, b.close, b.volume
        FROM market.bars b
        WHERE b.symbol = s.symbol AND b.interval = %2$L AND b.ts < %3$L::timestamptz
        ORDER BY b.ts DESC
        LIMIT %4$s) x $q$,
      bars_query.symbols, bars_query."interval", bars_query.start_ts, _w);
    RETURN CASE WHEN bars_query.parts = 'warmup' THEN _warm
                WHEN _w > 0 THEN _warm || ' UNION ALL ' || _range
                ELSE _range END;
  END IF;
  -- as of the version: rev holds each revised bar's first revision after it (its values at the version)
  _range := format($q$
      SELECT b.symbol, b.interval, b.ts, b.open, b.high, b.low, b.close, b.volume
      FROM market.bars b
      WHERE b.symbol = ANY (%1$L::text[]) AND b.interval = %2$L
        AND b.ts >= %3$L::timestamptz AND b.ts < %4$L::timestamptz
        AND NOT EXISTS (SELECT FROM rev WHERE rev.symbol = b.symbol AND rev.ts = b.ts)
      UNION ALL
      SELECT rev.symbol, %2$L::text, rev.ts, rev.open, rev.high, rev.low, rev.close, rev.volume
      FROM rev WHERE rev.kind <> 'insert' AND rev.ts >= %3$L::timestamptz $q$,
    bars_query.symbols, bars_query."interval", bars_query.start_ts, bars_query.end_ts);
  -- the last w bars before start_ts as of the version: among the current ones, at most as many more than w as
  -- the symbol has revised bars there can be left out
  _warm := format($q$
      SELECT x.symbol, x.interval, x.ts, x.open, x.high, x.low, x.close, x.volume
      FROM unnest(%1$L::text[]) s(symbol)
      CROSS JOIN LATERAL (
        SELECT y.symbol, y.interval, y.ts, y.open, y.high, y.low, y.close, y.volume
        FROM (
          SELECT c.symbol, c.interval, c.ts, c.open, c.high, c.low, c.close, c.volume
          FROM (SELECT b.symbol, b.interval, b.ts, b.open, b.high, b.low, b.close, b.volume
                FROM market.bars b
                WHERE b.symbol = s.symbol AND b.interval = %2$L AND b.ts < %3$L::timestamptz
                ORDER BY b.ts DESC
                LIMIT %4$s + (SELECT count(*) FROM rev WHERE rev.symbol = s.symbol AND rev.ts < %3$L::timestamptz)) c
          WHERE NOT EXISTS (SELECT FROM rev WHERE rev.symbol = c.symbol AND rev.ts = c.ts)
          UNION ALL
          SELECT rev.symbol, %2$L::text, rev.ts, rev.open, rev.high, rev.low, rev.close, rev.volume
          FROM rev WHERE rev.symbol = s.symbol AND rev.kind <> 'insert' AND rev.ts < %3$L::timestamptz
        ) y
        ORDER BY y.ts DESC
        LIMIT %4$s) x $q$,
    bars_query.symbols, bars_query."interval", bars_query.start_ts, _w);
  RETURN format($q$
      WITH rev AS MATERIALIZED (
        SELECT DISTINCT ON (r.symbol, r.ts) r.symbol, r.ts, r.kind, r.open, r.high, r.low, r.close, r.volume
        FROM market.bar_revisions r
        WHERE r.symbol = ANY (%1$L::text[]) AND r."interval" = %2$L AND r.id > %3$s AND r.ts < %4$L::timestamptz
        ORDER BY r.symbol, r.ts, r.id
      ) $q$,
    bars_query.symbols, bars_query."interval", bars_query.as_of, bars_query.end_ts)
    || CASE WHEN bars_query.parts = 'warmup' THEN _warm
            WHEN _w > 0 THEN _warm || ' UNION ALL ' || _range
            ELSE _range END;
END
$$;
COMMENT ON FUNCTION internal.bars_query IS
  'Internal: the SQL text that reads the bars of symbols/interval in [start_ts, end_ts) plus up to warmup bars per symbol before start_ts (parts ''warmup'': those alone), as of data version as_of (NULL: current), with every value a literal (chunk exclusion at planning). backtest.bars and the run fingerprint execute it.';

-- The bars of some series as they were at a data version (for psql users and checks; backtests read through
-- backtest.bars, which does the same for a run).
CREATE OR REPLACE FUNCTION market.bars_as_of(symbols text[], "interval" text, start_ts timestamptz,
                                             end_ts timestamptz, version bigint)
RETURNS SETOF market.ohlcv
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RETURN QUERY EXECUTE internal.bars_query(bars_as_of.symbols, bars_as_of."interval", bars_as_of.start_ts,
                                           bars_as_of.end_ts, 0, bars_as_of.version);
END
$$;
COMMENT ON FUNCTION market.bars_as_of IS
  'The bars of symbols/interval in [start_ts, end_ts) as they were at data version `version` (a market.bar_revisions id; market.data_version() is the current one): corrected bars with their values then, deleted ones restored, later backfills left out.';
