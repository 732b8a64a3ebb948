-- Native connectors for the carrier IoT platforms and video platforms: a push source says
-- which platform it is; a source of a platform that does not sign its requests has a
-- random token in its URL (stored hashed) and, optionally, the networks its platform
-- pushes from. Devices are found by the platform's own id and by their IMEI.
ALTER TABLE push_sources ADD COLUMN IF NOT EXISTS platform text NOT NULL DEFAULT 'cityops'
    CHECK (platform IN ('cityops', 'ctwing', 'onenet', 'onenet-legacy', 'iotda', 'hik-isc',
                        'isapi'));
ALTER TABLE push_sources ADD COLUMN IF NOT EXISTS url_token_hash text;
ALTER TABLE push_sources ADD COLUMN IF NOT EXISTS networks cidr[] NOT NULL DEFAULT '{}';

ALTER TABLE devices ADD COLUMN IF NOT EXISTS platform_id text
    CHECK (platform_id ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$');
ALTER TABLE devices ADD COLUMN IF NOT EXISTS imei text CHECK (imei ~ '^[0-9]{15}$');
CREATE UNIQUE INDEX IF NOT EXISTS devices_platform_id
    ON devices (city, source, platform_id) WHERE platform_id IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS devices_imei ON devices (city, imei) WHERE imei IS NOT NULL;
CREATE INDEX IF NOT EXISTS devices_imei_prefix ON devices (city, imei text_pattern_ops);
