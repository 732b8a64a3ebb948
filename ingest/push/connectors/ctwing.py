"""China Telecom's CTWing (AEP) HTTP subscription push.

One message a request, a JSON object with ``messageType``:

* ``dataReport`` — ``payload`` holds a profile product's ``serviceId`` and
  ``serviceData`` (property → value), a transparent product's ``APPdata`` (a Base64
  frame, unpacked by the device's vendor mapping), or the properties themselves;
* ``dataReportTupUnion`` — several reports of one device at once: ``payload`` a list of
  such payloads, each with its own ``timestamp`` where it has one;
* ``eventReport`` — ``eventType`` 1 info, 2 warning, 3 fault, with ``eventContent``;
* ``deviceOnlineOfflineReport`` — ``eventType`` 1 online, 0 offline;
* ``commandResponse`` — a command's receipt (``taskId``, ``result.resultCode``).

Times are epoch milliseconds (``timestamp``). The device is named by ``deviceId`` (its
CTWing id) and, for NB-IoT products, ``IMEI``; placeholders (``""``, ``-1``,
``"undefined"`` in ``IMEI``, ``IMSI``, ``iccid``, ``upPacketSN``) mean "none". CTWing
signs nothing: the source's URL token and networks stand in. It retries a failed push
three times; a retry repeats ``deviceId``, ``timestamp`` and ``upPacketSN``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ingest.adapters import parse_time
from ingest.decode import parse_json
from ingest.errors import PayloadError
from ingest.push.connectors.base import Connector, Message, Parsed, present
from store.push_sources import PushSource

EVENT_TYPES = {1: "info", 2: "warning", 3: "fault"}


class CTWing(Connector):
    platform = "ctwing"
    title = "CTWing (AEP)"
    device_ref = "CTWing deviceId"

    def parse(
        self, body: bytes, source: PushSource | None = None, content_type: str = ""
    ) -> Parsed:
        data = parse_json(body)
        if not isinstance(data, dict):
            raise PayloadError("bad_shape", "a CTWing push is a JSON object")
        kind = data.get("messageType")
        refs = _refs(data)
        if not refs:
            raise PayloadError("bad_shape", "the message names no device (deviceId or IMEI)")
        ts = _time(data.get("timestamp"))
        sn = present(data.get("upPacketSN"))
        dedup = f"{refs[0]}|{data.get('timestamp')}|{sn or ''}|{kind}"
        out = Parsed()
        if kind == "dataReport":
            out.messages.append(_report(data, refs, ts, dedup))
        elif kind == "dataReportTupUnion":
            parts = data.get("payload")
            if not isinstance(parts, list) or not parts:
                raise PayloadError("bad_shape", "dataReportTupUnion: payload is a list of reports")
            for i, part in enumerate(parts):
                try:
                    out.messages.append(_part(data, refs, part, f"{dedup}|{i}"))
                except PayloadError as exc:
                    out.bad.append((part, exc))
        elif kind == "eventReport":
            content = data.get("eventContent")
            if not isinstance(content, dict):
                raise PayloadError("bad_shape", "eventReport: eventContent is an object")
            code = data.get("eventType")
            label = EVENT_TYPES.get(code, str(code)) if isinstance(code, int) else str(code)
            out.messages.append(
                Message(
                    "event",
                    refs,
                    ts,
                    values=content,
                    raw=data,
                    dedup=dedup,
                    detail=f"eventType {label}, serviceId {data.get('serviceId')}",
                )
            )
        elif kind == "deviceOnlineOfflineReport":
            code = data.get("eventType")
            if code not in (0, 1, "0", "1"):
                raise PayloadError(
                    "bad_shape", "deviceOnlineOfflineReport: eventType is 1 (online) or 0"
                )
            out.messages.append(
                Message(
                    "status",
                    refs,
                    ts,
                    raw=data,
                    status="online" if str(code) == "1" else "offline",
                    dedup=dedup,
                )
            )
        elif kind == "commandResponse":
            result = data.get("result")
            code = result.get("resultCode") if isinstance(result, dict) else None
            out.messages.append(
                Message("ack", refs, ts, raw=data, detail=f"task {data.get('taskId')}: {code}")
            )
        else:
            raise PayloadError(
                "unknown_message_type",
                f"messageType {str(kind)[:40]!r} is not one CTWing pushes (dataReport, "
                "dataReportTupUnion, eventReport, deviceOnlineOfflineReport, commandResponse)",
            )
        return out


def _refs(data: dict[str, Any]) -> tuple[str, ...]:
    refs = [present(data.get("deviceId")), present(data.get("IMEI"))]
    payload = data.get("payload")
    service = payload.get("serviceData") if isinstance(payload, dict) else None
    if isinstance(service, dict):
        refs.append(present(service.get("IMEI")))
    return tuple(dict.fromkeys(r for r in refs if r))


def _time(value: Any) -> datetime | None:
    return None if value is None else parse_time(value, "epoch_ms")


def _part(data: dict[str, Any], refs: tuple[str, ...], part: Any, dedup: str) -> Message:
    """One report of a ``dataReportTupUnion``, at its own time where it has one."""
    if not isinstance(part, dict):
        raise PayloadError("bad_shape", "a part of dataReportTupUnion is not an object")
    stamp = part.get("timestamp", data.get("timestamp"))
    one = {**data, "payload": part.get("payload", part), "timestamp": stamp}
    return _report(one, refs, _time(stamp), dedup)


def _report(
    data: dict[str, Any], refs: tuple[str, ...], ts: datetime | None, dedup: str
) -> Message:
    """A report of ``data['payload']``; ``data`` is kept whole for a vendor mapping."""
    payload = data.get("payload")
    if not isinstance(payload, dict):
        raise PayloadError("bad_shape", "dataReport: payload is an object")
    values = payload.get("serviceData", payload)
    if not isinstance(values, dict):
        raise PayloadError("bad_shape", "dataReport: payload.serviceData is an object")
    if "APPdata" in payload:
        values = {}  # a transparent product: its vendor mapping unpacks the frame
    return Message("reading", refs, ts, values=values, raw=data, dedup=dedup)
