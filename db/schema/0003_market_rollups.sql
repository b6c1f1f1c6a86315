-- Continuous aggregates: 1-minute bars rolled up to 5m, 1h and 1d (hierarchically: 1h from 5m, 1d from 1h).
-- Created WITH NO DATA (a migration runs in a transaction); their refresh policies fill them, and real-time
-- aggregation (materialized_only = false) shows the freshest minutes at once.
-- `bars` counts the 1-minute bars behind each row, so a partial bucket is visible as such.

CREATE MATERIALIZED VIEW market.bars_5m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT symbol,
       time_bucket(interval '5 minutes', ts) AS ts,
       first(open, ts)  AS open,
       max(high)        AS high,
       min(low)         AS low,
       last(close, ts)  AS close,
       sum(volume)      AS volume,
       count(*)         AS bars
FROM market.bars
WHERE interval = '1m'
GROUP BY symbol, time_bucket(interval '5 minutes', ts)
WITH NO DATA;

CREATE MATERIALIZED VIEW market.bars_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT symbol,
       time_bucket(interval '1 hour', ts) AS ts,
       first(open, ts)  AS open,
       max(high)        AS high,
       min(low)         AS low,
       last(close, ts)  AS close,
       sum(volume)      AS volume,
       sum(bars)::bigint AS bars
FROM market.bars_5m
GROUP BY symbol, time_bucket(interval '1 hour', ts)
WITH NO DATA;

CREATE MATERIALIZED VIEW market.bars_1d
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT symbol,
       time_bucket(interval '1 day', ts) AS ts,
       first(open, ts)  AS open,
       max(high)        AS high,
       min(low)         AS low,
       last(close, ts)  AS close,
       sum(volume)      AS volume,
       sum(bars)::bigint AS bars
FROM market.bars_1h
GROUP BY symbol, time_bucket(interval '1 day', ts)
WITH NO DATA;

COMMENT ON VIEW market.bars_5m IS '5-minute bars rolled up from 1-minute bars (continuous aggregate, real-time).';
COMMENT ON VIEW market.bars_1h IS 'Hourly bars rolled up from market.bars_5m (continuous aggregate, real-time).';
COMMENT ON VIEW market.bars_1d IS 'Daily (UTC) bars rolled up from market.bars_1h (continuous aggregate, real-time).';

-- Policy windows: the last 3/7/35 days. A refresh walks its whole window bucket by bucket, and market.bars also
-- holds daily history that invalidates decades at once (an unbounded window took minutes per 20 years of 5-minute
-- buckets here), so the policies keep to recent time and loaders refresh the exact range of any 1-minute
-- backfill themselves (pgtrade.ingest.refresh_rollups). end_offset leaves the open bucket to real-time aggregation.
SELECT add_continuous_aggregate_policy('market.bars_5m', start_offset => interval '3 days',
                                       end_offset => interval '5 minutes', schedule_interval => interval '1 minute');
SELECT add_continuous_aggregate_policy('market.bars_1h', start_offset => interval '7 days',
                                       end_offset => interval '1 hour', schedule_interval => interval '5 minutes');
SELECT add_continuous_aggregate_policy('market.bars_1d', start_offset => interval '35 days',
                                       end_offset => interval '1 day', schedule_interval => interval '30 minutes');
