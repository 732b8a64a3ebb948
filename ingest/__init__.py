"""Ingest: MQTT accounts and onboarding, payload adapters, the MQTT → Kafka bridge."""
