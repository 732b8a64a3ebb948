"""The store on the real PostgreSQL: migrations, idempotent COPY writes, rollups, queries,
injection attempts, and the Kafka sink surviving a database restart."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaProducer
from psycopg import sql

from cityops.settings import Settings
from cityops.stack import Stack
from lifeline.records import Anomaly, Incident, Reading
from lifeline.vocabulary import IncidentType, Severity
from store import queries, rollups
from store.events import upsert_anomalies, upsert_incidents
from store.migrate import PLAIN, TIMESCALE, backend, describe, migrate, timescale_available
from store.readings import ReadingWriter, rows_of
from streams.sink import Sink

pytestmark = pytest.mark.integration

T0 = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)


@pytest.fixture
def fresh_db(live_stack: Settings) -> Iterator[str]:
    base = live_stack.db_dsn.get_secret_value()
    name = f"cityops_fresh_{secrets.token_hex(4)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield base.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="module")
def store_path(live_stack: Settings) -> str:
    """The path a new schema takes on the server the suite is pointed at: ``plain`` or
    ``timescale`` (TimescaleDB installed and preloaded); tests whose expectations differ
    assert those of this path."""
    with psycopg.connect(live_stack.db_dsn.get_secret_value(), autocommit=True) as conn:
        return TIMESCALE if timescale_available(conn) else PLAIN


def series_readings(device: str, n: int, start: datetime = T0, step_s: int = 20) -> list[Reading]:
    return [
        Reading(
            city="320100",
            device_id=device,
            ts=start + timedelta(seconds=i * step_s),
            metric="pressure",
            value=0.30 + (i % 7) * 0.01,
            unit="MPa",
        )
        for i in range(n)
    ]


def test_migrations_apply_from_empty_and_rerun_as_a_no_op(fresh_db: str, store_path: str) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        first = migrate(conn)
        again = migrate(conn)
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        }
        parts = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'readings'::regclass"
        ).fetchone()
        path = backend(conn)
        said = describe(conn)
        indexes = {
            r[0]
            for r in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'devices'"
            ).fetchall()
        }
        if store_path == TIMESCALE:
            hypertables = conn.execute(
                "SELECT hypertable_name FROM timescaledb_information.hypertables"
            ).fetchall()
            aggregates = conn.execute(
                "SELECT view_name, materialized_only"
                " FROM timescaledb_information.continuous_aggregates ORDER BY 1"
            ).fetchall()
    assert [m.version for m in first] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert {"devices_id_prefix", "devices_asset_prefix"} <= indexes
    assert {
        "devices_platform_id",
        "devices_imei",
        "devices_imei_prefix",
        "devices_platform_id_prefix",
    } <= indexes
    assert {m.variant for m in first} <= {"common", store_path}
    assert path == store_path
    assert again == []
    if store_path == PLAIN:
        # Rollups are tables refreshed by the job; readings a partition per day.
        assert said.startswith("plain PostgreSQL")
        assert {"readings_1m", "readings_1h"} <= tables
        assert parts is not None
        assert parts[0] >= 15
    else:
        # A hypertable, and real-time continuous aggregates for the rollups.
        assert said.startswith("TimescaleDB")
        assert ("readings",) in hypertables
        assert aggregates == [("readings_1h", False), ("readings_1m", False)]
    assert {
        "devices",
        "anomalies",
        "incidents",
        "alerts",
        "alert_audit",
        "deadletters",
        "retention",
        "schema_migrations",
        "api_keys",
        "device_status",
        "incident_feed",
        "webhooks",
        "webhook_deliveries",
        "cim_features",
        "rollup_pending",
        "rollup_watermark",
        "feed_tickets",
        "push_sources",
    } <= tables


def test_same_batch_twice_adds_nothing_and_rollups_count_once(db_dsn: str, store_path: str) -> None:
    device = f"wp-{secrets.token_hex(3)}"
    batch = series_readings(device, 540)  # three hours at one reading per 20 s
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        writer = ReadingWriter(conn)
        assert writer.write(rows_of(batch)) == 540
        assert writer.write(rows_of(batch)) == 0
        assert (
            writer.write(
                rows_of(batch[100:200] + series_readings(device, 3, T0 - timedelta(days=1)))
            )
            == 3
        )
        # The plain path's job folds the batches in; continuous aggregates need no job.
        assert rollups.refresh(conn).ran == (store_path == PLAIN)
        raw = conn.execute(
            "SELECT count(*), sum(value), min(value), max(value) FROM readings"
            " WHERE device_id = %s AND ts >= %s",
            (device, T0),
        ).fetchone()
        m1 = conn.execute(
            "SELECT sum(count), sum(sum), min(min), max(max) FROM readings_1m"
            " WHERE device_id = %s AND bucket >= %s",
            (device, T0),
        ).fetchone()
        h1 = conn.execute(
            "SELECT sum(count), sum(sum) FROM readings_1h WHERE device_id = %s AND bucket >= %s",
            (device, T0),
        ).fetchone()
    assert raw is not None
    assert m1 is not None
    assert h1 is not None
    assert raw[0] == 540
    assert m1[0] == 540
    assert h1[0] == 540
    assert m1[1] == pytest.approx(raw[1])
    assert h1[1] == pytest.approx(raw[1])
    assert (m1[2], m1[3]) == (raw[2], raw[3])


def test_bucketed_series_agree_across_raw_and_rollup_sources(db_dsn: str) -> None:
    device = f"wp-{secrets.token_hex(3)}"
    readings = series_readings(device, 1080)  # six hours
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        ReadingWriter(conn).write(rows_of(readings))
        rollups.refresh(conn)
        end = T0 + timedelta(hours=6)
        raw_10s = queries.series(conn, "320100", device, "pressure", T0, end, timedelta(seconds=10))
        by_min = queries.series(conn, "320100", device, "pressure", T0, end, timedelta(minutes=15))
        by_hour = queries.series(conn, "320100", device, "pressure", T0, end, timedelta(hours=1))
        auto = queries.series(conn, "320100", device, "pressure", T0, end)
    assert sum(p.count for p in raw_10s) == 1080
    assert len(by_hour) == 6
    assert all(p.count == 180 for p in by_hour)
    assert sum(p.count for p in by_min) == 1080
    expected_hour0 = sum(r.value for r in readings[:180]) / 180
    assert by_hour[0].avg == pytest.approx(expected_hour0)
    assert by_hour[0].last == pytest.approx(readings[179].value)
    assert queries.choose_bucket(T0, end) == timedelta(minutes=1)
    assert len(auto) == 360


def make_incident(city: str, incident_id: str, revision: int, severity: Severity) -> Incident:
    return Incident(
        incident_id=incident_id,
        revision=revision,
        city=city,
        type=IncidentType.GAS_LEAK,
        severity=severity,
        started_at=T0,
        updated_at=T0 + timedelta(minutes=revision),
        lon=118.78,
        lat=32.04,
        grid_cells=("320102001001001",),
    )


def test_incidents_keep_the_newest_revision_and_open_one_alert(db_dsn: str) -> None:
    inc_id = f"inc-{secrets.token_hex(3)}"
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        upsert_incidents(conn, [make_incident("320100", inc_id, 2, Severity.ORANGE)])
        upsert_incidents(conn, [make_incident("320100", inc_id, 1, Severity.BLUE)])  # late, old
        upsert_incidents(conn, [make_incident("320100", inc_id, 3, Severity.RED)])
        row = conn.execute(
            "SELECT revision, severity FROM incidents WHERE incident_id = %s", (inc_id,)
        ).fetchone()
        audits = conn.execute(
            "SELECT to_status FROM alert_audit WHERE alert_id = %s", (inc_id,)
        ).fetchall()
    assert row == (3, "red")
    assert audits == [("new",)]


INJECTIONS = [
    "320100' OR '1'='1",
    "x'; DROP TABLE readings; --",
    "1) OR (1=1",
    "red'--",
    "\\'; SELECT pg_sleep(5); --",
]


@pytest.mark.parametrize("attack", INJECTIONS)
def test_injection_attempts_in_every_filter_have_no_effect(db_dsn: str, attack: str) -> None:
    city = "320100"
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        upsert_incidents(
            conn, [make_incident(city, f"inc-{secrets.token_hex(3)}", 1, Severity.RED)]
        )
        upsert_anomalies(
            conn,
            [
                Anomaly(
                    anomaly_id=f"an-{secrets.token_hex(3)}",
                    city=city,
                    kind="ch4_level",
                    ts=T0,
                    detector="threshold",
                    severity=Severity.RED,
                )
            ],
        )
        before = conn.execute("SELECT count(*) FROM incidents").fetchone()
        filters = [
            queries.EventFilter(city=attack),
            queries.EventFilter(city=city, severities=[attack]),
            queries.EventFilter(city=city, statuses=[attack]),
            queries.EventFilter(city=city, types=[attack]),
            queries.EventFilter(city=city, grid_cell=attack),
        ]
        for f in filters:
            assert queries.incidents(conn, f) == []
            assert queries.anomalies(conn, f) == []
        assert queries.series(conn, attack, attack, attack, T0, T0 + timedelta(hours=1)) == []
        assert queries.cell_series(conn, attack, attack, attack, T0, T0 + timedelta(1)) == []
        assert queries.cell_rollup(conn, attack, attack, T0, T0 + timedelta(1)) == []
        assert queries.latest(conn, attack, T0) == []
        after = conn.execute("SELECT count(*) FROM incidents").fetchone()
        assert conn.execute("SELECT to_regclass('readings')").fetchone() == ("readings",)
    assert before == after


def test_unfiltered_listing_is_scoped_to_the_city_and_paged(db_dsn: str) -> None:
    city = f"3{secrets.randbelow(10**5):05d}"
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        upsert_incidents(
            conn, [make_incident(city, f"inc-{city}-{i}", 1, Severity.BLUE) for i in range(5)]
        )
        page1 = queries.incidents(conn, queries.EventFilter(city=city, limit=3))
        page2 = queries.incidents(conn, queries.EventFilter(city=city, limit=3, offset=3))
        red = queries.incidents(conn, queries.EventFilter(city=city, severities=["red"]))
        box = queries.incidents(
            conn, queries.EventFilter(city=city, bbox=(118.0, 31.0, 119.0, 33.0))
        )
    assert len(page1) == 3
    assert len(page2) == 2
    assert {r["city"] for r in page1 + page2} == {city}
    assert red == []
    assert len(box) == 5


def _served_by(dsn: str, pid_file: Path) -> bool:
    """Whether the server behind ``dsn`` is the postmaster of ``pid_file``: the backend
    serving this connection is one of its children."""
    if not pid_file.exists():
        return False
    postmaster = int(pid_file.read_text().split()[0])
    with psycopg.connect(dsn) as conn:  # read while the backend still serves it
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        status = Path(f"/proc/{row[0] if row else 0}/status")
        lines = status.read_text().splitlines() if status.exists() else []
    parent = next((line.split()[1] for line in lines if line.startswith("PPid:")), "")
    return parent == str(postmaster)


@pytest.mark.asyncio
async def test_sink_survives_a_database_restart_without_loss_or_duplicates(
    live_stack: Settings, db_dsn: str
) -> None:
    postgres = Stack.from_settings(live_stack).postgres
    if not _served_by(db_dsn, postgres.pid_file):
        # Only the local stack's server can be stopped and started from here.
        pytest.skip(
            "cannot restart the database the suite is pointed at: it is not the local"
            f" stack's PostgreSQL ({postgres.data}); restart it by hand to drill this"
        )
    topic = f"it-sink-{secrets.token_hex(3)}"
    device = f"sk-{secrets.token_hex(3)}"
    readings = series_readings(
        device, 3000, start=datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2), step_s=2
    )
    producer = AIOKafkaProducer(bootstrap_servers=live_stack.kafka_bootstrap)
    await producer.start()
    try:
        for r in readings[:1500]:
            await producer.send(topic, r.to_json(), key=device.encode())
        await producer.flush()
        sink = Sink(
            live_stack.kafka_bootstrap,
            db_dsn,
            group_id=f"it-{secrets.token_hex(3)}",
            kinds={topic: "readings"},
            max_records=500,
        )
        await sink.start()
        stop = asyncio.Event()
        task = asyncio.create_task(sink.run(stop))
        await asyncio.sleep(0.5)
        await asyncio.to_thread(postgres.down)
        for r in readings[1500:]:
            await producer.send(topic, r.to_json(), key=device.encode())
        await producer.flush()
        await asyncio.sleep(2)
        await asyncio.to_thread(postgres.up, lambda _m: None)
        deadline = asyncio.get_running_loop().time() + 60
        count = 0
        while asyncio.get_running_loop().time() < deadline:
            count = await asyncio.to_thread(_count, db_dsn, device)
            if count >= len(readings):
                break
            await asyncio.sleep(0.5)
        stop.set()
        await task
        await sink.stop()
    finally:
        await producer.stop()
    assert count == len(readings)
    distinct = await asyncio.to_thread(_count, db_dsn, device, True)
    assert distinct == len(readings)


def _count(dsn: str, device: str, distinct: bool = False) -> int:
    query = (
        "SELECT count(DISTINCT ts) FROM readings WHERE device_id = %s"
        if distinct
        else "SELECT count(*) FROM readings WHERE device_id = %s"
    )
    try:
        with psycopg.connect(dsn) as conn:
            row = conn.execute(query, (device,)).fetchone()
            return int(row[0]) if row else 0
    except psycopg.OperationalError:
        return 0


def test_readings_and_batches_round_trip_through_the_sink_parser() -> None:
    from lifeline import codec
    from lifeline.errors import RecordError
    from streams.sink import parse_readings

    readings = series_readings("x-1", 3)
    assert parse_readings(readings[0].to_json()) == [
        ("320100", "x-1", "pressure", readings[0].ts, readings[0].value, "MPa", [])
    ]
    batch = codec.batch([r.to_json() for r in readings])
    assert [row[3] for row in parse_readings(batch)] == [r.ts for r in readings]
    with pytest.raises(RecordError, match="missing"):
        parse_readings(json.dumps({"v": 1, "ts": "2026-01-01T00:00:00"}).encode())


def test_retention_drops_old_days_and_trims_each_city(fresh_db: str) -> None:
    from store.retention import apply_retention, set_retention

    now = datetime.now(UTC).replace(microsecond=0)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        migrate(conn)
        writer = ReadingWriter(conn)
        for city, device in (("320100", "keep-a"), ("320500", "keep-b")):
            old = [
                Reading(
                    city=city,
                    device_id=device,
                    ts=now - timedelta(days=d),
                    metric="pressure",
                    value=0.3,
                    unit="MPa",
                )
                for d in (1, 5, 20)
            ]
            writer.write(rows_of(old))
        rollups.refresh(conn)
        set_retention(conn, "320500", 3)
        result = apply_retention(conn, now, default_days=10)
        left = conn.execute(
            "SELECT device_id, count(*) FROM readings GROUP BY 1 ORDER BY 1"
        ).fetchall()
        rollup_left = conn.execute(
            "SELECT count(*) FROM readings_1m WHERE device_id = 'keep-b'"
        ).fetchone()
        rollup_a = conn.execute(
            "SELECT count(*) FROM readings_1h WHERE device_id = 'keep-a'"
        ).fetchone()
    assert result.dropped_partitions >= 1  # the 20-day-old day went as a whole partition
    assert left == [("keep-a", 2), ("keep-b", 1)]
    assert result.deleted_rows == 1
    assert rollup_left == (1,)
    assert rollup_a == (2,)


def test_same_device_id_in_two_cities_keeps_both_series(db_dsn: str) -> None:
    device = f"gw-{secrets.token_hex(3)}"
    rows = []
    for city in ("320100", "320500"):
        rows += [
            Reading(
                city=city,
                device_id=device,
                ts=T0 + timedelta(seconds=s),
                metric="ch4",
                value=1.0 if city == "320100" else 2.0,
                unit="%LEL",
            )
            for s in (0, 20)
        ]
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        assert ReadingWriter(conn).write(rows_of(rows)) == 4
        rollups.refresh(conn)
        per_city = conn.execute(
            "SELECT city, sum(sum)::float, sum(count)::int FROM readings_1m"
            " WHERE device_id = %s GROUP BY city ORDER BY city",
            (device,),
        ).fetchall()
    assert per_city == [("320100", 2.0, 2), ("320500", 4.0, 2)]


def _points(conn: psycopg.Connection[Any], device: str, start: datetime, end: datetime) -> Any:
    return [
        queries.series(conn, "320100", device, "pressure", start, end, width)
        for width in (timedelta(minutes=1), timedelta(minutes=15), timedelta(hours=1))
    ]


def _same(a: list[list[queries.Point]], b: list[list[queries.Point]]) -> None:
    assert [[(p.bucket, p.count, p.min, p.max, p.last) for p in s] for s in a] == [
        [(p.bucket, p.count, p.min, p.max, p.last) for p in s] for s in b
    ]
    for sa, sb in zip(a, b, strict=True):
        assert [p.avg for p in sa] == pytest.approx([p.avg for p in sb])


def test_rollup_job_folds_in_late_and_replayed_readings_and_queries_stay_whole(
    fresh_db: str, store_path: str
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    # Whole hours, so that every bucket the readings fall in is inside the range.
    start = (now - timedelta(hours=3)).replace(minute=0, second=0)
    end = start + timedelta(hours=5)
    device = "rj-1"
    recent = series_readings(device, 360, start=now - timedelta(hours=2), step_s=20)
    future = series_readings(device, 6, start=now + timedelta(minutes=10), step_s=20)
    late = series_readings(device, 9, start=now - timedelta(hours=2, minutes=30), step_s=20)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        migrate(conn)
        writer = ReadingWriter(conn)
        assert writer.write(rows_of(recent + future)) == 366
        # Nothing materialized yet: every bucket comes from the readings.
        unmaterialized = _points(conn, device, start, end)
        assert sum(p.count for p in unmaterialized[0]) == 366
        if store_path == TIMESCALE:
            _aggregates_fold_in(conn, writer, device, (start, end), late + recent[:50])
            return

        # The plain path: the rollup job, its watermark and its pending ranges.
        first = rollups.refresh(conn)
        assert first.ran
        assert first.watermark is not None
        assert now - timedelta(minutes=2) <= first.watermark <= now
        assert first.minute_rows >= 110  # two hours of 1-minute buckets, less the last
        _same(_points(conn, device, start, end), unmaterialized)
        # The future readings lie past the watermark: still pending, still counted.
        pending = conn.execute("SELECT min(lo), max(hi) FROM rollup_pending").fetchone()
        assert pending == (first.watermark, future[-1].ts)

        # Late readings (and a replay) are logged too and folded in by the next refresh.
        assert writer.write(rows_of(late + recent[:50])) == 9
        assert not writer.direct  # the replay sent the batch the careful way
        # A longer lag holds the watermark where it is, whatever the clock does meanwhile.
        hold = timedelta(minutes=5)
        second = rollups.refresh(conn, lag=hold)
        # The minutes of the late readings are rewritten, and nothing else.
        assert second.watermark == first.watermark
        assert second.minute_rows == len({r.ts.replace(second=0) for r in late})
        with_late = _points(conn, device, start, end)
        assert sum(p.count for p in with_late[0]) == 375
        assert sum(p.count for p in with_late[2]) == 375
        # A refresh with nothing new changes nothing.
        third = rollups.refresh(conn, lag=hold)
        assert (third.minute_rows, third.hour_rows) == (0, 0)
        _same(_points(conn, device, start, end), with_late)
        assert writer.write(rows_of(series_readings(device, 3, start=now - timedelta(days=2)))) == 3
        assert writer.direct  # no reading of that batch was stored: the next goes straight in


def _aggregates_fold_in(
    conn: psycopg.Connection[Any],
    writer: ReadingWriter,
    device: str,
    span: tuple[datetime, datetime],
    late_and_replayed: list[Reading],
) -> None:
    """TimescaleDB's equivalent of the rollup job: the job does nothing, and late readings
    and a replay, once the continuous aggregates refresh over them (as their policies
    do), count once at every resolution."""
    assert not rollups.refresh(conn).ran
    assert writer.write(rows_of(late_and_replayed)) == 9
    for view in ("readings_1m", "readings_1h"):
        conn.execute(
            sql.SQL("CALL refresh_continuous_aggregate({}, {}, {})").format(
                sql.Literal(view), sql.Literal(span[0]), sql.Literal(span[1])
            )
        )
    with_late = _points(conn, device, *span)
    assert sum(p.count for p in with_late[0]) == 375
    assert sum(p.count for p in with_late[2]) == 375


def test_db_rollups_command_refreshes_on_demand(fresh_db: str, store_path: str) -> None:
    import os
    import subprocess
    import sys

    device = "cli-1"
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        migrate(conn)
        ReadingWriter(conn).write(rows_of(series_readings(device, 9, step_s=20)))
    env = {**os.environ, "CITYOPS_DB_DSN": fresh_db}
    proc = subprocess.run(
        [sys.executable, "-m", "cityops.cli", "db", "rollups"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    if store_path == PLAIN:
        assert proc.stdout.startswith("refreshed 1 range(s): 3 minute and 1 hour bucket(s) written")
    else:  # continuous aggregates refresh themselves, and are real-time meanwhile
        assert proc.stdout.startswith("nothing to do: continuous aggregates")
    with psycopg.connect(fresh_db) as conn:
        rows = conn.execute(
            "SELECT sum(count) FROM readings_1m WHERE device_id = %s", (device,)
        ).fetchone()
    assert rows == (9,)


def test_an_imei_or_platform_id_belongs_to_one_device_of_a_city(db_dsn: str) -> None:
    from lifeline.devices import gas_well
    from store.devices import load_devices, upsert_devices
    from store.errors import Conflict

    city = f"33{secrets.randbelow(10_000):04d}"
    first = gas_well(
        city, "nb-a", transport="http", source="ct", platform_id="p-1", imei="490154203237518"
    )
    creds = {"nb-a": (f"{city}.nb-a", ""), "nb-b": (f"{city}.nb-b", "")}
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        upsert_devices(conn, [first], creds)
        [stored] = load_devices(conn, [city])
        assert (stored.platform_id, stored.imei) == ("p-1", "490154203237518")
        same_imei = gas_well(city, "nb-b", transport="http", source="ct", imei="490154203237518")
        same_id = gas_well(city, "nb-b", transport="http", source="ct", platform_id="p-1")
        for clash in (same_imei, same_id):
            with pytest.raises(Conflict):
                upsert_devices(conn, [clash], creds)
        other_source = gas_well(city, "nb-b", transport="http", source="iot", platform_id="p-1")
        upsert_devices(conn, [other_source], creds)
        assert {d.device_id for d in load_devices(conn, [city])} == {"nb-a", "nb-b"}


def test_a_camera_that_reports_events_only_is_not_offline_and_lists_its_events(
    db_dsn: str,
) -> None:
    from lifeline.devices import Device, camera
    from lifeline.records import DeviceStatus
    from store.devices import DeviceFilter, camera_events, upsert_devices, with_status
    from store.events import upsert_device_status
    from store.overview import overview

    city = f"32{secrets.randbelow(10_000):04d}"
    now = datetime.now(UTC)

    def pushed(serial: int) -> Device:
        return camera(city, serial, transport="http", source="isc", platform_id=f"idx-{serial}")

    events_only, beating, silent = pushed(1), pushed(2), pushed(3)
    event = Anomaly(
        anomaly_id=f"{city}:{events_only.device_id}:smoke_fire:1",
        city=city,
        kind="video_smoke_fire",
        camera_id=events_only.device_id,
        ts=now - timedelta(hours=3),
        detector="video",
        severity=Severity.ORANGE,
        message="烟雾检测 (Hikvision iSecure Center 192513)",
        pictures=("http://isc.example/pic/1.jpg",),
    )
    unmapped = event.model_copy(
        update={
            "anomaly_id": event.anomaly_id + "u",
            "kind": "video_unmapped",
            "ts": now - timedelta(hours=2),
            "pictures": (),
        }
    )
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        devices = [events_only, beating, silent]
        upsert_devices(conn, devices, {d.device_id: (f"{city}.{d.device_id}", "") for d in devices})
        upsert_device_status(
            conn,
            [
                DeviceStatus(
                    city=city,
                    device_id=beating.device_id,
                    family="cameras",
                    status="heartbeat",
                    ts=now - timedelta(seconds=30),
                ),
                DeviceStatus(
                    city=city,
                    device_id=silent.device_id,
                    family="cameras",
                    status="heartbeat",
                    ts=now - timedelta(hours=5),
                ),
            ],
        )
        upsert_anomalies(conn, [event, unmapped])
        rows, _ = with_status(conn, city, now, timedelta(minutes=10), DeviceFilter())
        seen = overview(conn, city, now, timedelta(minutes=10))["devices"]
        listed = camera_events(conn, city, events_only.device_id)
        offline, _ = with_status(conn, city, now, timedelta(minutes=10), DeviceFilter(online=False))
    online = {r["device_id"]: r["online"] for r in rows}
    assert online == {events_only.device_id: None, beating.device_id: True, silent.device_id: False}
    assert (seen["online"], seen["offline"], seen["unreported"]) == (1, 1, 1)
    assert [r["device_id"] for r in offline] == [silent.device_id]
    assert [r["kind"] for r in listed] == ["video_unmapped", "video_smoke_fire"]
    assert listed[1]["pictures"] == ["http://isc.example/pic/1.jpg"]
