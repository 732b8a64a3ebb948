-- HTTPS push ingest: the sources (carrier IoT platforms, vendor clouds) of each city, with
-- the ingest key stored hashed and the HMAC secret the endpoint recomputes signatures
-- with; and which devices report by push, through which source.
CREATE TABLE IF NOT EXISTS push_sources (
    city        text             NOT NULL CHECK (city ~ '^\d{6}$'),
    name        text             NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,39}$'),
    key_id      text             NOT NULL UNIQUE,
    key_hash    text             NOT NULL,
    hmac_secret text             NOT NULL,
    vendor      text,
    rate_per_s  double precision NOT NULL CHECK (rate_per_s > 0),
    created_at  timestamptz      NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    PRIMARY KEY (city, name)
);

ALTER TABLE devices ADD COLUMN IF NOT EXISTS transport text NOT NULL DEFAULT 'mqtt'
    CHECK (transport IN ('mqtt', 'http'));
ALTER TABLE devices ADD COLUMN IF NOT EXISTS source text;
