"""The store sink: readings, device status, anomalies, incidents and dead letters into the store.

Each poll becomes one database transaction (readings by COPY); Kafka offsets are
committed only after the database has committed, and every write is idempotent, so
a crash or a replay never loses or duplicates a row. While the database is down the
sink holds its batch, retries with back-off, and carries on when it returns. A sink
that writes readings also runs the rollup job of the plain path every few seconds, on
a connection of its own (one sink at a time does; see :mod:`store.rollups`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from prometheus_client import Counter, Gauge

from lifeline import codec, topics
from lifeline.errors import RecordError
from lifeline.records import Anomaly, DeviceStatus, Incident
from store import rollups
from store.events import (
    insert_deadletters,
    upsert_anomalies,
    upsert_device_status,
    upsert_incidents,
)
from store.readings import ReadingRow, ReadingWriter

log = logging.getLogger(__name__)

ROWS = Counter("cityops_sink_rows_total", "Rows written by the sink", ["table"])
REJECTED = Counter("cityops_sink_rejected_total", "Records the sink could not parse", ["topic"])
DB_RETRIES = Counter("cityops_sink_db_retries_total", "Database write retries")
LAG_S = Gauge("cityops_sink_batch_age_seconds", "Age of the newest record written")
ROLLUP_ROWS = Counter(
    "cityops_rollup_rows_total", "Rollup buckets written by the rollup job", ["table"]
)
ROLLUP_MARK = Gauge(
    "cityops_rollup_watermark_seconds", "Time up to which the rollups are materialized"
)
ROLLUP_S = 5.0

#: Kafka topic → what the sink writes from it.
SINK_TOPICS = {
    topics.READINGS.name: "readings",
    topics.STATUS.name: "status",
    topics.ANOMALIES.name: "anomalies",
    topics.INCIDENTS.name: "incidents",
    topics.DEADLETTER.name: "deadletters",
}


@dataclass
class Batch:
    readings: list[ReadingRow] = field(default_factory=list)
    anomalies: dict[str, Anomaly] = field(default_factory=dict)
    incidents: dict[str, Incident] = field(default_factory=dict)
    statuses: dict[tuple[str, str], DeviceStatus] = field(default_factory=dict)
    deadletters: list[tuple[int, int, dict[str, Any]]] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    newest_ms: int = 0

    def __len__(self) -> int:
        return (
            len(self.readings)
            + len(self.anomalies)
            + len(self.incidents)
            + len(self.statuses)
            + len(self.deadletters)
        )


def parse_readings(value: bytes) -> list[ReadingRow]:
    """The readings of one record (a reading or a batch) as rows."""
    return [
        (r.city, r.device_id, r.metric, r.ts, r.value, r.unit, list(r.quality))
        for r in codec.decode(value)
    ]


def collect(
    records: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
    kinds: dict[str, str] | None = None,
) -> Batch:
    """Parse one poll into a batch; records that do not parse become dead-letter rows."""
    kinds = kinds or SINK_TOPICS
    batch = Batch()
    for tp, recs in records.items():
        kind = kinds.get(tp.topic)
        for rec in recs:
            value = rec.value
            batch.offsets[tp] = rec.offset + 1
            batch.newest_ms = max(batch.newest_ms, rec.timestamp)
            if value is None:
                continue
            try:
                if kind == "readings":
                    batch.readings.extend(parse_readings(value))
                elif kind == "anomalies":
                    a = Anomaly.from_json(value)
                    batch.anomalies[a.anomaly_id] = a
                elif kind == "incidents":
                    i = Incident.from_json(value)
                    current = batch.incidents.get(i.incident_id)
                    if current is None or i.revision > current.revision:
                        batch.incidents[i.incident_id] = i
                elif kind == "status":
                    st = DeviceStatus.from_json(value)
                    seen = batch.statuses.get((st.city, st.device_id))
                    if seen is None or st.ts >= seen.ts:
                        batch.statuses[(st.city, st.device_id)] = st
                elif kind == "deadletters":
                    batch.deadletters.append((tp.partition, rec.offset, json.loads(value)))
            except (ValueError, KeyError, TypeError, RecordError) as exc:
                # Kept, not dropped: the record becomes a dead letter row with the reason.
                REJECTED.labels(tp.topic).inc()
                batch.deadletters.append(
                    (
                        -1 - tp.partition,
                        rec.offset,
                        {
                            "received_at": datetime.fromtimestamp(
                                rec.timestamp / 1000
                            ).astimezone(),
                            "mqtt_topic": f"kafka:{tp.topic}",
                            "reason": "sink_unparseable",
                            "detail": f"{type(exc).__name__}: {exc}"[:500],
                            "raw_b64": _b64(value),
                        },
                    )
                )
    return batch


def _connect(dsn: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=True)


def _b64(value: bytes) -> str:
    import base64

    return base64.b64encode(value).decode()


class Sink:
    """Consumes the sink topics in group ``group_id`` and writes them to ``dsn``."""

    def __init__(
        self,
        bootstrap: str,
        dsn: str,
        group_id: str = "cityops-sink",
        kinds: dict[str, str] | None = None,
        max_records: int = 50_000,
        offset_reset: str = "earliest",
        rollup_every_s: float | None = ROLLUP_S,
    ) -> None:
        self.dsn = dsn
        self.kinds = kinds or SINK_TOPICS
        self.rollup_every_s = rollup_every_s if "readings" in self.kinds.values() else None
        self.max_records = max_records
        self.written = 0
        self.consumer = AIOKafkaConsumer(
            *self.kinds,
            bootstrap_servers=bootstrap,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset=offset_reset,
            max_partition_fetch_bytes=8 << 20,
            fetch_max_bytes=64 << 20,
            max_poll_interval_ms=30 * 60 * 1000,
        )
        self._conn: psycopg.Connection[Any] | None = None
        self._writer: ReadingWriter | None = None

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()
        if self._conn is not None:
            self._conn.close()

    async def run(self, stop: asyncio.Event) -> None:
        """Poll, parse and write until ``stop``; the next poll is parsed while the
        database writes the previous one, and offsets are committed in order, each only
        after its batch is in the database."""
        done = asyncio.Event()
        refresher = None
        if self.rollup_every_s:
            refresher = asyncio.create_task(self._refresh_rollups(done))
        try:
            await self._consume(stop)
        finally:
            # A refresh under way finishes (its thread cannot be interrupted) before the end.
            done.set()
            if refresher is not None:
                await refresher

    async def _consume(self, stop: asyncio.Event) -> None:
        pending: tuple[asyncio.Task[None], Batch] | None = None
        while not stop.is_set():
            records = await self.consumer.getmany(timeout_ms=500, max_records=self.max_records)
            batch = collect(records, self.kinds) if records else None
            if pending is not None:
                await self._finish(*pending)
                pending = None
            if batch is not None:
                task = asyncio.create_task(self._write_until_done(batch, stop))
                pending = (task, batch)
        if pending is not None:
            await self._finish(*pending)

    async def _refresh_rollups(self, stop: asyncio.Event) -> None:
        """Run the rollup job every ``rollup_every_s`` until ``stop``."""
        assert self.rollup_every_s is not None  # noqa: S101  # started only then
        conn: psycopg.Connection[Any] | None = None
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.rollup_every_s)
                try:
                    if conn is None or conn.closed:
                        conn = await asyncio.to_thread(_connect, self.dsn)
                    done = await asyncio.to_thread(rollups.refresh, conn)
                except psycopg.Error as exc:
                    log.warning("rollup refresh failed", extra={"error": str(exc).strip()[:200]})
                    if conn is not None:
                        conn.close()
                    conn = None
                    continue
                if done.ran:
                    ROLLUP_ROWS.labels("readings_1m").inc(done.minute_rows)
                    ROLLUP_ROWS.labels("readings_1h").inc(done.hour_rows)
                    if done.watermark is not None:
                        ROLLUP_MARK.set(done.watermark.timestamp())
        finally:
            if conn is not None:
                conn.close()

    async def _finish(self, task: asyncio.Task[None], batch: Batch) -> None:
        await task
        try:
            await self.consumer.commit(batch.offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The group moved on (rebalance); the next owner re-reads, writes are idempotent.
            log.warning("offset commit failed", extra={"error": repr(exc)})

    async def _write_until_done(self, batch: Batch, stop: asyncio.Event) -> None:
        delay = 0.5
        while True:
            try:
                await asyncio.to_thread(self._write, batch)
                return
            except psycopg.OperationalError as exc:
                DB_RETRIES.inc()
                log.warning(
                    "database unavailable; holding the batch",
                    extra={"error": str(exc).strip()[:200], "rows": len(batch)},
                )
                self._drop_connection()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _write(self, batch: Batch) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = _connect(self.dsn)
            self._writer = ReadingWriter(self._conn)
        conn, writer = self._conn, self._writer
        assert writer is not None  # noqa: S101  # set with the connection
        with conn.transaction():
            new = writer.write_in_transaction(batch.readings) if batch.readings else 0
            upsert_anomalies(conn, list(batch.anomalies.values()))
            upsert_incidents(conn, list(batch.incidents.values()))
            upsert_device_status(conn, list(batch.statuses.values()))
            insert_deadletters(conn, batch.deadletters)
        self.written += len(batch)
        ROWS.labels("readings").inc(new)
        ROWS.labels("anomalies").inc(len(batch.anomalies))
        ROWS.labels("incidents").inc(len(batch.incidents))
        ROWS.labels("device_status").inc(len(batch.statuses))
        ROWS.labels("deadletters").inc(len(batch.deadletters))
        if batch.newest_ms:
            LAG_S.set(max(0.0, time.time() - batch.newest_ms / 1000))

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None
        self._writer = None
