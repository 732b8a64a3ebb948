"""``cityops bench store``: sink throughput, the raw COPY ceiling, and bucketed queries.

* ``copy_rows_per_s`` — readings COPYed (binary, as the writer does) into a staging
  table from Python, nothing else.
* ``sink_rows_per_s`` — readings pre-loaded into a Kafka topic, then read, parsed and
  written by the real sink (COPY, idempotent insert, the rollup job's log, offset
  commit; its rollup job running beside it), timed from the first batch committed to
  the last, with ``workers`` sink processes in one group (two by default, one per core
  here); ``single_sink_rows_per_s`` the same with one.
* ``rollup_rows_per_s`` — readings folded into the 1-minute and 1-hour rollups by one
  refresh of the rollup job: the rollups of the time span the sink wrote are dropped
  and recomputed from every reading of the city in that span.
* ``bucket_query_ms`` — 30 days of 1,000 devices at one reading a minute (43.2 M rows,
  generated once into the bench database): the median time of a bucketed 30-day series
  for one device and for one grid cell (10 devices); the larger of the two.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import secrets
import signal
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from psycopg import sql
from tqdm import tqdm

from cityops.settings import Settings, get_settings
from cityops.sink import run_sinks
from store import queries, rollups
from store.migrate import migrate
from store.readings import STAGE_TYPES

BENCH_DB = "cityops_bench_store"
DEVICES = 1000
DAYS = 30
PER_CELL = 10
COPY_ROWS = 1_000_000
SINK_ROWS = 1_000_000


def run(runs: int = 20, workers: int = 2) -> dict[str, Any]:
    settings = get_settings()
    dsn = _database(settings)
    copy_rate = _copy_ceiling(dsn)
    single_rate, _ = asyncio.run(_sink_rate(settings, dsn, 1))
    sink_rate, prefix = asyncio.run(_sink_rate(settings, dsn, workers))
    rollup_rate, rolled = _rollup_rate(dsn, prefix)
    end = _dataset(dsn)
    start = end - timedelta(days=DAYS)
    device_ms, cell_ms = [], []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(runs):
            t0 = time.perf_counter()
            points = queries.series(
                conn, "320100", f"bq-{i * 37 % DEVICES:04d}", "pressure", start, end
            )
            device_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            cell = queries.cell_series(
                conn, "320100", _cell(i % (DEVICES // PER_CELL)), "pressure", start, end
            )
            cell_ms.append((time.perf_counter() - t0) * 1000)
    device_q, cell_q = statistics.median(device_ms), statistics.median(cell_ms)
    return {
        "sink_rows_per_s": round(sink_rate),
        "single_sink_rows_per_s": round(single_rate),
        "copy_rows_per_s": round(copy_rate),
        "rollup_rows_per_s": round(rollup_rate),
        "rollup_rows": rolled,
        "bucket_query_ms": round(max(device_q, cell_q), 1),
        "device_query_ms": round(device_q, 1),
        "cell_query_ms": round(cell_q, 1),
        "series_points": len(points),
        "cell_points": len(cell),
        "dataset_rows": DEVICES * DAYS * 24 * 60,
        "sink_workers": workers,
        "backend": "plain",
        "runs": runs,
    }


def _database(settings: Settings) -> str:
    base = settings.db_dsn.get_secret_value()
    with psycopg.connect(base, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_DB,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DB)))
    dsn = base.rsplit("/", 1)[0] + "/" + BENCH_DB
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, settings.timescale)
    return dsn


def _rows(n: int, device_prefix: str) -> list[tuple[Any, ...]]:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=12)
    return [
        (
            "320100",
            f"{device_prefix}-{i % 500:03d}",
            "pressure",
            t0 + timedelta(milliseconds=40 * i),
            0.3 + (i % 13) * 0.001,
            "MPa",
            [],
        )
        for i in range(n)
    ]


def _copy_ceiling(dsn: str) -> float:
    rows = _rows(COPY_ROWS, "cp")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TEMP TABLE copy_probe (city text, device_id text, metric text,"
            " ts timestamptz, value double precision, unit text, quality text[])"
        )
        t0 = time.perf_counter()
        with (
            conn.transaction(),
            conn.cursor().copy("COPY copy_probe FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.set_types(STAGE_TYPES)
            for row in tqdm(rows, desc="copy ceiling", unit="row", mininterval=1):
                copy.write_row(row)
        return COPY_ROWS / (time.perf_counter() - t0)


async def _sink_rate(settings: Settings, dsn: str, workers: int) -> tuple[float, str]:
    import json

    topic = f"bench.readings.{secrets.token_hex(3)}"
    prefix = f"sk{secrets.token_hex(2)}"
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, linger_ms=20, max_batch_size=1 << 20
    )
    await producer.start()
    try:
        for city, dev, metric, ts, value, unit, _q in tqdm(
            _rows(SINK_ROWS, prefix), desc="preload kafka", unit="msg", mininterval=1
        ):
            body = {
                "v": 1,
                "city": city,
                "device_id": dev,
                "ts": ts.isoformat(),
                "metric": metric,
                "value": value,
                "unit": unit,
            }
            await producer.send(topic, json.dumps(body).encode(), key=dev.encode())
        await producer.flush()
    finally:
        await producer.stop()
    bench_settings = settings.model_copy(update={"db_dsn": type(settings.db_dsn)(dsn)})
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(
        target=run_sinks,
        args=(bench_settings,),
        kwargs={
            "workers": workers,
            "group": f"bench-{prefix}",
            "metrics_port": 0,
            "kinds": {topic: "readings"},
        },
    )
    proc.start()
    bar = tqdm(total=SINK_ROWS, desc=f"sink x{workers}", unit="row")
    # Timed from the first batch committed, so process start and the group join are not
    # counted; the rows of that first observation are left out of the rate accordingly.
    written, first_rows, t_first = 0, 0, 0.0
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        # The sink commits a batch's offsets only after the database commit, so the
        # group's committed offsets count rows in the store, at no cost to the database.
        while written < SINK_ROWS and proc.is_alive():
            await asyncio.sleep(0.05)
            offsets = await admin.list_consumer_group_offsets(f"bench-{prefix}")
            written = sum(meta.offset for meta in offsets.values() if meta.offset > 0)
            if written and not t_first:
                first_rows, t_first = written, time.perf_counter()
            bar.update(written - bar.n)
    finally:
        await admin.close()
    elapsed = time.perf_counter() - t_first
    bar.close()
    if proc.pid is not None:
        os.kill(proc.pid, signal.SIGTERM)
    proc.join(timeout=30)
    return (SINK_ROWS - first_rows) / elapsed, prefix


def _rollup_rate(dsn: str, prefix: str) -> tuple[float, int]:
    """(readings rolled up per second, readings rolled up) by one refresh of the sink's span."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rollups.refresh(conn)
        # Whole hours around the sink's span: dropped, then recomputed from the readings.
        span = conn.execute(
            "SELECT date_trunc('hour', min(ts)), date_trunc('hour', max(ts)) + interval '1 hour'"
            " FROM readings WHERE city = '320100' AND device_id = %s",
            (f"{prefix}-000",),
        ).fetchone()
        assert span is not None  # noqa: S101  # an aggregate always returns a row
        lo, hi = span
        row = conn.execute(
            "SELECT count(*) FROM readings WHERE city = '320100' AND ts >= %s AND ts < %s",
            (lo, hi),
        ).fetchone()
        rolled = int(row[0]) if row else 0
        with conn.transaction():
            for table in ("readings_1m", "readings_1h"):
                conn.execute(
                    sql.SQL(
                        "DELETE FROM {} WHERE city = '320100' AND bucket >= %s AND bucket < %s"
                    ).format(sql.Identifier(table)),
                    (lo, hi),
                )
            conn.execute(
                "INSERT INTO rollup_pending (city, lo, hi)"
                " VALUES ('320100', %s, %s::timestamptz - interval '1 microsecond')",
                (lo, hi),
            )
        t0 = time.perf_counter()
        rollups.refresh(conn)
        return rolled / (time.perf_counter() - t0), rolled


