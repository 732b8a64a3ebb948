-- Continuous aggregates refresh themselves and are real-time (materialized_only off), so
-- every bucket counts as materialized: the queries shared with the plain path then read
-- the aggregates alone.
CREATE TABLE IF NOT EXISTS rollup_watermark (
    singleton          boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    materialized_until timestamptz NOT NULL
);
INSERT INTO rollup_watermark (materialized_until) VALUES ('infinity') ON CONFLICT DO NOTHING;
