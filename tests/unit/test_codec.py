"""The reading wire codec: v1 readings and v2 batches, against the Reading record."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from lifeline import codec
from lifeline.errors import RecordError
from lifeline.records import Reading, ReadingBatch
from tests.unit.test_records import readings


def wire(r: Reading) -> codec.WireReading:
    return codec.WireReading(r.city, r.device_id, r.ts, r.metric, r.value, r.unit, r.quality)


@given(readings)
def test_an_encoded_reading_is_the_reading_record(reading: Reading) -> None:
    encoded = codec.encode(wire(reading))
    assert Reading.from_json(encoded) == reading
    assert codec.decode(encoded) == [wire(reading)]
    assert codec.decode(reading.to_json()) == [wire(reading)]


@given(st.lists(readings, min_size=1, max_size=40))
def test_a_batch_is_the_batch_record_and_decodes_in_order(items: list[Reading]) -> None:
    record = codec.batch([codec.encode(wire(r)) for r in items])
    assert ReadingBatch.from_json(record) == ReadingBatch(readings=tuple(items))
    assert codec.decode(record) == [wire(r) for r in items]
    assert codec.decode(ReadingBatch(readings=tuple(items)).to_json()) == [wire(r) for r in items]


@given(st.lists(readings, max_size=120), st.integers(1, 50), st.integers(300, 4000))
def test_batches_keep_to_the_limits_and_lose_nothing(
    items: list[Reading], max_readings: int, max_bytes: int
) -> None:
    encoded = [codec.encode(wire(r)) for r in items]
    out = list(codec.batches(encoded, max_readings, max_bytes))
    decoded = [r for record in out for r in codec.decode(record)]
    assert decoded == [wire(r) for r in items]
    for record in out:
        n = len(codec.decode(record))
        assert n <= max_readings
        assert n == 1 or len(record) <= max_bytes


def test_default_limits_are_500_readings_and_256_kib() -> None:
    one = codec.encode_reading("320100", "gw-1", datetime(2026, 7, 1, tzinfo=UTC), "ch4", 1, "%")
    out = list(codec.batches([one] * 1201))
    assert [len(codec.decode(b)) for b in out] == [500, 500, 201]
    assert all(len(b) <= 256 * 1024 for b in out)


@given(st.binary(max_size=300))
def test_decode_raises_only_record_error_on_arbitrary_bytes(raw: bytes) -> None:
    with contextlib.suppress(RecordError):
        codec.decode(raw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                ["v", "city", "device_id", "ts", "metric", "value", "unit", "readings"]
            ),
            inner,
            max_size=8,
        )
    ),
)


@given(json_values)
def test_decode_raises_only_record_error_on_arbitrary_json(body: object) -> None:
    try:
        raw = orjson.dumps(body)
    except TypeError:  # an integer beyond 64 bits
        return
    with contextlib.suppress(RecordError):
        codec.decode(raw)


def test_times_are_aware_utc_and_naive_times_are_refused() -> None:
    base = {"v": 1, "city": "320100", "device_id": "d", "metric": "ch4", "value": 1, "unit": "%"}
    [r] = codec.decode(orjson.dumps({**base, "ts": "2026-07-01T10:30:00+08:00"}))
    assert r.ts == datetime(2026, 7, 1, 2, 30, tzinfo=UTC)
    assert r.ts.utcoffset() == timedelta(0)
    with pytest.raises(RecordError, match="no time zone"):
        codec.decode(orjson.dumps({**base, "ts": "2026-07-01T10:30:00"}))
    with pytest.raises(RecordError, match="no time zone"):
        codec.encode_reading("320100", "d", datetime(2026, 7, 1), "ch4", 1, "%")  # noqa: DTZ001
    cst = timezone(timedelta(hours=8))
    at_eight = datetime(2026, 7, 1, 8, tzinfo=cst)
    encoded = codec.encode_reading("320100", "d", at_eight, "ch4", 1, "%")
    assert orjson.loads(encoded)["ts"] == "2026-07-01T00:00:00Z"


#: A valid reading on the wire, which each bad record below changes in one way.
GOOD = {
    "v": 1,
    "city": "320100",
    "device_id": "d",
    "ts": "2026-07-01T00:00:00Z",
    "metric": "m",
    "value": 1,
    "unit": "u",
}
_NO_VALUE = {k: v for k, v in GOOD.items() if k != "value"}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"v": 3}, "v must be"),
        ({"v": 2, "readings": {}}, "list"),
        ({"v": 2, "readings": [{"v": 2, "readings": []}]}, r"readings\[0\]: v must be"),
        ({**GOOD, "city": "32010"}, "city"),
        ({**GOOD, "city": "\uff13\uff12\uff10\uff11\uff10\uff10"}, "city"),
        ({**GOOD, "value": True}, "number"),
        (_NO_VALUE, "value is missing"),
        ({**GOOD, "extra": 1}, "unknown fields"),
    ],
)
def test_bad_records_say_what_is_wrong(body: object, reason: str) -> None:
    with pytest.raises(RecordError, match=reason):
        codec.decode(orjson.dumps(body))


def test_a_batch_of_more_than_500_readings_is_refused() -> None:
    one = codec.encode_reading("320100", "gw-1", datetime(2026, 7, 1, tzinfo=UTC), "ch4", 1, "%")
    with pytest.raises(RecordError, match="exceeds 500"):
        codec.decode(codec.batch([one] * 501))


@given(st.binary(max_size=64))
def test_murmur2_is_kafkas(key: bytes) -> None:
    assert codec.murmur2(key) & 0xFFFFFFFF == aiokafka_murmur2(key) & 0xFFFFFFFF


def test_partition_is_the_default_partitioners_for_the_device_id() -> None:
    # Values of Kafka's Java client (Utils.toPositive(Utils.murmur2(key)) % n).
    assert codec.murmur2(b"21") == -973932308
    assert codec.murmur2(b"foobar") == -790332482
    assert codec.murmur2(b"a-little-bit-long-string") == -985981536
    for device in ("gw-0001", "bw-00042", "wp-17", "x"):
        expected = (aiokafka_murmur2(device.encode()) & 0x7FFFFFFF) % 12
        assert codec.partition_for(device, 12) == expected


def test_a_kafka_recording_holds_one_line_per_reading_of_the_city(tmp_path: object) -> None:
    from pathlib import Path

    from simulators.replay import _lines, read_recording

    t0 = datetime(2026, 7, 1, tzinfo=UTC)
    mine = [codec.encode_reading("320100", f"gw-{i}", t0, "ch4", i, "%LEL") for i in range(3)]
    other = codec.encode_reading("320500", "gw-9", t0, "ch4", 9, "%LEL")
    lines = _lines("cityops.readings", codec.batch([*mine, other]), "320100")
    assert lines == mine
    assert _lines("cityops.readings", mine[0], "320100") == [mine[0]]
    path = Path(str(tmp_path)) / "rec.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert [m.device_id for m in read_recording(path, "320100")] == ["gw-0", "gw-1", "gw-2"]
