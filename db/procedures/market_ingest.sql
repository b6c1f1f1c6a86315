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
    WHERE s.problem IS NULL
      AND market.is_valid_symbol(upper(btrim(s.symbol)))
    ON CONFLICT ON CONSTRAINT instruments_pkey DO NOTHING;
  END IF;

  FOR _attempt IN 1..2 LOOP
    BEGIN
      RETURN QUERY
      WITH classified AS (
        SELECT s.seq, s.symbol AS raw_symbol, upper(btrim(s.symbol)) AS symbol, s.interval, s.ts,
               s.open, s.high, s.low, s.close, s.volume, s.raw,
               coalesce(
                 s.problem,
                 market.bar_problem(upper(btrim(s.symbol)), iv.step, s.ts, s.open, s.high, s.low, s.close, s.volume),
                 CASE WHEN ins.symbol IS NULL THEN 'unknown symbol' END,
                 CASE WHEN market.bar_in_future(s.ts, iv.step) THEN 'timestamp is in the future' END
               ) AS reason
        FROM pg_temp.bars_staging s
        LEFT JOIN market.intervals iv ON iv.code = s.interval
        LEFT JOIN market.instruments ins ON ins.symbol = upper(btrim(s.symbol))
      ), rejected_rows AS (
        INSERT INTO market.rejected_bars (source, reason, symbol, interval, ts, open, high, low, close, volume, raw)
        SELECT ingest_staged.source, c.reason, c.raw_symbol, c.interval, c.ts, c.open, c.high, c.low, c.close,
               c.volume, c.raw
        FROM classified c
        WHERE c.reason IS NOT NULL
        RETURNING rejected_bars.symbol
      ), upserted AS (
        INSERT INTO market.bars AS b (symbol, interval, ts, open, high, low, close, volume, source)
        SELECT c.symbol, c.interval, c.ts, c.open, c.high, c.low, c.close, c.volume, ingest_staged.source
        FROM classified c
        WHERE c.reason IS NULL
        ON CONFLICT ON CONSTRAINT bars_pkey DO UPDATE
          SET open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
              volume = excluded.volume, source = excluded.source, ingested_at = now()
          WHERE (b.open, b.high, b.low, b.close, b.volume)
                IS DISTINCT FROM (excluded.open, excluded.high, excluded.low, excluded.close, excluded.volume)
        RETURNING b.symbol, (b.xmax = 0) AS is_insert
      ), valid AS (
        SELECT c.symbol, count(*) AS n FROM classified c WHERE c.reason IS NULL GROUP BY c.symbol
      ), written AS (
        SELECT u.symbol, count(*) FILTER (WHERE u.is_insert) AS ins, count(*) FILTER (WHERE NOT u.is_insert) AS upd
        FROM upserted u GROUP BY u.symbol
      ), refused AS (
        SELECT upper(btrim(r.symbol)) AS symbol, count(*) AS n FROM rejected_rows r GROUP BY 1
      )
      SELECT k.symbol,
             coalesce(w.ins, 0),
             coalesce(w.upd, 0),
             coalesce(v.n, 0) - coalesce(w.ins, 0) - coalesce(w.upd, 0),
             coalesce(r.n, 0)
      FROM (SELECT valid.symbol FROM valid UNION SELECT refused.symbol FROM refused) k
      LEFT JOIN valid v ON v.symbol IS NOT DISTINCT FROM k.symbol
      LEFT JOIN written w ON w.symbol IS NOT DISTINCT FROM k.symbol
      LEFT JOIN refused r ON r.symbol IS NOT DISTINCT FROM k.symbol
      ORDER BY k.symbol;
      EXIT;
    EXCEPTION WHEN cardinality_violation THEN
      -- The same bar twice in one load: the later row wins, earlier ones are recorded as superseded.
      IF _attempt = 2 THEN
        RAISE;
      END IF;
      UPDATE pg_temp.bars_staging s
         SET problem = 'superseded by a later row for the same bar in this load'
       WHERE s.problem IS NULL
         AND EXISTS (SELECT 1 FROM pg_temp.bars_staging t
                     WHERE upper(btrim(t.symbol)) = upper(btrim(s.symbol)) AND t.interval = s.interval
                       AND t.ts = s.ts AND t.seq > s.seq AND t.problem IS NULL);
    END;
  END LOOP;
  TRUNCATE pg_temp.bars_staging;
END
$$;
COMMENT ON FUNCTION market.ingest_staged IS
  'Validate the staged bars (market.bar_problem), record rejects in market.rejected_bars, upsert the rest into market.bars (a changed bar replaces the old one; an identical one changes nothing). Returns counts per symbol.';
