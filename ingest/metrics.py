"""Prometheus metrics of the ingest bridge."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter(
    "cityops_ingest_messages_total", "MQTT messages handled by the bridge", ["result"]
)
RECORDS = Counter("cityops_ingest_records_total", "Records produced to Kafka", ["topic"])
DEADLETTERS = Counter(
    "cityops_ingest_deadletters_total", "Payloads set aside in cityops.deadletter", ["reason"]
)
KAFKA_RETRIES = Counter("cityops_ingest_kafka_retries_total", "Kafka produce retries")
INFLIGHT = Gauge("cityops_ingest_inflight", "MQTT messages received but not yet acknowledged")
REGISTRY = Gauge("cityops_ingest_registry_devices", "Devices in the bridge's registry")
BATCH_SECONDS = Histogram(
    "cityops_ingest_batch_seconds",
    "Decode + produce + ack time of one batch",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
READINGS = Counter(
    "cityops_ingest_readings_total", "Readings produced to cityops.readings (in batch records)"
)