def _cell(i: int) -> str:
    return f"320102001001{i + 1:03d}"


def _dataset(dsn: str) -> datetime:
    """Generate the 30-day dataset once (readings, rollups, devices); return its end."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_dataset (end_ts timestamptz NOT NULL)")
        row = conn.execute("SELECT end_ts FROM bench_dataset").fetchone()
        if row:
            return row[0]  # type: ignore[no-any-return]
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        start = end - timedelta(days=DAYS)
        conn.execute(
            "SELECT cityops_ensure_partitions(%s::date, %s::date)", (start.date(), end.date())
        )
        conn.execute(
            "INSERT INTO devices (city, device_id, family, kind, metrics, owner_dept, lon, lat,"
            " grid_code, mqtt_username, mqtt_password_hash)"
            " SELECT '320100', 'bq-' || lpad(d::text, 4, '0'), 'sensors', 'water_pressure',"
            " '{\"pressure\": \"MPa\"}', 'bench', 118.78, 32.04,"
            " '320102001001' || lpad((d / %s + 1)::text, 3, '0'),"
            " '320100.bq-' || lpad(d::text, 4, '0'), 'x'"
            " FROM generate_series(0, %s - 1) d ON CONFLICT DO NOTHING",
            (PER_CELL, DEVICES),
        )
        for day in tqdm(range(DAYS), desc="generate 30 days", unit="day"):
            d0 = start + timedelta(days=day)
            conn.execute(
                "INSERT INTO readings SELECT '320100', 'bq-' || lpad(d::text, 4, '0'),"
                " 'pressure', ts, 0.3 + 0.05 * sin(extract(epoch FROM ts) / 3600.0 + d), 'MPa',"
                " '{}' FROM generate_series(0, %s - 1) d,"
                " generate_series(%s::timestamptz, %s::timestamptz - interval '1 minute',"
                " interval '1 minute') ts ON CONFLICT DO NOTHING",
                (DEVICES, d0, d0 + timedelta(days=1)),
            )
            for table, unit, source in (
                ("readings_1m", "minute", "readings"),
                ("readings_1h", "hour", "readings"),
            ):
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {} SELECT date_trunc({}, ts), city, device_id, metric,"
                        " min(value), max(value), sum(value), count(*), max(ts),"
                        " (array_agg(value ORDER BY ts DESC))[1] FROM {}"
                        " WHERE ts >= %s AND ts < %s AND device_id LIKE 'bq-%%'"
                        " GROUP BY 1, 2, 3, 4 ON CONFLICT DO NOTHING"
                    ).format(sql.Identifier(table), sql.Literal(unit), sql.Identifier(source)),
                    (d0, d0 + timedelta(days=1)),
                )
        conn.execute("ANALYZE readings")
        conn.execute("ANALYZE readings_1m")
        conn.execute("ANALYZE readings_1h")
        conn.execute("INSERT INTO bench_dataset VALUES (%s)", (end,))
        return end
