"""The dead-letter record: what could not be ingested, with the raw bytes and a reason."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from lifeline.records import Record, UtcDatetime


class DeadLetter(Record):
    """A payload set aside with a reason a person can act on."""

    schema_name: ClassVar[str] = "cityops.deadletter"
    v: Literal[1] = 1
    mqtt_topic: str
    received_at: UtcDatetime
    reason: str = Field(description="stable reason code, e.g. bad_json, unknown_device")
    detail: str = Field(description="what was wrong and what to do about it")
    raw_b64: str = Field(description="the payload exactly as received, base64")
    size: int

    @classmethod
    def of(
        cls, topic: str, payload: bytes, received_at: datetime, reason: str, detail: str
    ) -> DeadLetter:
        return cls(
            mqtt_topic=topic,
            received_at=received_at,
            reason=reason,
            detail=detail,
            raw_b64=base64.b64encode(payload).decode(),
            size=len(payload),
        )

    @property
    def raw(self) -> bytes:
        return base64.b64decode(self.raw_b64)
