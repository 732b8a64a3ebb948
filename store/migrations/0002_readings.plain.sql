-- Readings on plain PostgreSQL: native daily range partitions, BRIN on time, and
-- rollup tables (1 minute, 1 hour) that the writer keeps current. The primary key
-- makes every write idempotent: replays and retries never duplicate a reading.
CREATE TABLE IF NOT EXISTS readings (
    city       text             NOT NULL,
    device_id  text             NOT NULL,
    metric     text             NOT NULL,
    ts         timestamptz      NOT NULL,
    value      double precision NOT NULL,
    unit       text             NOT NULL,
    quality    text[]           NOT NULL DEFAULT '{}',
    PRIMARY KEY (city, device_id, metric, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX IF NOT EXISTS readings_ts_brin ON readings USING brin (ts);

CREATE TABLE IF NOT EXISTS readings_1m (
    bucket     timestamptz      NOT NULL,
    city       text             NOT NULL,
    device_id  text             NOT NULL,
    metric     text             NOT NULL,
    min        double precision NOT NULL,
    max        double precision NOT NULL,
    sum        double precision NOT NULL,
    count      bigint           NOT NULL,
    last_ts    timestamptz      NOT NULL,
    last       double precision NOT NULL,
    PRIMARY KEY (city, device_id, metric, bucket)
);
CREATE INDEX IF NOT EXISTS readings_1m_bucket_brin ON readings_1m USING brin (bucket);
CREATE TABLE IF NOT EXISTS readings_1h (LIKE readings_1m INCLUDING ALL);

-- Daily partitions named readings_pYYYYMMDD, created for every day in [first, last].
CREATE OR REPLACE FUNCTION cityops_ensure_partitions(first_day date, last_day date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    d date := first_day;
    made integer := 0;
    name text;
BEGIN
    WHILE d <= last_day LOOP
        name := format('readings_p%s', to_char(d, 'YYYYMMDD'));
        IF to_regclass(name) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE IF NOT EXISTS %I PARTITION OF readings FOR VALUES FROM (%L) TO (%L)',
                name, d::timestamptz, (d + 1)::timestamptz);
            made := made + 1;
        END IF;
        d := d + 1;
    END LOOP;
    RETURN made;
END $$;

-- Retention: drop whole partitions older than keep_days.
CREATE OR REPLACE FUNCTION cityops_drop_partitions_before(cutoff date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    part record;
    dropped integer := 0;
BEGIN
    FOR part IN
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'readings'::regclass AND c.relname ~ '^readings_p\d{8}$'
          AND to_date(substring(c.relname from 11), 'YYYYMMDD') < cutoff
    LOOP
        EXECUTE format('DROP TABLE %I', part.relname);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END $$;

SELECT cityops_ensure_partitions(current_date - 7, current_date + 7);
