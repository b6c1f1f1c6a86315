-- The one ingest path. Every loader and the live feed: market.ingest_begin(), COPY rows into
-- pg_temp.bars_staging, then market.ingest_staged(source) in the same transaction.

CREATE OR REPLACE FUNCTION market.ingest_begin()
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
  IF to_regclass('pg_temp.bars_staging') IS NULL THEN
    CREATE TEMP TABLE bars_staging (
      seq      bigint GENERATED ALWAYS AS IDENTITY,
      symbol   text,
      interval text,
      ts       timestamptz,
      open     numeric,
      high     numeric,
      low      numeric,
      close    numeric,
      volume   numeric,
      raw      text,   -- the input line when the loader could not parse it
      problem  text    -- the loader's parse error, if any
    ) ON COMMIT DELETE ROWS;
  ELSE
    TRUNCATE pg_temp.bars_staging;
  END IF;
END
$$;
COMMENT ON FUNCTION market.ingest_begin IS
  'Prepare this session''s staging table (pg_temp.bars_staging) for a COPY; rows vanish at commit.';

CREATE OR REPLACE FUNCTION market.ingest_staged(
  source text,
  auto_register boolean DEFAULT false,
  asset_class text DEFAULT 'stock')
RETURNS TABLE (symbol text, inserted bigint, updated bigint, unchanged bigint, rejected bigint)
LANGUAGE plpgsql
AS $$
DECLARE
  _attempt int;
  _append_only boolean;
