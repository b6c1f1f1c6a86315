-- Bring the continuous aggregates (market.bars_5m -> bars_1h -> bars_1d, hierarchical) up to date over the range
-- of a 1-minute load. The ingest path (pgtrade.ingest.ingest) calls it after its last batch has committed.
--
-- What made this slow before (measured on 200,000 minute bars, about two years of one symbol): TimescaleDB 2.28's
-- refresh_continuous_aggregate splits a manual refresh into batches of 10 buckets by default, so two years of
-- 5-minute buckets became ~17,000 small materializations with a transaction, a DELETE, an INSERT and an
-- invalidation-log entry each (40 s for bars_5m alone; 0.43 s as one batch). Here every aggregate is refreshed in
-- one batch (buckets_per_batch 0), over exactly the buckets the range touches (aligned to each aggregate's own
-- width, not widened to whole days), lowest level first, so each level reads freshly materialized rows of the
-- level below. The bucket still forming at now() is left to real-time aggregation (as the policies' end_offset
-- does): materializing it would freeze it until the next policy run.
-- `force` re-materializes the range whatever the invalidation logs say: TimescaleDB 2.28.3 logs no invalidation for
-- rows COPYed into the hypertable (checked: 3,540 minute bars COPYed below the invalidation threshold left
-- continuous_aggs_hypertable_invalidation_log empty and a refresh found nothing to do), so after the ingest path's
-- direct COPY only a forced refresh brings the rollups up to date.
DROP PROCEDURE IF EXISTS market.refresh_rollups(timestamptz, timestamptz);  -- its first version, before `force`
CREATE OR REPLACE PROCEDURE market.refresh_rollups(from_ts timestamptz, to_ts timestamptz, force boolean DEFAULT false)
LANGUAGE plpgsql
AS $$
DECLARE
  _r record;
  _lo timestamptz;
  _hi timestamptz;
BEGIN
  IF refresh_rollups.from_ts IS NULL OR refresh_rollups.to_ts IS NULL
     OR refresh_rollups.to_ts < refresh_rollups.from_ts THEN
    RAISE EXCEPTION 'refresh_rollups needs a range with from_ts <= to_ts'
      USING ERRCODE = '22023', HINT = 'pass the first and last ts of the 1-minute bars written';
  END IF;
  FOR _r IN
    SELECT iv.step, format('%I.%I', ca.view_schema, ca.view_name)::regclass AS view
    FROM market.intervals iv
    JOIN timescaledb_information.continuous_aggregates ca
      ON ca.view_schema = 'market' AND ca.view_name = 'bars_' || iv.code
    ORDER BY iv.step
  LOOP
    _lo := time_bucket(_r.step, refresh_rollups.from_ts);
    _hi := least(time_bucket(_r.step, refresh_rollups.to_ts) + _r.step, time_bucket(_r.step, now()));
    IF _hi > _lo THEN
      CALL refresh_continuous_aggregate(_r.view, _lo, _hi, force => refresh_rollups.force,
                                        options => '{"buckets_per_batch": 0}');
    END IF;
  END LOOP;
END
$$;
COMMENT ON PROCEDURE market.refresh_rollups(timestamptz, timestamptz, boolean) IS
  'Materialize the continuous aggregates (bars_5m, bars_1h, bars_1d, in that order) over the buckets that [from_ts, to_ts] touches, each in one batch, leaving the still-forming bucket to real-time aggregation; force => true recomputes them whatever the invalidation logs say (needed after a COPY into market.bars). Runs outside a transaction block only (CALL in autocommit).';

-- The span the rollups must be refreshed over after a load: first and last ts of the valid 1-minute bars staged in
-- this session (the continuous aggregates are built from market.rollup_interval() alone). NULLs when
-- none. The ingest path reads it before market.ingest_staged() (which empties the staging table).
CREATE OR REPLACE FUNCTION market.rollup_interval()
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT '1m'::text $$;
COMMENT ON FUNCTION market.rollup_interval IS
  'The interval the continuous aggregates are built from (db/schema/0003): loads of it need market.refresh_rollups.';

CREATE OR REPLACE FUNCTION market.staged_rollup_span(OUT first_ts timestamptz, OUT last_ts timestamptz)
LANGUAGE sql STABLE
AS $$
  SELECT min(s.ts), max(s.ts) FROM pg_temp.bars_staging s
  WHERE s.interval = market.rollup_interval() AND s.problem IS NULL
$$;
COMMENT ON FUNCTION market.staged_rollup_span IS
  'First and last ts of the valid-looking 1-minute bars staged in this session (what market.refresh_rollups must cover after the load); NULLs when none.';
