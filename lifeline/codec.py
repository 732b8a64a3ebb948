"""The reading wire format of ``cityops.readings``: the one place that encodes and decodes it.

A record on the topic is either a bare reading (v1, :class:`lifeline.records.Reading`) or
a batch of readings (v2, :class:`lifeline.records.ReadingBatch`)::

    {"v": 2, "readings": [{"v": 1, "city": ..., "device_id": ..., ...}, ...]}

A batch holds at most :data:`MAX_BATCH_READINGS` readings and :data:`MAX_BATCH_BYTES`
bytes, all of one partition: the partition Kafka's default partitioner gives the device
id as a key (:func:`partition_for`), so a device's series stay where they were when
every reading was its own record, and so do the detection tables' changelogs.

Producers encode each reading once (:func:`encode_reading`) and join the encoded readings
into batches (:func:`batches`); consumers call :func:`decode`, which takes both versions,
returns :class:`WireReading` tuples with aware UTC times, and raises
:class:`lifeline.errors.RecordError` — and nothing else — for anything that is not a
valid record. Rolling upgrade: consumers first (they read both), then producers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple

import orjson

from lifeline.codes import is_city_code
from lifeline.errors import RecordError

MAX_BATCH_READINGS = 500
MAX_BATCH_BYTES = 256 * 1024
_HEAD = b'{"v":2,"readings":['
_TAIL = b"]}"


class WireReading(NamedTuple):
    """A decoded reading: the fields of :class:`lifeline.records.Reading`, ``ts`` aware UTC."""

    city: str
    device_id: str
    ts: datetime
    metric: str
    value: float
    unit: str
    quality: tuple[str, ...] = ()


def encode_reading(
    city: str,
    device_id: str,
    ts: datetime,
    metric: str,
    value: float,
    unit: str,
    quality: Sequence[str] = (),
) -> bytes:
    """One reading as a v1 record (also the element of a batch)."""
    if ts.tzinfo is None:
        raise RecordError(f"reading of {device_id} at {ts.isoformat()} has no time zone")
    body: dict[str, Any] = {
        "v": 1,
        "city": city,
        "device_id": device_id,
        "ts": ts.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "metric": metric,
        "value": float(value),
        "unit": unit,
    }
    if quality:
        body["quality"] = list(quality)
    return orjson.dumps(body)


def encode(reading: WireReading) -> bytes:
    return encode_reading(*reading)


def batch(encoded: Sequence[bytes]) -> bytes:
    """One v2 record of readings already encoded; the caller keeps to the limits."""
    return _HEAD + b",".join(encoded) + _TAIL


def batches(
    encoded: Iterable[bytes],
    max_readings: int = MAX_BATCH_READINGS,
    max_bytes: int = MAX_BATCH_BYTES,
) -> Iterator[bytes]:
    """Encoded readings (of one partition) joined into as few v2 records as the limits
    allow, in order."""
    room = max_bytes - len(_HEAD) - len(_TAIL)
    chunk: list[bytes] = []
    size = 0
    for one in encoded:
        if chunk and (len(chunk) >= max_readings or size + len(one) + 1 > room):
            yield batch(chunk)
            chunk, size = [], 0
        chunk.append(one)
        size += len(one) + 1
    if chunk:
        yield batch(chunk)


def decode(value: bytes) -> list[WireReading]:
    """The readings of one record, v1 or v2."""
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise RecordError(f"reading record is not JSON: {str(exc)[:200]}") from exc
    if not isinstance(body, dict):
        raise RecordError("reading record is not a JSON object")
    version = body.get("v")
    if version == 2:
        items = body.get("readings")
        if not isinstance(items, list) or len(body) != 2:
            raise RecordError("batch record needs exactly 'v' and a list 'readings'")
        if len(items) > MAX_BATCH_READINGS:
            raise RecordError(f"batch of {len(items)} readings exceeds {MAX_BATCH_READINGS}")
        return [_reading(item, i) for i, item in enumerate(items)]
    return [_reading(body, None)]


_FIELDS = frozenset({"v", "city", "device_id", "ts", "metric", "value", "unit", "quality"})


def _reading(d: Any, index: int | None) -> WireReading:
    where = "reading" if index is None else f"readings[{index}]"
    if not isinstance(d, dict):
        raise RecordError(f"{where} is not a JSON object")
    if d.get("v") != 1:
        raise RecordError(f"{where}: v must be 1 (a reading) or 2 (a batch), not {d.get('v')!r}")
    if not _FIELDS.issuperset(d):
        raise RecordError(f"{where}: unknown fields {sorted(set(d) - _FIELDS)}")
    try:
        city, device_id, ts_text = d["city"], d["device_id"], d["ts"]
        metric, value, unit = d["metric"], d["value"], d["unit"]
    except KeyError as exc:
        raise RecordError(f"{where}: {exc.args[0]} is missing") from None
    if not is_city_code(city):
        raise RecordError(f"{where}: city must be a 6-digit GB/T 2260 code")
    for name, text in (("device_id", device_id), ("metric", metric), ("unit", unit)):
        if not isinstance(text, str) or not text or len(text) > 64:
            raise RecordError(f"{where}: {name} must be a string of 1-64 characters")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(f"{where}: value must be a number")
    value = float(value)
    if not math.isfinite(value):
        raise RecordError(f"{where}: value must be finite")
    quality = d.get("quality", ())
    if not isinstance(quality, list | tuple) or not all(isinstance(q, str) for q in quality):
        raise RecordError(f"{where}: quality must be a list of flags")
    return WireReading(city, device_id, _time(ts_text, where), metric, value, unit, tuple(quality))


def _time(text: Any, where: str) -> datetime:
    if not isinstance(text, str):
        raise RecordError(f"{where}: ts must be an ISO 8601 string")
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise RecordError(f"{where}: ts {text[:40]!r} is not an ISO 8601 time") from None
    if ts.tzinfo is None:
        raise RecordError(f"{where}: ts {text[:40]!r} has no time zone")
    if ts.utcoffset():
        ts = ts.astimezone(UTC)
    elif ts.tzinfo is not UTC:
        ts = ts.replace(tzinfo=UTC)
    return ts


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), as a signed
    32-bit value."""
    length = len(data)
    m, r = 0x5BD1E995, 24
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    whole = length & ~3
    for i in range(0, whole, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length & 3
    if rest >= 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h ^= data[whole]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


@lru_cache(maxsize=1 << 18)
def partition_for(device_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``device_id`` as a record key."""
    return (murmur2(device_id.encode()) & 0x7FFFFFFF) % partitions


def group_by_partition(
    keyed: Iterable[tuple[str, bytes]], partitions: int
) -> dict[int, list[bytes]]:
    """Encoded readings, each with its device id, grouped by partition (order kept)."""
    out: dict[int, list[bytes]] = {}
    for device_id, encoded in keyed:
        out.setdefault(partition_for(device_id, partitions), []).append(encoded)
    return out