BEGIN
  IF ingest_staged.source IS NULL OR btrim(ingest_staged.source) = '' THEN
    RAISE EXCEPTION 'ingest needs a source name' USING ERRCODE = '22023',
      HINT = 'name where the bars came from, e.g. csv:/path/file.csv or yfinance';
  END IF;
  IF to_regclass('pg_temp.bars_staging') IS NULL THEN
    RAISE EXCEPTION 'nothing staged in this session' USING ERRCODE = '55000',
      HINT = 'call market.ingest_begin() and COPY rows into pg_temp.bars_staging first';
  END IF;

  IF ingest_staged.auto_register THEN
    INSERT INTO market.instruments AS i (symbol, asset_class, auto_registered)
    SELECT DISTINCT upper(btrim(s.symbol)), ingest_staged.asset_class, true
    FROM pg_temp.bars_staging s
    WHERE s.problem IS NULL AND market.is_valid_symbol(upper(btrim(s.symbol)))
    ON CONFLICT ON CONSTRAINT instruments_pkey DO NOTHING;
  END IF;

  -- Classify every staged row once: reason IS NULL means valid.
  DROP TABLE IF EXISTS pg_temp.bars_classified;
  CREATE TEMP TABLE bars_classified ON COMMIT DROP AS
  SELECT s.seq, s.symbol AS raw_symbol, n.symbol, s.interval, s.ts, s.open, s.high, s.low, s.close, s.volume, s.raw,
         coalesce(
           s.problem,
           CASE WHEN ins.symbol IS NULL THEN
             CASE WHEN coalesce(market.is_valid_symbol(n.symbol), false) THEN 'unknown symbol'
                  ELSE 'invalid symbol (1-32 characters of A-Z 0-9 . _ / = ^ -)' END
           END,
           market.bar_problem(iv.step, s.ts, s.open, s.high, s.low, s.close, s.volume),
           CASE WHEN s.ts > now() + iv.step THEN 'timestamp is in the future' END
         ) AS reason
  FROM pg_temp.bars_staging s
  CROSS JOIN LATERAL (SELECT upper(btrim(s.symbol)) AS symbol) n
  LEFT JOIN market.intervals iv ON iv.code = s.interval
  LEFT JOIN market.instruments ins ON ins.symbol = n.symbol;

  INSERT INTO market.rejected_bars (source, reason, symbol, interval, ts, open, high, low, close, volume, raw)
  SELECT ingest_staged.source, c.reason, c.raw_symbol, c.interval, c.ts, c.open, c.high, c.low, c.close, c.volume,
         c.raw
  FROM pg_temp.bars_classified c
  WHERE c.reason IS NOT NULL;

  -- Appending (no stored bar inside any staged series' time range) is the common case, for history and live
  -- bars alike: then a plain INSERT does, at about two thirds of the cost of the upsert. Anything else, or a
  -- concurrent load that races us, takes the upsert.
  SELECT NOT EXISTS (
    SELECT 1
    FROM (SELECT c.symbol, c.interval, min(c.ts) AS lo, max(c.ts) AS hi
          FROM pg_temp.bars_classified c WHERE c.reason IS NULL GROUP BY c.symbol, c.interval) r
    WHERE EXISTS (SELECT 1 FROM market.bars b
                  WHERE b.symbol = r.symbol AND b.interval = r.interval AND b.ts BETWEEN r.lo AND r.hi))
  INTO _append_only;

  -- The rows below are validated: the statement-level check on market.bars need not repeat it.
  PERFORM set_config('pgtrade.ingest_validated', 'on', true);
  FOR _attempt IN 1..3 LOOP
    BEGIN
      IF _append_only THEN
        INSERT INTO market.bars (symbol, interval, ts, open, high, low, close, volume, source)
        SELECT c.symbol, c.interval, c.ts, c.open, c.high, c.low, c.close, c.volume, ingest_staged.source
        FROM pg_temp.bars_classified c
        WHERE c.reason IS NULL;
        RETURN QUERY
          SELECT c.symbol, count(*) FILTER (WHERE c.reason IS NULL), 0::bigint, 0::bigint,
                 count(*) FILTER (WHERE c.reason IS NOT NULL)
          FROM pg_temp.bars_classified c GROUP BY c.symbol ORDER BY c.symbol;
      ELSE
        RETURN QUERY
        WITH upserted AS (
          INSERT INTO market.bars AS b (symbol, interval, ts, open, high, low, close, volume, source)
          SELECT c.symbol, c.interval, c.ts, c.open, c.high, c.low, c.close, c.volume, ingest_staged.source
          FROM pg_temp.bars_classified c
          WHERE c.reason IS NULL
          ON CONFLICT ON CONSTRAINT bars_pkey DO UPDATE
            SET open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
                volume = excluded.volume, source = excluded.source, ingested_at = now()
            WHERE (b.open, b.high, b.low, b.close, b.volume)
                  IS DISTINCT FROM (excluded.open, excluded.high, excluded.low, excluded.close, excluded.volume)
          RETURNING b.symbol, (b.xmax = 0) AS is_insert
        ), written AS (
          SELECT u.symbol, count(*) FILTER (WHERE u.is_insert) AS ins, count(*) FILTER (WHERE NOT u.is_insert) AS upd
          FROM upserted u GROUP BY u.symbol
        ), staged AS (
          SELECT c.symbol, count(*) FILTER (WHERE c.reason IS NULL) AS valid,
                 count(*) FILTER (WHERE c.reason IS NOT NULL) AS refused
          FROM pg_temp.bars_classified c GROUP BY c.symbol
        )
        SELECT k.symbol, coalesce(w.ins, 0), coalesce(w.upd, 0),
               k.valid - coalesce(w.ins, 0) - coalesce(w.upd, 0), k.refused
        FROM staged k LEFT JOIN written w ON w.symbol = k.symbol
        ORDER BY k.symbol;
      END IF;
      EXIT;
    EXCEPTION
      WHEN unique_violation THEN
        _append_only := false;  -- a concurrent load or a duplicate in this one: upsert instead
      WHEN cardinality_violation THEN
        -- The same bar twice in one load: the later row wins, earlier ones are recorded as superseded.
        IF _attempt = 3 THEN
          RAISE;
        END IF;
        UPDATE pg_temp.bars_classified c
           SET reason = 'superseded by a later row for the same bar in this load'
         WHERE c.reason IS NULL
           AND EXISTS (SELECT 1 FROM pg_temp.bars_classified t
                       WHERE t.symbol = c.symbol AND t.interval = c.interval AND t.ts = c.ts AND t.seq > c.seq
                         AND t.reason IS NULL);
        INSERT INTO market.rejected_bars (source, reason, symbol, interval, ts, open, high, low, close, volume)
        SELECT ingest_staged.source, c.reason, c.raw_symbol, c.interval, c.ts, c.open, c.high, c.low, c.close,
               c.volume
        FROM pg_temp.bars_classified c
        WHERE c.reason = 'superseded by a later row for the same bar in this load';
    END;
  END LOOP;
  PERFORM set_config('pgtrade.ingest_validated', 'off', true);
  TRUNCATE pg_temp.bars_staging;
  DROP TABLE pg_temp.bars_classified;
END
$$;
COMMENT ON FUNCTION market.ingest_staged IS
  'Validate the staged bars (market.bar_problem, known symbols), record rejects in market.rejected_bars, write the rest into market.bars (a changed bar replaces the old one; an identical one changes nothing). Returns counts per symbol.';
