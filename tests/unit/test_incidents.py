"""Correlation of anomalies into incidents (pure fold)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from lifeline.incidents import PlaceState, fold
from lifeline.records import Anomaly, Evidence, Incident
from lifeline.vocabulary import IncidentType, Severity

T0 = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)
CELL = "320102001001001"


def anomaly(
    device: str,
    metric: str,
    severity: Severity,
    minute: int,
    state: str = "raised",
    detector: str = "level_yellow",
    asset: str | None = None,
    camera: str | None = None,
    kind: str | None = None,
) -> Anomaly:
    ts = T0 + timedelta(minutes=minute)
    return Anomaly(
        anomaly_id=f"320100:{device}:{metric}:{int(T0.timestamp())}",
        city="320100",
        kind=kind or f"{metric}_{detector}",
        state=state,
        device_id=None if camera else device,
        camera_id=camera,
        asset_id=asset,
        grid_cell=CELL,
        lon=118.78,
        lat=32.04,
        ts=ts,
        detector=detector,
        severity=severity,
        evidence=()
        if camera
        else (Evidence(device_id=device, metric=metric, value=1.0, unit="x", ts=ts),),
    )


def run(events: Sequence[tuple[Anomaly, str | None]]) -> list[Incident]:
    state, out = PlaceState(), []
    for a, kind in events:
        state, published = fold(state, a, kind)
        out.extend(published)
    return out


def test_one_well_of_biogas_is_not_a_gas_leak() -> None:
    out = run(
        [
            (anomaly("gw-1", "ch4", Severity.YELLOW, 0), "gas_well"),
            (anomaly("gw-1", "ch4", Severity.YELLOW, 3, state="cleared"), "gas_well"),
        ]
    )
    assert out == []


def test_a_second_well_confirms_the_leak_and_escalates_it() -> None:
    out = run(
        [
            (anomaly("gw-1", "ch4", Severity.YELLOW, 0), "gas_well"),
            (anomaly("gw-2", "ch4", Severity.YELLOW, 2), "gas_well"),
        ]
    )
    [incident] = out
    assert incident.type is IncidentType.GAS_LEAK
    assert incident.severity is Severity.ORANGE  # confirmed by a neighbour
    assert len(incident.anomaly_ids) == 2
    assert incident.grid_cells == (CELL,)


def test_one_well_staying_in_alarm_becomes_a_leak_after_the_persistence_time() -> None:
    out = run(
        [
            (anomaly("gw-1", "ch4", Severity.YELLOW, 0), "gas_well"),
            (anomaly("gw-1", "ch4", Severity.YELLOW, 11, state="updated"), "gas_well"),
        ]
    )
    assert [i.type for i in out] == [IncidentType.GAS_LEAK]


def test_pressure_drop_with_inflow_rise_is_one_burst() -> None:
    out = run(
        [
            (anomaly("fl-1", "flow", Severity.YELLOW, 0, detector="drift_up"), "water_flow"),
            (
                anomaly("wp-1", "pressure", Severity.ORANGE, 3, detector="drift_down"),
                "water_pressure",
            ),
        ]
    )
    assert [i.type for i in out] == [IncidentType.PIPE_BURST]


def test_camera_ponding_joins_the_depth_sensors_waterlogging_incident() -> None:
    camera = "32010000081320000001"
    out = run(
        [
            (anomaly("rp-1", "depth", Severity.YELLOW, 0), "road_ponding"),
            (
                anomaly(
                    camera,
                    "video",
                    Severity.YELLOW,
                    1,
                    camera=camera,
                    kind="video_road_ponding",
                    detector="video",
                ),
                None,
            ),
        ]
    )
    # The camera confirms the gauge: one incident, both as evidence.
    assert [(i.type, i.revision, len(i.anomaly_ids)) for i in out] == [
        (IncidentType.WATERLOGGING, 1, 2)
    ]


def test_one_incident_per_situation_updated_escalated_then_cleared() -> None:
    out = run(
        [
            (anomaly("rp-1", "depth", Severity.YELLOW, 0, asset="UP-1"), "road_ponding"),
            (
                anomaly("rp-1", "depth", Severity.YELLOW, 1, state="updated", asset="UP-1"),
                "road_ponding",
            ),
            (
                anomaly("rp-1", "depth", Severity.ORANGE, 2, state="updated", asset="UP-1"),
                "road_ponding",
            ),
            (
                anomaly("rp-1", "depth", Severity.ORANGE, 9, state="cleared", asset="UP-1"),
                "road_ponding",
            ),
        ]
    )
    assert [(i.revision, i.severity.value, i.status) for i in out] == [
        (1, "yellow", "open"),
        (2, "orange", "open"),
        (3, "orange", "cleared"),
    ]
    assert len({i.incident_id for i in out}) == 1


def test_replaying_the_same_anomalies_gives_the_same_incident_ids() -> None:
    events = [(anomaly("gw-1", "ch4", Severity.ORANGE, 0), "gas_well")]
    assert run(events)[0].incident_id == run(events)[0].incident_id


def test_anomaly_records_re_emitted_by_a_restarted_detector_change_nothing() -> None:
    """A detector restarted after a crash emits again what it had emitted since its last
    checkpoint, after records correlate has already applied: the incidents are those of
    the records without the replays."""
    raised = (anomaly("gw-1", "ch4", Severity.YELLOW, 0), "gas_well")
    orange = (anomaly("gw-1", "ch4", Severity.ORANGE, 2, state="updated"), "gas_well")
    second = (anomaly("gw-2", "ch4", Severity.YELLOW, 3), "gas_well")
    cleared = (anomaly("gw-1", "ch4", Severity.ORANGE, 9, state="cleared"), "gas_well")
    clean = run([raised, orange, second, cleared])
    replayed = run([raised, orange, raised, orange, second, raised, second, cleared, orange])
    assert [i.to_json() for i in replayed] == [i.to_json() for i in clean]
    assert clean[-1].severity is Severity.RED  # an orange well confirmed by a neighbour


def test_a_neighbour_joining_a_leak_made_by_persistence_escalates_it_too() -> None:
    """The same wells give the same incident severity whichever reached correlation
    first: a neighbour that joins a one-well leak confirms it as much as one alarming
    with it (after a worker restart one well's anomalies can arrive well ahead)."""
    first = anomaly("gw-1", "ch4", Severity.YELLOW, 0)
    lasting = anomaly("gw-1", "ch4", Severity.YELLOW, 45, state="updated")
    neighbour = anomaly("gw-2", "ch4", Severity.YELLOW, 1)
    together = run([(first, "gas_well"), (neighbour, "gas_well"), (lasting, "gas_well")])
    apart = run([(first, "gas_well"), (lasting, "gas_well"), (neighbour, "gas_well")])
    assert apart[0].severity is Severity.YELLOW  # one well, by persistence
    assert together[-1].severity is apart[-1].severity is Severity.ORANGE


def test_wells_off_the_grid_that_alarm_together_are_separate_incidents() -> None:
    """Devices without a grid cell correlate per device (or asset): two of them raising
    at the same moment are two incidents with two ids, not one."""
    incidents = []
    for device in ("gw-a", "gw-b"):
        a = anomaly(device, "ch4", Severity.ORANGE, 0, detector="level_orange")
        a = a.model_copy(update={"grid_cell": None})
        incidents += run([(a, "gas_well")])
    assert [i.type for i in incidents] == [IncidentType.GAS_LEAK] * 2
    assert len({i.incident_id for i in incidents}) == 2
    assert "gw-a" in incidents[0].incident_id
    assert incidents[0].title == "gas leak at gw-a"


def rain(minute: int, state: str = "raised") -> Anomaly:
    return anomaly("rg-1", "rainfall", Severity.ORANGE, minute, state, "level_orange")


def depth(minute: int, state: str = "raised") -> Anomaly:
    return anomaly("rp-1", "depth", Severity.ORANGE, minute, state, "level_orange")


def test_ponding_with_a_rainstorm_in_the_cell_is_waterlogging_at_once() -> None:
    out = run(
        [
            (rain(0), "rain_gauge"),
            (depth(3), "road_ponding"),
            (rain(20, "cleared"), "rain_gauge"),  # the rain stops; the water stays
            (depth(30, "cleared"), "road_ponding"),
        ]
    )
    assert [(i.type, i.status, len(i.anomaly_ids)) for i in out] == [
        (IncidentType.WATERLOGGING, "open", 2),
        (IncidentType.WATERLOGGING, "cleared", 2),
    ]
    assert out[0].started_at == T0  # from the rain's onset
    assert out[1].cleared_at == T0 + timedelta(minutes=30)


def test_rain_alone_is_not_waterlogging_and_a_lone_gauge_must_last() -> None:
    assert run([(rain(0), "rain_gauge"), (rain(40, "cleared"), "rain_gauge")]) == []
    lone = run(
        [
            (depth(0), "road_ponding"),
            (depth(5, "updated"), "road_ponding"),
            (depth(11, "updated"), "road_ponding"),
        ]
    )
    assert [(i.type, i.updated_at) for i in lone] == [
        (IncidentType.WATERLOGGING, T0 + timedelta(minutes=11))
    ]


def test_a_low_pressure_incident_becomes_the_burst_when_the_inflow_rises() -> None:
    out = run(
        [
            (
                anomaly("wp-1", "pressure", Severity.ORANGE, 0, detector="baseline"),
                "water_pressure",
            ),
            (anomaly("fl-1", "flow", Severity.YELLOW, 0, detector="baseline"), "water_flow"),
            (
                anomaly("wp-1", "pressure", Severity.ORANGE, 9, "cleared", "recovered"),
                "water_pressure",
            ),
            (anomaly("fl-1", "flow", Severity.YELLOW, 9, "cleared", "recovered"), "water_flow"),
        ]
    )
    assert [(i.type, i.revision, i.status) for i in out] == [
        (IncidentType.LOW_PRESSURE, 1, "open"),
        (IncidentType.PIPE_BURST, 2, "open"),
        (IncidentType.PIPE_BURST, 3, "open"),
        (IncidentType.PIPE_BURST, 4, "cleared"),
    ]
    assert len({i.incident_id for i in out}) == 1
    assert len(out[-1].anomaly_ids) == 2


def test_an_inflow_rise_then_a_pressure_drop_is_one_burst_and_no_leak() -> None:
    out = run(
        [
            (anomaly("fl-1", "flow", Severity.YELLOW, 0, detector="baseline"), "water_flow"),
            (
                anomaly("wp-1", "pressure", Severity.ORANGE, 2, detector="baseline"),
                "water_pressure",
            ),
            (anomaly("fl-1", "flow", Severity.YELLOW, 45, "cleared", "recovered"), "water_flow"),
            (
                anomaly("wp-1", "pressure", Severity.ORANGE, 46, "cleared", "recovered"),
                "water_pressure",
            ),
        ]
    )
    assert {i.type for i in out} == {IncidentType.PIPE_BURST}
    assert len({i.incident_id for i in out}) == 1
    assert out[0].severity is Severity.ORANGE
    assert out[-1].status == "cleared"


def test_an_anomaly_replayed_after_it_cleared_opens_nothing() -> None:
    """After a worker dies, records of an anomaly may arrive again after its clearing
    (at-least-once): they must not open a second incident."""
    raised = anomaly("gw-1", "ch4", Severity.ORANGE, 0, detector="level_orange")
    refreshed = anomaly("gw-1", "ch4", Severity.ORANGE, 5, "updated", "level_orange")
    cleared = anomaly("gw-1", "ch4", Severity.ORANGE, 9, "cleared", "recovered")
    out = run([(a, "gas_well") for a in (raised, refreshed, cleared, refreshed, raised)])
    assert [(i.revision, i.status) for i in out] == [(1, "open"), (2, "cleared")]
