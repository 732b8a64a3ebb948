-- The cockpit: API keys, device status, the incident feed, alert escalation,
-- dispatcher webhooks with their delivery log, and the CIM layers of each city.
CREATE TABLE IF NOT EXISTS api_keys (
    key_id      text PRIMARY KEY,
    secret_hash text        NOT NULL,
    name        text        NOT NULL,
    role        text        NOT NULL CHECK (role IN
        ('viewer', 'dispatcher', 'city_admin', 'platform_admin')),
    cities      text[]      NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE IF NOT EXISTS device_status (
    city        text        NOT NULL,
    device_id   text        NOT NULL,
    status      text        NOT NULL CHECK (status IN ('online', 'offline', 'heartbeat')),
    ts          timestamptz NOT NULL,
    battery_pct double precision,
    rssi_dbm    double precision,
    PRIMARY KEY (city, device_id)
);

-- Every new revision of an incident and every alert change, in commit order: writers
-- take the feed lock before inserting, so a reader that has seen id N has seen all < N.
CREATE TABLE IF NOT EXISTS incident_feed (
    id          bigserial PRIMARY KEY,
    city        text        NOT NULL,
    incident_id text        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('incident', 'alert')),
    revision    integer     NOT NULL DEFAULT 0,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS incident_feed_revision
    ON incident_feed (incident_id, revision) WHERE kind = 'incident';
CREATE INDEX IF NOT EXISTS incident_feed_city ON incident_feed (city, id);

ALTER TABLE alerts ADD COLUMN IF NOT EXISTS escalation_level integer NOT NULL DEFAULT 0;
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS acknowledged_at timestamptz;
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS resolved_at timestamptz;

CREATE TABLE IF NOT EXISTS webhooks (
    webhook_id  bigserial PRIMARY KEY,
    city        text        NOT NULL CHECK (city ~ '^\d{6}$'),
    url         text        NOT NULL,
    secret      text        NOT NULL,
    name        text        NOT NULL DEFAULT '',
    active      boolean     NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS webhook_deliveries (
    delivery_id     bigserial PRIMARY KEY,
    webhook_id      bigint      NOT NULL REFERENCES webhooks (webhook_id) ON DELETE CASCADE,
    city            text        NOT NULL,
    alert_id        text        NOT NULL,
    feed_id         bigint      NOT NULL,
    state           text        NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     integer,
    last_error      text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    UNIQUE (webhook_id, feed_id)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due
    ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';

CREATE TABLE IF NOT EXISTS cim_features (
    city       text             NOT NULL CHECK (city ~ '^\d{6}$'),
    layer      text             NOT NULL CHECK (layer IN
        ('grid', 'pipes', 'assets', 'valves', 'pois', 'districts')),
    feature_id text             NOT NULL,
    geometry   jsonb            NOT NULL,
    props      jsonb            NOT NULL DEFAULT '{}',
    minx       double precision NOT NULL,
    miny       double precision NOT NULL,
    maxx       double precision NOT NULL,
    maxy       double precision NOT NULL,
    PRIMARY KEY (city, layer, feature_id)
);
