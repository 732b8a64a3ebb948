"""Errors of the ingest stage.

IngestError
├── PayloadError      a payload that cannot become records; carries a reason code
└── TransportError    MQTT or Kafka could not be reached or refused us
"""

from __future__ import annotations


class IngestError(Exception):
    """Base of the ingest stage's errors."""


class PayloadError(IngestError):
    """A payload that cannot become records. ``reason`` is a stable code for metrics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class TransportError(IngestError):
    """MQTT or Kafka could not be reached or refused the request."""
