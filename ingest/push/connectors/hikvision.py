"""Hikvision's video platforms: iSecure Center's event subscription (``hik-isc``) and a
camera's (or NVR's) ISAPI alarm-server push (``isapi``).

**iSecure Center** (综合安防管理平台) posts ``{"method": "OnEventNotify", "params":
{"ability", "sendTime", "events": [...]}}`` to the URL its event subscription names.
Each event has ``eventId`` (repeated when iSecure Center sends it again), ``eventType``
(an integer code, assigned per deployment: the city's code table says what it is),
``srcIndex`` (the camera's index code) and ``srcType``, ``happenTime`` (ISO 8601, local
time when it has no offset), ``status`` (0 instant, 1 start, 2 stop, 3 pulse, 4 linkage
update, 5 picture uploaded later), ``eventLvl`` (0 none, 1 low, 2 medium, 3 high) and
``data`` (the analysis, with picture URLs such as ``imageUrl`` or ``visiblePicUrl``).
A linkage event (``srcType`` ``eventRule``) names its cameras in ``eventDetails[]``,
each with its own ``srcIndex`` and ``eventType``.

**ISAPI** posts an ``EventNotificationAlert``: XML (namespace ``isapi.org`` or
``hikvision.com``), JSON on newer firmware, or either as one part of a
``multipart/form-data`` body whose other parts are the event's pictures. It names the
camera by ``macAddress``, ``ipAddress`` and ``channelID``; ``eventType`` is a word
(``fielddetection``, ``smokeDetection``, ``duration`` with the ``relationEvent`` …);
``eventState`` ``active`` starts an event, ``inactive`` ends it; ``heartBeat`` only says
the camera is alive.

Neither signs its pushes: the source's URL token and networks stand in.
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import defusedxml.ElementTree as safe_xml
from defusedxml import DefusedXmlException

from ingest.adapters import parse_time
from ingest.decode import parse_json
from ingest.errors import PayloadError
from ingest.push.connectors.base import Connector, Message, Parsed, present
from store.push_sources import PushSource

#: China Standard Time: iSecure Center's and the cameras' clocks where a time has no offset
CST = timezone(timedelta(hours=8))
#: iSecure Center event states that start or are an event; the others (2 stop, 4 linkage
#: update, 5 picture uploaded later) are about one already received
EVENT_STATES = frozenset({0, 1, 3})
#: iSecure Center's event level → GB/T 28181 priority (1 highest)
LEVEL_PRIORITY = {3: 2, 2: 3, 1: 4}
#: keys under which the platforms give a picture's address
PICTURE_KEYS = frozenset(
    {"imageurl", "visiblepicurl", "picuri", "picurl", "pictureurl", "bkgurl", "imageuri"}
)
MAX_PICTURES = 8


def _pictures(data: Any, depth: int = 0) -> Iterator[str]:
    """Picture addresses anywhere in an event's data."""
    if depth > 12:
        return
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, str) and str(key).lower() in PICTURE_KEYS and value.strip():
                yield value.strip()[:2048]
            elif isinstance(value, dict | list):
                yield from _pictures(value, depth + 1)
    elif isinstance(data, list):
        for item in data:
            yield from _pictures(item, depth + 1)


def _first(items: Iterator[str], most: int = MAX_PICTURES) -> tuple[str, ...]:
    out: list[str] = []
    for item in items:
        if item not in out:
            out.append(item)
        if len(out) == most:
            break
    return tuple(out)


