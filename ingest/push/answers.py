"""What the push endpoint answers: an :class:`Answer`, or a request :class:`Refused` whole."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Answer:
    """A status and a JSON body, or a plain-text body where a platform wants text back
    (OneNET's URL check)."""

    status: int
    body: dict[str, Any] | str
    headers: Mapping[str, str] = field(default_factory=dict)


class Refused(Exception):
    """The request is refused whole: ``status`` with ``reason`` and a ``detail``."""

    def __init__(
        self, status: int, reason: str, detail: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail
        self.headers = dict(headers or {})


def unavailable(detail: str) -> Refused:
    """Refused for now: Kafka did not take the records (retry the same request)."""
    return Refused(503, "unavailable", detail, {"Retry-After": "5"})
