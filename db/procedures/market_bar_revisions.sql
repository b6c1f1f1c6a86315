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

-- Whether revisions after `version` exist for these series before end_ts: then a read as of `version` differs
-- from the current bars (one probe of the index on (symbol, interval, id); NULL version: false).
-- PL/pgSQL, not SQL: a SQL function that reads a table is not inlined and plans its query on every call.
CREATE OR REPLACE FUNCTION market.revised_since(symbols text[], "interval" text, end_ts timestamptz, version bigint)
RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RETURN revised_since.version IS NOT NULL AND EXISTS (
    SELECT 1 FROM market.bar_revisions r
    WHERE r.symbol = ANY (revised_since.symbols) AND r."interval" = revised_since."interval"
      AND r.id > revised_since.version AND r.ts < revised_since.end_ts);
END
$$;
COMMENT ON FUNCTION market.revised_since IS
  'Whether a bar of these series before end_ts was revised after data version `version` (so the bars as of it differ from the current ones).';

-- The bars of `symbols` and `interval` in [start_ts, end_ts), plus up to `warmup` bars per symbol before start_ts
-- (parts 'warmup': those alone), as of data version `version` (NULL: the current bars). The times, symbols and
-- version go in as literals: TimescaleDB then excludes chunks while planning (a generic plan of the same query
-- started up every chunk of the hypertable: 1.8 s for GOOG daily). backtest.bars reads through this when
-- market.revised_since says the run's version differs from the current bars, and through its own plain query
-- otherwise.
CREATE OR REPLACE FUNCTION market.bars_as_of(symbols text[], "interval" text, start_ts timestamptz,
                                             end_ts timestamptz, version bigint, warmup integer DEFAULT 0,
                                             parts text DEFAULT 'all')
RETURNS SETOF market.ohlcv
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _w integer := greatest(coalesce(bars_as_of.warmup, 0), 0);
BEGIN
  IF bars_as_of.parts IS NULL OR bars_as_of.parts NOT IN ('all', 'warmup') THEN
    RAISE EXCEPTION 'parts is all or warmup, not %', coalesce(quote_literal(bars_as_of.parts), 'NULL')
      USING ERRCODE = '22023', HINT = 'all: the range and its warmup; warmup: the bars before start_ts alone';
  END IF;
  -- rev: each revised bar's first revision after the version (its values at the version; an insert: absent then)
  IF _w > 0 THEN
    -- the last w bars before start_ts as of the version: among the current ones, at most as many more than w as
    -- the symbol has revised bars there can be left out
    RETURN QUERY EXECUTE format($q$
      WITH rev AS MATERIALIZED (
        SELECT DISTINCT ON (r.symbol, r.ts) r.symbol, r.ts, r.kind, r.open, r.high, r.low, r.close, r.volume
        FROM market.bar_revisions r
        WHERE r.symbol = ANY (%1$L::text[]) AND r."interval" = %2$L AND r.id > %5$L::bigint AND r.ts < %3$L::timestamptz
        ORDER BY r.symbol, r.ts, r.id
      )
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
                LIMIT %4$s + (SELECT count(*) FROM rev WHERE rev.symbol = s.symbol)) c
          WHERE NOT EXISTS (SELECT FROM rev WHERE rev.symbol = c.symbol AND rev.ts = c.ts)
          UNION ALL
          SELECT rev.symbol, %2$L::text, rev.ts, rev.open, rev.high, rev.low, rev.close, rev.volume
          FROM rev WHERE rev.symbol = s.symbol AND rev.kind <> 'insert'
        ) y
        ORDER BY y.ts DESC
        LIMIT %4$s) x $q$,
      bars_as_of.symbols, bars_as_of."interval", bars_as_of.start_ts, _w, bars_as_of.version);
  END IF;
  IF bars_as_of.parts = 'warmup' THEN
    RETURN;
  END IF;
  RETURN QUERY EXECUTE format($q$
    WITH rev AS MATERIALIZED (
      SELECT DISTINCT ON (r.symbol, r.ts) r.symbol, r.ts, r.kind, r.open, r.high, r.low, r.close, r.volume
      FROM market.bar_revisions r
      WHERE r.symbol = ANY (%1$L::text[]) AND r."interval" = %2$L AND r.id > %5$L::bigint
        AND r.ts >= %3$L::timestamptz AND r.ts < %4$L::timestamptz
      ORDER BY r.symbol, r.ts, r.id
    )
    SELECT b.symbol, b.interval, b.ts, b.open, b.high, b.low, b.close, b.volume
    FROM market.bars b
    WHERE b.symbol = ANY (%1$L::text[]) AND b.interval = %2$L
      AND b.ts >= %3$L::timestamptz AND b.ts < %4$L::timestamptz
      AND NOT EXISTS (SELECT FROM rev WHERE rev.symbol = b.symbol AND rev.ts = b.ts)
    UNION ALL
    SELECT rev.symbol, %2$L::text, rev.ts, rev.open, rev.high, rev.low, rev.close, rev.volume
    FROM rev WHERE rev.kind <> 'insert' $q$,
    bars_as_of.symbols, bars_as_of."interval", bars_as_of.start_ts, bars_as_of.end_ts, bars_as_of.version);
END
$$;
COMMENT ON FUNCTION market.bars_as_of IS
  'The bars of symbols/interval in [start_ts, end_ts) (and up to warmup bars per symbol before start_ts; parts ''warmup'': those alone) as they were at data version `version` (a market.bar_revisions id; market.data_version() is the current one; NULL: the current bars): corrected bars with their values then, deleted ones restored, later backfills left out.';
