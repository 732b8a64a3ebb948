-- The device list finds a device by the start of its id or of its asset's id, in any case:
-- prefix searches on the lower-cased ids of one city.
CREATE INDEX IF NOT EXISTS devices_id_prefix
    ON devices (city, lower(device_id) text_pattern_ops);
CREATE INDEX IF NOT EXISTS devices_asset_prefix
    ON devices (city, lower(asset_id) text_pattern_ops);
