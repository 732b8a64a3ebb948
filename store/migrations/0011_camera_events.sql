-- A camera's events keep where their pictures are (the video platform's URLs, or a
-- picture carried in the push, by digest), and a camera's recent events are listed in
-- its device view.
ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS pictures text[] NOT NULL DEFAULT '{}';
CREATE INDEX IF NOT EXISTS anomalies_camera ON anomalies (city, camera_id, ts DESC)
    WHERE camera_id IS NOT NULL;

-- A camera behind an NVR is named by the NVR's MAC address and its channel ("mac/33").
ALTER TABLE devices DROP CONSTRAINT IF EXISTS devices_platform_id_check;
ALTER TABLE devices ADD CONSTRAINT devices_platform_id_check
    CHECK (platform_id ~ '^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$');
