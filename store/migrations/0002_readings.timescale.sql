-- Readings on TimescaleDB 2.x: a hypertable with daily chunks, continuous aggregates
-- at 1 minute and 1 hour (hierarchical), compression and a default retention policy.
-- Same columns and rollup names as the plain-PostgreSQL path, so queries are shared.
CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE IF NOT EXISTS readings (
    city       text             NOT NULL,
    device_id  text             NOT NULL,
    metric     text             NOT NULL,
    ts         timestamptz      NOT NULL,
    value      double precision NOT NULL,
    unit       text             NOT NULL,
    quality    text[]           NOT NULL DEFAULT '{}',
    PRIMARY KEY (city, device_id, metric, ts)
);
SELECT create_hypertable('readings', by_range('ts', INTERVAL '1 day'), if_not_exists => TRUE);
CREATE INDEX IF NOT EXISTS readings_city_ts ON readings (city, ts);

CREATE MATERIALIZED VIEW IF NOT EXISTS readings_1m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 minute', ts) AS bucket, city, device_id, metric,
       min(value) AS min, max(value) AS max, sum(value) AS sum, count(*) AS count,
       max(ts) AS last_ts, last(value, ts) AS last
FROM readings
GROUP BY bucket, city, device_id, metric
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS readings_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', bucket) AS bucket, city, device_id, metric,
       min(min) AS min, max(max) AS max, sum(sum) AS sum, sum(count)::bigint AS count,
       max(last_ts) AS last_ts, last(last, last_ts) AS last
FROM readings_1m
GROUP BY time_bucket(INTERVAL '1 hour', bucket), city, device_id, metric
WITH NO DATA;

SELECT add_continuous_aggregate_policy('readings_1m', start_offset => INTERVAL '2 days',
    end_offset => INTERVAL '1 minute', schedule_interval => INTERVAL '1 minute',
    if_not_exists => TRUE);
SELECT add_continuous_aggregate_policy('readings_1h', start_offset => INTERVAL '7 days',
    end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '15 minutes',
    if_not_exists => TRUE);

ALTER TABLE readings SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'device_id, metric',
    timescaledb.compress_orderby = 'ts DESC');
SELECT add_compression_policy('readings', INTERVAL '7 days', if_not_exists => TRUE);
SELECT add_retention_policy('readings', INTERVAL '400 days', if_not_exists => TRUE);

-- The plain path's partition helpers exist here too, as no-ops, so callers need not care.
CREATE OR REPLACE FUNCTION cityops_ensure_partitions(first_day date, last_day date)
RETURNS integer LANGUAGE sql AS $$ SELECT 0 $$;
CREATE OR REPLACE FUNCTION cityops_drop_partitions_before(cutoff date)
RETURNS integer LANGUAGE sql AS $$
    SELECT count(*)::integer FROM drop_chunks('readings', older_than => cutoff::timestamptz)
$$;