def _code(value: Any) -> str | None:
    """An event code as text: an integer, or digits in a string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    text = present(value)
    return text if text is not None and len(text) <= 64 else None


class ISecureCenter(Connector):
    platform = "hik-isc"
    title = "Hikvision iSecure Center"
    device_ref = "iSecure Center camera index code"

    def parse(
        self, body: bytes, source: PushSource | None = None, content_type: str = ""
    ) -> Parsed:
        data = _json(body, "an iSecure Center notification")
        if str(data.get("method", "")).lower() != "oneventnotify":
            raise PayloadError(
                "bad_shape",
                f"method {str(data.get('method'))[:40]!r} is not OnEventNotify; subscribe the "
                "URL to events (event subscription by event types)",
            )
        params = data.get("params")
        events = params.get("events") if isinstance(params, dict) else None
        if not isinstance(events, list):
            raise PayloadError("bad_shape", "params.events is a list of events")
        out = Parsed()
        for event in events:
            try:
                out.messages.extend(_isc_event(event))
            except PayloadError as exc:
                out.bad.append((event, exc))
        return out


def _isc_event(event: Any) -> list[Message]:
    if not isinstance(event, dict):
        raise PayloadError("bad_shape", "an event is a JSON object")
    event_id = present(event.get("eventId"))
    if event_id is None or len(event_id) > 128:
        raise PayloadError("bad_shape", "an event needs its eventId")
    ts = _isc_time(event.get("happenTime"))
    state = event.get("status", 0)
    level = event.get("eventLvl")
    details = event.get("eventDetails")
    # A linkage event names its cameras in its details; a plain event is its camera's.
    parts: list[tuple[str, dict[str, Any]]] = (
        [(f"{event_id}/{i}", d) for i, d in enumerate(details) if isinstance(d, dict)]
        if isinstance(details, list) and details
        else [(event_id, event)]
    )
    out: list[Message] = []
    for dedup, part in parts:
        camera = present(part.get("srcIndex"))
        code = _code(part.get("eventType"))
        if camera is None or len(camera) > 64:
            raise PayloadError("bad_shape", f"event {event_id} names no camera (srcIndex)")
        if code is None:
            raise PayloadError("bad_shape", f"event {event_id} has no eventType")
        name = present(event.get("eventName")) or present(part.get("srcName"))
        if state not in EVENT_STATES:
            what = {2: "stopped", 4: "linkage updated", 5: "pictures uploaded"}.get(state, "")
            detail = f"event {event_id} ({code}) {what or f'status {state}'}"
            out.append(Message("ack", (camera,), ts, raw=part, detail=detail))
            continue
        data = part.get("data")
        values: dict[str, Any] = {
            "code": code,
            "name": name,
            "priority": LEVEL_PRIORITY.get(level) if isinstance(level, int) else None,
            "pictures": _first(_pictures(data)) if data is not None else (),
        }
        out.append(
            Message(
                "video",
                (camera,),
                ts,
                values=values,
                raw=part,
                dedup=f"isc|{dedup}",
                detail=f"event {event_id} type {code}",
            )
        )
    return out


def _isc_time(value: Any) -> datetime:
    if not isinstance(value, str) or not value.strip():
        raise PayloadError("bad_timestamp", "an event needs its happenTime")
    return parse_time(value.strip(), "iso8601", CST)


class ISAPI(Connector):
    platform = "isapi"
    title = "Hikvision ISAPI"
    device_ref = "camera MAC / IP address"

    def parse(
        self, body: bytes, source: PushSource | None = None, content_type: str = ""
    ) -> Parsed:
        pictures: list[str] = []
        if content_type.lower().startswith("multipart/"):
            body, pictures = _multipart(body, content_type)
        alert = _alert(body)
        out = Parsed()
        out.messages.append(_isapi_message(alert, pictures))
        return out


#: a multipart boundary (RFC 2046: 1-70 of these characters)
_BOUNDARY = re.compile(
    r'boundary="?([0-9A-Za-z\'()+_,./:=?-][0-9A-Za-z\'()+_,./:=? -]{0,69})"?', re.I
)


def _multipart(body: bytes, content_type: str) -> tuple[bytes, list[str]]:
    """The alert part of a multipart body, and a reference to each picture in it."""
    found = _BOUNDARY.search(content_type)
    if found is None:
        raise PayloadError("bad_shape", "a multipart body needs its boundary in Content-Type")
    delimiter = b"--" + found.group(1).rstrip().encode("ascii")
    alert: bytes | None = None
    pictures: list[str] = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, content = chunk.lstrip(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            continue
        content = content.removesuffix(b"\r\n")
        headers = head.decode("latin-1").lower()
        kind = _header(headers, "content-type")
        if (
            alert is None
            and ("xml" in kind or "json" in kind or content.lstrip()[:1] in (b"<", b"{"))
            and not kind.startswith("image/")
        ):
            alert = content
        elif kind.startswith("image/") and len(pictures) < MAX_PICTURES:
            name = re.search(r'name="([^"]{1,64})"', head.decode("latin-1"))
            digest = hashlib.sha256(content).hexdigest()[:32]
            pictures.append(
                f"isapi-picture:{name.group(1) if name else 'picture'};{kind};"
                f"{len(content)}B;sha256={digest}"
            )
    if alert is None:
        raise PayloadError("bad_shape", "the multipart body has no EventNotificationAlert part")
    return alert, pictures


def _header(headers: str, name: str) -> str:
    for line in headers.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return ""


def _alert(body: bytes) -> dict[str, Any]:
    """An EventNotificationAlert's fields (XML or JSON) as a flat dict, with the
    related event of a ``duration`` alert and any picture URLs."""
    text = body.lstrip()
    if text[:1] == b"{":
        data = _json(text, "an ISAPI alert")
        alert = data.get("EventNotificationAlert", data)
        if not isinstance(alert, dict):
            raise PayloadError("bad_shape", "EventNotificationAlert is an object")
        duration = alert.get("DurationList")
        out = dict(alert)
        out["pictures"] = _first(_pictures(alert))
        if isinstance(duration, dict):
            related = duration.get("Duration")
            if isinstance(related, dict):
                out["relationEvent"] = related.get("relationEvent")
        return out
    if text[:1] != b"<":
        raise PayloadError("bad_shape", "an ISAPI alert is XML or JSON")
    try:
        root = safe_xml.fromstring(text, forbid_dtd=True)
    except DefusedXmlException:
        raise PayloadError("bad_shape", "an ISAPI alert has no document type or entities") from None
    except (ET.ParseError, ValueError, RecursionError) as exc:
        raise PayloadError("bad_shape", f"the ISAPI alert is not well-formed XML: {exc}") from exc
    if _local(root.tag) != "EventNotificationAlert":
        raise PayloadError(
            "bad_shape", f"<{_local(root.tag)[:40]}> is not an EventNotificationAlert"
        )
    fields: dict[str, Any] = {}
    pictures: list[str] = []
    for element in root.iter():
        name = _local(element.tag)
        value = (element.text or "").strip()
        if not value:
            continue
        if name.lower() in PICTURE_KEYS:
            pictures.append(value[:2048])
        fields.setdefault(name, value)
    fields["pictures"] = _first(iter(pictures))
    return fields


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _isapi_message(alert: dict[str, Any], pictures: list[str]) -> Message:
    mac = present(alert.get("macAddress"))
    ip = present(alert.get("ipAddress"))
    channel = present(alert.get("channelID")) or present(alert.get("dynChannelID"))
    device = present(alert.get("deviceID"))
    refs: list[str] = []
    for base in (device, mac.lower() if mac else None, ip):
        if base is None or len(base) > 60:
            continue
        if channel is not None and len(channel) <= 3:
            refs.append(f"{base}/{channel}")
        refs.append(base)
    if not refs:
        raise PayloadError("bad_shape", "the alert names no camera (macAddress or ipAddress)")
    event_type = present(alert.get("eventType"))
    if event_type is None or len(event_type) > 64:
        raise PayloadError("bad_shape", "the alert has no eventType")
    when = alert.get("dateTime")
    ts = parse_time(when.strip(), "iso8601", CST) if isinstance(when, str) and when else None
    raw = {k: v for k, v in alert.items() if k != "pictures" and isinstance(v, str | int | float)}
    if event_type.lower() == "heartbeat":
        return Message("status", tuple(refs), ts, raw=raw, detail="heartBeat")
    code = event_type
    if event_type.lower() == "duration":
        code = present(alert.get("relationEvent")) or event_type
    state = str(alert.get("eventState") or "active").lower()
    if state != "active":
        return Message("ack", tuple(refs), ts, raw=raw, detail=f"{code} {state}")
    if ts is None:
        raise PayloadError("bad_timestamp", "the alert has no dateTime")
    count = present(alert.get("activePostCount")) or ""
    return Message(
        "video",
        tuple(refs),
        ts,
        values={
            "code": code,
            "name": present(alert.get("eventDescription")),
            "priority": None,
            "pictures": _first(iter([*alert.get("pictures", ()), *pictures])),
        },
        raw=raw,
        dedup=f"isapi|{refs[0]}|{code}|{ts.isoformat()}|{count}",
        detail=f"{code} on {refs[0]}",
    )


def _json(body: bytes, what: str) -> dict[str, Any]:
    data = parse_json(body)
    if not isinstance(data, dict):
        raise PayloadError("bad_shape", f"{what} is a JSON object")
    return data
