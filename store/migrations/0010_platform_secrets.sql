-- Platforms that sign their pushes with a secret of their own: OneNET's token (set in its
-- console, generated here) and, in its encrypted mode, the AES key its console generated.
-- Both are kept, like the HMAC secrets, since every push is verified (and decrypted) with
-- them.
ALTER TABLE push_sources ADD COLUMN IF NOT EXISTS platform_secret text;
ALTER TABLE push_sources ADD COLUMN IF NOT EXISTS aes_key text;

-- The device list finds a device by the start of the id its platform knows it by.
CREATE INDEX IF NOT EXISTS devices_platform_id_prefix
    ON devices (city, lower(platform_id) text_pattern_ops);
