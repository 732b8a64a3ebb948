"""Huawei Cloud IoTDA data forwarding, HTTP push (also China Unicom's platform).

One notification a request: ``resource`` and ``event`` say what it is, ``event_time``
when (``yyyyMMdd'T'HHmmss'Z'``, UTC; newer pushes add ``event_time_ms`` in ISO 8601),
``notify_data.header`` names the device (``device_id`` = product id + ``_`` + node id;
``node_id``, often the module's IMEI) and ``notify_data.body`` holds:

* ``device.property`` / ``report`` — ``services[]``, each with ``service_id``,
  ``properties`` (name → value) and its own ``event_time``;
* ``device.status`` / ``update`` — ``status`` ``ONLINE`` or ``OFFLINE`` (``ABNORMAL``,
  ``INACTIVE`` and ``FROZEN`` count as offline) and ``last_online_time``;
* ``device.message`` / ``report`` — a device message (logged; properties in
  ``services[]`` are read as above);
* ``device.command`` / ``…`` — a command's outcome (logged, nothing stored).

IoTDA signs nothing: the source's URL token and networks stand in. It waits 15 s for
the answer and does not retry a failed push; a message it sends twice repeats the
device and the service's ``event_time``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ingest.adapters import parse_time
from ingest.decode import parse_json
from ingest.errors import PayloadError
from ingest.push.connectors.base import Connector, Message, Parsed, present
from store.push_sources import PushSource

OFFLINE = frozenset({"OFFLINE", "ABNORMAL", "INACTIVE", "FROZEN"})


class IoTDA(Connector):
    platform = "iotda"
    title = "Huawei IoTDA"
    device_ref = "IoTDA device_id"

    def parse(
        self, body: bytes, source: PushSource | None = None, content_type: str = ""
    ) -> Parsed:
        data = parse_json(body)
        if not isinstance(data, dict):
            raise PayloadError("bad_shape", "an IoTDA notification is a JSON object")
        resource, event = data.get("resource"), data.get("event")
        notify = data.get("notify_data")
        header = notify.get("header") if isinstance(notify, dict) else None
        content = notify.get("body") if isinstance(notify, dict) else None
        if not isinstance(header, dict) or not isinstance(content, dict):
            raise PayloadError(
                "bad_shape", "notify_data needs a header (the device) and a body (what happened)"
            )
        refs = tuple(
            dict.fromkeys(
                r for r in (present(header.get("device_id")), present(header.get("node_id"))) if r
            )
        )
        if not refs:
            raise PayloadError("bad_shape", "notify_data.header names no device_id or node_id")
        ts = _time(data.get("event_time"))
        out = Parsed()
        if resource in ("device.property", "device.message") and event == "report":
            services = content.get("services")
            if resource == "device.message" and not isinstance(services, list):
                out.messages.append(
                    Message("ack", refs, ts, raw=data, detail=f"device message {content}"[:200])
                )
                return out
            if not isinstance(services, list) or not services:
                raise PayloadError("bad_shape", "notify_data.body.services is a list of services")
            for service in services:
                try:
                    out.messages.append(_service(data, refs, ts, service))
                except PayloadError as exc:
                    out.bad.append((service, exc))
        elif resource == "device.status" and event == "update":
            status = str(content.get("status", "")).upper()
            if not status:
                raise PayloadError("bad_shape", "device.status: body.status is missing")
            at = _time(content.get("last_online_time")) if status == "ONLINE" else None
            out.messages.append(
                Message(
                    "status",
                    refs,
                    at or ts,
                    raw=data,
                    status="offline" if status in OFFLINE else "online",
                    dedup=f"{refs[0]}|status|{data.get('event_time')}|{status}",
                )
            )
        elif resource == "device.command":
            out.messages.append(
                Message("ack", refs, ts, raw=data, detail=f"command {event}: {content}"[:200])
            )
        else:
            raise PayloadError(
                "unknown_message_type",
                f"resource {str(resource)[:40]!r} / event {str(event)[:40]!r} is not one this "
                "connector reads (device.property report, device.status update, "
                "device.message report, device.command)",
            )
        return out


def _time(value: Any) -> datetime | None:
    """IoTDA's compact UTC time (``20260912T173041Z``), or ISO 8601."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and len(value) == 16 and value[8] == "T" and value[-1] == "Z":
        try:
            return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError as exc:
            raise PayloadError("bad_timestamp", f"event_time {value!r}: {exc}") from exc
    return parse_time(value)


def _service(
    data: dict[str, Any], refs: tuple[str, ...], ts: datetime | None, service: Any
) -> Message:
    if not isinstance(service, dict) or not isinstance(service.get("properties"), dict):
        raise PayloadError("bad_shape", "a service needs a properties object")
    when = _time(service.get("event_time")) or ts
    stamp = service.get("event_time") or data.get("event_time")
    return Message(
        "reading",
        refs,
        when,
        values=service["properties"],
        raw={**data, "service": service},
        dedup=f"{refs[0]}|{service.get('service_id')}|{stamp}",
    )
