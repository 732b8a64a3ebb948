-- Anomalies, incidents, alerts with their audit trail, dead letters, retention per city.
CREATE TABLE IF NOT EXISTS anomalies (
    anomaly_id text PRIMARY KEY,
    city       text        NOT NULL,
    kind       text        NOT NULL,
    state      text        NOT NULL,
    device_id  text,
    camera_id  text,
    asset_id   text,
    grid_cell  text,
    lon        double precision,
    lat        double precision,
    ts         timestamptz NOT NULL,
    detector   text        NOT NULL,
    severity   text        NOT NULL CHECK (severity IN ('red', 'orange', 'yellow', 'blue')),
    score      double precision NOT NULL,
    evidence   jsonb       NOT NULL DEFAULT '[]',
    message    text        NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS anomalies_city_ts ON anomalies (city, ts DESC);
CREATE INDEX IF NOT EXISTS anomalies_grid ON anomalies (grid_cell, ts DESC);

CREATE TABLE IF NOT EXISTS incidents (
    incident_id text PRIMARY KEY,
    revision    integer     NOT NULL,
    city        text        NOT NULL,
    type        text        NOT NULL,
    severity    text        NOT NULL CHECK (severity IN ('red', 'orange', 'yellow', 'blue')),
    status      text        NOT NULL,
    title       text        NOT NULL DEFAULT '',
    anomaly_ids text[]      NOT NULL DEFAULT '{}',
    asset_ids   text[]      NOT NULL DEFAULT '{}',
    grid_cells  text[]      NOT NULL DEFAULT '{}',
    lon         double precision,
    lat         double precision,
    started_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    cleared_at  timestamptz
);
CREATE INDEX IF NOT EXISTS incidents_city_time ON incidents (city, updated_at DESC);
CREATE INDEX IF NOT EXISTS incidents_cells ON incidents USING gin (grid_cells);

CREATE TABLE IF NOT EXISTS alerts (
    alert_id        text PRIMARY KEY REFERENCES incidents (incident_id),
    city            text        NOT NULL,
    status          text        NOT NULL DEFAULT 'new' CHECK (status IN
        ('new', 'acknowledged', 'dispatched', 'on_site', 'resolved', 'closed', 'false_alarm')),
    assigned_dept   text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_city_status ON alerts (city, status);

CREATE TABLE IF NOT EXISTS alert_audit (
    id          bigserial PRIMARY KEY,
    alert_id    text        NOT NULL REFERENCES alerts (alert_id),
    from_status text,
    to_status   text        NOT NULL,
    actor       text        NOT NULL,
    note        text        NOT NULL DEFAULT '',
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS alert_audit_alert ON alert_audit (alert_id, at);

CREATE TABLE IF NOT EXISTS deadletters (
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    received_at     timestamptz NOT NULL,
    mqtt_topic      text        NOT NULL,
    reason          text        NOT NULL,
    detail          text        NOT NULL,
    raw             bytea       NOT NULL,
    PRIMARY KEY (kafka_partition, kafka_offset)
);
CREATE INDEX IF NOT EXISTS deadletters_reason_time ON deadletters (reason, received_at DESC);

CREATE TABLE IF NOT EXISTS retention (
    city      text PRIMARY KEY CHECK (city ~ '^\d{6}$'),
    keep_days integer NOT NULL CHECK (keep_days > 0)
);
