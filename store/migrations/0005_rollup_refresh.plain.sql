-- Rollups on the plain path are refreshed by a job, the way continuous aggregates are.
-- Every batch of readings logs the time range it covered, per city, in rollup_pending;
-- the job recomputes the 1-minute and 1-hour buckets of those ranges from the readings
-- up to a watermark a minute behind the clock, and moves the watermark on. Queries take
-- buckets before the watermark from the rollup tables and aggregate the readings after
-- it, so answers are complete at any moment (TimescaleDB's real-time aggregates).
CREATE TABLE IF NOT EXISTS rollup_pending (
    id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    city text        NOT NULL,
    lo   timestamptz NOT NULL,
    hi   timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS rollup_pending_lo ON rollup_pending (lo);

CREATE TABLE IF NOT EXISTS rollup_watermark (
    singleton          boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    materialized_until timestamptz NOT NULL
);
-- Until now the writer kept the rollups current, so they are complete up to this minute;
-- with no readings yet, nothing is materialized.
INSERT INTO rollup_watermark (materialized_until)
SELECT CASE WHEN EXISTS (SELECT FROM readings) THEN date_trunc('minute', now())
            ELSE '-infinity' END
ON CONFLICT DO NOTHING;
