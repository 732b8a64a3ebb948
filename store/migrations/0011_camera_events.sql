-- A camera's events keep where their pictures are (the video platform's URLs, or a
-- picture carried in the push, by digest), and a camera's recent events are listed in
-- its device view.
ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS pictures text[] NOT NULL DEFAULT '{}';
CREATE INDEX IF NOT EXISTS anomalies_camera ON anomalies (city, camera_id, ts DESC)
    WHERE camera_id IS NOT NULL;
