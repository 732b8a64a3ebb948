"""What every platform connector does, in three steps: verify the request (a signature,
or the source's URL token and networks), parse it into platform messages (readings,
status changes, events, acknowledgements, each with the ids the platform names its
device by), and answer as the platform expects. The handler in between finds the
devices, decodes, dead-letters and produces, the same for every platform."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

from ingest.errors import PayloadError
from ingest.push.answers import Answer, Refused
from store.push_sources import PushSource

#: reading: values of the device's metrics (or a frame its vendor mapping unpacks);
#: status: online or offline; event: something the device reported of itself;
#: video: a video-analytics event of a camera (its platform's code, level and pictures);
#: ack: the platform's receipt of a command, or the end of an event (logged, nothing
#: stored).
Kind = Literal["reading", "status", "event", "video", "ack"]

#: ids a platform sends for "no value" (CTWing: ``""``, ``-1``, ``"undefined"``)
ABSENT = frozenset({"", "-1", "undefined", "null", "none"})


@dataclass(frozen=True, slots=True)
class Request:
    """A platform's HTTP request as the connector sees it."""

    method: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    #: the address the request came from (after a trusted proxy's forwarding headers)
    peer: str | None


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a push, in the platform's terms: which device (``refs``, the ids
    the platform names it by, its own id first), when, and what."""

    kind: Kind
    refs: tuple[str, ...]
    ts: datetime | None = None
    #: property or field name → value, as the platform sent them
    values: Mapping[str, Any] = field(default_factory=dict)
    #: the whole message, for a vendor mapping (a transparent device's frame) and for
    #: its dead letter
    raw: Mapping[str, Any] = field(default_factory=dict)
    status: Literal["online", "offline"] | None = None
    #: what the platform repeats when it sends the message again
    dedup: str | None = None
    #: what an event or acknowledgement was, for the log
    detail: str = ""


@dataclass
class Parsed:
    """A request's messages, and those of its parts that could not be read (with the
    part, for its dead letter)."""

    messages: list[Message] = field(default_factory=list)
    bad: list[tuple[Any, PayloadError]] = field(default_factory=list)


@dataclass(frozen=True)
class Outcome:
    """What became of a request's messages."""

    messages: int
    readings: int
    statuses: int
    duplicates: int
    dead_lettered: int
    errors: list[dict[str, Any]]

    def body(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "readings": self.readings,
            "statuses": self.statuses,
            "duplicates": self.duplicates,
            "dead_lettered": self.dead_lettered,
            "errors": self.errors,
        }


class Connector:
    """A platform's connector. Subclasses set ``platform`` and ``title`` and implement
    :meth:`parse`; a platform that signs its requests overrides :meth:`verify`."""

    platform: ClassVar[str]
    title: ClassVar[str]
    #: the name of the device's id in the platform's own terms, for error messages
    device_ref: ClassVar[str] = "device id"

    def verify(self, source: PushSource, request: Request) -> None:
        """Unsigned platforms: the source's URL token. (The source's networks are checked
        before, the same for every platform.)"""
        token = request.query.get("token", "")
        if not token or not source.token_matches(token):
            raise Refused(
                401,
                "bad_token",
                f"the URL's token is missing or wrong for source {source.name!r}; paste the "
                "URL `cityops push source create` printed into the platform's console",
            )

    def handshake(self, source: PushSource, request: Request) -> Answer | None:
        """The answer to a ``GET`` (a platform checking the URL), or None if the
        platform never sends one."""
        return None

    def parse(
        self, body: bytes, source: PushSource | None = None, content_type: str = ""
    ) -> Parsed:
        """The request's messages; ``source`` for what its platform shares with it (an
        AES key), ``content_type`` for a platform that posts several kinds of body.
        ``PayloadError`` when the body cannot be read at all."""
        raise NotImplementedError

    def answer(self, outcome: Outcome) -> Answer:
        """What the platform gets once the messages are in Kafka or dead-lettered:
        200, since a dead-lettered message would not be better the next time."""
        return Answer(200, outcome.body())


def present(value: Any) -> str | None:
    """A platform's id or field as text, or None where it sends a placeholder."""
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = str(value).strip()
    return None if text.lower() in ABSENT else text
