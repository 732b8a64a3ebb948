-- Readings: one row per device, metric and instant. The primary key makes every write
-- idempotent: replays and retries never duplicate a reading.
CREATE TABLE IF NOT EXISTS readings (
    city       text             NOT NULL,
    device_id  text             NOT NULL,
    metric     text             NOT NULL,
    ts         timestamptz      NOT NULL,
    value      double precision NOT NULL,
    unit       text             NOT NULL,
    quality    text[]           NOT NULL DEFAULT '{}',
    PRIMARY KEY (device_id, metric, ts)
);
CREATE INDEX IF NOT EXISTS readings_city_ts ON readings (city, ts);
