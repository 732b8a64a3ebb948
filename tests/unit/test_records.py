from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lifeline.errors import RecordError
from lifeline.records import (
    Anomaly,
    Evidence,
    Incident,
    Reading,
    VideoEvent,
    export_schemas,
)
from lifeline.vocabulary import IncidentType, Severity, VideoEventType

T0 = datetime(2026, 7, 1, 2, 30, tzinfo=UTC)

readings = st.builds(
    Reading,
    city=st.from_regex(r"\A[0-9]{6}\Z"),
    device_id=st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,20}\Z"),
    ts=st.datetimes(
        min_value=datetime(2000, 1, 1),  # noqa: DTZ001  # hypothesis wants naive bounds
        max_value=datetime(2100, 1, 1),  # noqa: DTZ001
        timezones=st.just(UTC),
    ),
    metric=st.sampled_from(["ch4", "pressure", "flow", "depth"]),
    value=st.floats(allow_nan=False, allow_infinity=False),
    unit=st.sampled_from(["%LEL", "MPa", "m3/h", "cm"]),
    quality=st.lists(st.sampled_from(["pass", "suspect", "fail"]), max_size=3).map(tuple),
)


@given(readings)
def test_reading_round_trips_through_json(reading: Reading) -> None:
    assert Reading.from_json(reading.to_json()) == reading


@given(st.binary(max_size=300))
def test_reading_parser_raises_only_record_error_on_arbitrary_bytes(raw: bytes) -> None:
    with contextlib.suppress(RecordError):
        Reading.from_json(raw)


def test_timestamps_are_normalised_to_utc() -> None:
    cst = timezone(timedelta(hours=8))
    r = Reading(
        city="320100",
        device_id="gw-1",
        ts=datetime(2026, 7, 1, 10, 30, tzinfo=cst),
        metric="ch4",
        value=12.0,
        unit="%LEL",
    )
    assert r.ts == T0
    assert r.ts.tzinfo == UTC


def test_naive_timestamp_is_rejected_naming_the_field() -> None:
    raw = json.dumps(
        {
            "city": "320100",
            "device_id": "gw-1",
            "ts": "2026-07-01T02:30:00",
            "metric": "ch4",
            "value": 1,
            "unit": "%LEL",
        }
    )
    with pytest.raises(RecordError, match="ts"):
        Reading.from_json(raw)


@pytest.mark.parametrize(
    ("field", "value"),
    [("city", "3201"), ("device_id", "bad/id"), ("value", "NaN"), ("v", 2), ("extra", 1)],
)
def test_invalid_reading_fields_are_named_in_the_error(field: str, value: object) -> None:
    data: dict[str, object] = {
        "city": "320100",
        "device_id": "gw-1",
        "ts": "2026-07-01T02:30:00Z",
        "metric": "ch4",
        "value": 1.0,
        "unit": "%LEL",
    }
    data[field] = value
    with pytest.raises(RecordError, match=field):
        Reading.from_json(json.dumps(data))


def test_nan_value_is_rejected() -> None:
    with pytest.raises(RecordError, match="value"):
        Reading.from_dict(
            {
                "city": "320100",
                "device_id": "g",
                "ts": T0,
                "metric": "ch4",
                "value": float("nan"),
                "unit": "%LEL",
            }
        )


def test_video_event_requires_gb28181_camera_id_and_priority_1_to_4() -> None:
    ok = VideoEvent(
        city="320100",
        camera_id="32010000081310000001",
        event_type=VideoEventType.ROAD_PONDING,
        ts=T0,
        confidence=0.9,
        lon=118.79,
        lat=32.06,
        priority=2,
    )
    assert VideoEvent.from_json(ok.to_json()) == ok
    with pytest.raises(RecordError, match="camera_id"):
        VideoEvent.from_dict({**ok.model_dump(), "camera_id": "123"})
    with pytest.raises(RecordError, match="priority"):
        VideoEvent.from_dict({**ok.model_dump(), "priority": 5})


def test_anomaly_and_incident_round_trip() -> None:
    ev = Evidence(device_id="gw-1", metric="ch4", value=55.0, unit="%LEL", ts=T0)
    a = Anomaly(
        anomaly_id="a-1",
        city="320100",
        kind="ch4_level",
        device_id="gw-1",
        grid_cell="320102001001001",
        ts=T0,
        detector="graded_threshold",
        severity=Severity.ORANGE,
        evidence=(ev,),
    )
    assert Anomaly.from_json(a.to_json()) == a
    inc = Incident(
        incident_id="i-1",
        city="320100",
        type=IncidentType.GAS_LEAK,
        severity=Severity.RED,
        anomaly_ids=("a-1",),
        grid_cells=("320102001001001",),
        started_at=T0,
        updated_at=T0,
    )
    assert Incident.from_json(inc.to_json()) == inc


def test_severity_levels_run_red_one_to_blue_four() -> None:
    assert [s.level for s in Severity] == [1, 2, 3, 4]
    assert Severity.from_level(1) is Severity.RED
    assert Severity.BLUE.roman == "IV"
    with pytest.raises(ValueError, match="1-4"):
        Severity.from_level(5)


def test_schema_export_writes_one_json_schema_per_record(tmp_path: object) -> None:
    from pathlib import Path

    folder = Path(str(tmp_path))
    paths = export_schemas(folder)
    names = sorted(p.name for p in paths)
    assert names == [
        "cityops.anomaly.v1.schema.json",
        "cityops.device_status.v1.schema.json",
        "cityops.incident.v1.schema.json",
        "cityops.reading.v1.schema.json",
        "cityops.reading_batch.v2.schema.json",
        "cityops.video_event.v1.schema.json",
    ]
    batch_schema = json.loads((folder / "cityops.reading_batch.v2.schema.json").read_text())
    assert batch_schema["properties"]["readings"]["maxItems"] == 500
    reading_schema = json.loads((folder / "cityops.reading.v1.schema.json").read_text())
    assert set(reading_schema["required"]) >= {"city", "device_id", "ts", "metric", "value"}
