-- Devices and cameras of the pilot cities, as onboarded. MQTT credentials are stored
-- only as the broker's own PBKDF2 hashes.
CREATE TABLE IF NOT EXISTS devices (
    city          text        NOT NULL CHECK (city ~ '^\d{6}$'),
    device_id     text        NOT NULL,
    family        text        NOT NULL CHECK (family IN ('sensors', 'cameras')),
    kind          text        NOT NULL,
    metrics       jsonb       NOT NULL DEFAULT '{}',
    vendor        text,
    asset_id      text,
    owner_dept    text        NOT NULL,
    lon           double precision NOT NULL,
    lat           double precision NOT NULL,
    grid_code     text CHECK (grid_code IS NULL OR grid_code ~ '^\d{15}$'),
    mqtt_username text        NOT NULL UNIQUE,
    mqtt_password_hash text   NOT NULL,
    onboarded_at  timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (city, device_id)
);
CREATE INDEX IF NOT EXISTS devices_grid ON devices (grid_code);
CREATE INDEX IF NOT EXISTS devices_asset ON devices (asset_id);
