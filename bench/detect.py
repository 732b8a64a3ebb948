"""``cityops bench detect``: detection quality on labelled series, and kernel speed.

Quality is counted per incident: a detection is a run of alarmed rows; it is a true
positive when it overlaps an injected incident (or starts within ``GRACE`` intervals of
its end), a false positive otherwise. Time to detect is in reporting intervals from the
incident's first sample to its first alarmed row.

The kernel figure is the default detectors of every kind run over batches of one
series, on one core, timed alone.

The worker figure is the real ``cityops worker`` process on the real broker: readings
of 2,000 registered gas wells are loaded into a topic of their own first, then the
worker is started on it; the rate is taken between its offset commits (anomalies,
changelog and all) from a tenth of the run to the end. In the same run, on the same
topic: ``faust_ceiling_per_s``, a Faust agent that only iterates the events (what Faust
alone allows here), and ``step_readings_per_s``, the worker's detection fold alone.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
from tqdm import tqdm

from lifeline.detect.series import SeriesDetector
from simulators.scenarios import KINDS, generate

GRACE = 5


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def run(
    runs: int = 3,
    series_per_kind: int = 60,
    length: int = 2000,
    kernel_batch: int = 1000,
    worker_readings: int = 100_000,
) -> dict[str, Any]:
    rng = np.random.default_rng(2026)
    tp = fp = fn = 0
    ttd: list[int] = []
    per_kind: dict[str, dict[str, int]] = {}
    bar = tqdm(total=len(KINDS) * series_per_kind, desc="bench detect", unit="series")
    for kind in KINDS:
        stats = {"tp": 0, "fp": 0, "fn": 0}
        for i in range(series_per_kind):
            series = generate(kind, length, rng, inject=i % 2 == 0)
            det = SeriesDetector.for_metric(series.kind, series.metric)
            _, out = det.run(det.init(), series.ts, series.values)
            alarms = _runs(out.rank > 0)
            found = set()
            for a0, a1 in alarms:
                hit = [j for j, (s, e) in enumerate(series.truth) if a0 < e + GRACE and a1 > s]
                if hit:
                    found.update(hit)
                else:
                    stats["fp"] += 1
            for j, (s, _e) in enumerate(series.truth):
                if j in found:
                    stats["tp"] += 1
                    first = min(a0 for a0, a1 in alarms if a1 > s)
                    ttd.append(max(0, first - s))
                else:
                    stats["fn"] += 1
            bar.update()
        per_kind[kind] = stats
        tp, fp, fn = tp + stats["tp"], fp + stats["fp"], fn + stats["fn"]
    bar.close()

    rates = []
    batches = [generate(k, kernel_batch * 4, rng, inject=True) for k in KINDS]
    for _ in range(runs):
        count, elapsed = 0, 0.0
        for series in batches:
            det = SeriesDetector.for_metric(series.kind, series.metric)
            state = det.init()
            t0 = time.perf_counter()
            for a in range(0, series.values.size, kernel_batch):
                state, _ = det.run(
                    state, series.ts[a : a + kernel_batch], series.values[a : a + kernel_batch]
                )
            elapsed += time.perf_counter() - t0
            count += series.values.size
        rates.append(count / elapsed)
    return {
        "precision": round(tp / (tp + fp), 4) if tp + fp else None,
        "recall": round(tp / (tp + fn), 4) if tp + fn else None,
        "median_ttd_intervals": float(statistics.median(ttd)) if ttd else None,
        "kernel_readings_per_s": round(statistics.median(rates)),
        "kernel_batch": kernel_batch,
        **(_worker_rate(worker_readings) if worker_readings else {}),
        "incidents": tp + fn,
        "false_positives": fp,
        "per_kind": per_kind,
        "series": len(KINDS) * series_per_kind,
        "runs": runs,
    }


WORKER_CITY = "329990"
WORKER_DEVICES = 2000


def _worker_rate(n: int) -> dict[str, Any]:
    import asyncio
    import os
    import secrets
    import signal
    import subprocess
    import sys
    import tempfile
    from datetime import UTC, datetime, timedelta
    from pathlib import Path

    import orjson
    import psycopg
    from aiokafka import AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from cityops.settings import get_settings
    from lifeline.devices import Device
    from store.devices import upsert_devices

    settings = get_settings()
    with psycopg.connect(settings.db_dsn.get_secret_value(), autocommit=True) as conn:
        wells = [
            Device(
                city=WORKER_CITY,
                device_id=f"bw-{i:05d}",
                family="sensors",
                kind="gas_well",
                metrics={"ch4": "%LEL"},
                asset_id=f"BW-{i:05d}",
                grid_code=f"329990001001{i % 1000:03d}",
                owner_dept="bench",
                lon=118.7,
                lat=32.0,
            )
            for i in range(WORKER_DEVICES)
        ]
        upsert_devices(
            conn, wells, {w.device_id: (f"{WORKER_CITY}.{w.device_id}", "x") for w in wells}
        )
    topic = f"bench.readings.{secrets.token_hex(3)}"
    app_id = f"bench-worker-{secrets.token_hex(3)}"
    rng = np.random.default_rng(7)

    async def load() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 12, 1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, linger_ms=20, max_batch_size=1 << 20
        )
        await producer.start()
        start = datetime.now(UTC) - timedelta(days=2)
        try:
            pending = []
            for i in tqdm(range(n), desc="load readings", unit="reading", mininterval=1):
                dev = f"bw-{i % WORKER_DEVICES:05d}"
                step = i // WORKER_DEVICES
                value = float(rng.normal(2, 0.3)) + (30.0 if 40 <= step % 100 < 45 else 0.0)
                body = orjson.dumps(
                    {
                        "v": 1,
                        "city": WORKER_CITY,
                        "device_id": dev,
                        "metric": "ch4",
                        "value": value,
                        "unit": "%LEL",
                        "ts": (start + timedelta(minutes=step)).isoformat(),
                    }
                )
                pending.append(await producer.send(topic, body, key=dev.encode()))
                if len(pending) >= 5000:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
        finally:
            await producer.stop()

    async def committed() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(
                app_id, partitions=[TopicPartition(topic, p) for p in range(12)]
            )
        finally:
            await admin.close()
        return sum(max(0, m.offset) for m in offsets.values())

    asyncio.run(load())
    env = {**os.environ, "CITYOPS_CITIES": WORKER_CITY, "CITYOPS_LOG_LEVEL": "WARNING"}
    with tempfile.NamedTemporaryFile(prefix="bench-worker-", suffix=".log", delete=False) as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cityops.cli",
                "worker",
                "--app-id",
                app_id,
                "--offset-reset",
                "earliest",
                "--readings-topic",
                topic,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        samples: list[tuple[float, int]] = []
        bar = tqdm(total=n, desc="worker", unit="reading")
        try:
            deadline = time.monotonic() + 600
            done = 0
            while done < n and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.25)
                now_done = asyncio.run(committed())
                if now_done != done:
                    samples.append((time.monotonic(), now_done))
                    bar.update(now_done - done)
                    done = now_done
        finally:
            bar.close()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if len(samples) < 2 or samples[-1][1] < n:
        tail = Path(log.name).read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the worker processed {done} of {n} readings; its log:\n{tail}")
    Path(log.name).unlink()
    # Sustained rate: from the first commit past a tenth of the run (partitions assigned,
    # fetching under way) to the last.
    (t0, c0) = next((t, c) for t, c in samples if c >= n // 10)
    (t1, c1) = samples[-1]
    ceiling = subprocess.run(
        [sys.executable, "-m", "bench._faust_ceiling", settings.kafka_bootstrap, topic, str(n)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return {
        "worker_readings_per_s": round((c1 - c0) / (t1 - t0)) if t1 > t0 else None,
        "worker_readings": n,
        "faust_ceiling_per_s": next(
            orjson.loads(line)["per_s"]
            for line in ceiling.stdout.splitlines()
            if line.startswith('{"per_s"')
        ),
        "step_readings_per_s": _step_rate(),
    }


def _step_rate(n: int = 50_000) -> int:
    """The worker's detection per reading (the scalar fold of a gas well), one core."""
    from datetime import UTC, datetime, timedelta

    from lifeline.devices import Device
    from streams.detection import DetectionFold

    well = Device(
        city=WORKER_CITY,
        device_id="bw-step",
        family="sensors",
        kind="gas_well",
        metrics={"ch4": "%LEL"},
        asset_id="BW-STEP",
        grid_code=f"329990001001{0:03d}",
        owner_dept="bench",
        lon=118.7,
        lat=32.0,
    )
    fold = DetectionFold()
    rng = np.random.default_rng(3)
    values = (rng.normal(2, 0.3, n) + np.where(np.arange(n) % 100 >= 95, 30.0, 0.0)).tolist()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    stamps = [start + timedelta(minutes=i) for i in range(n)]
    state = None
    t0 = time.perf_counter()
    for ts, value in zip(stamps, values, strict=True):
        state, _ = fold.step(well, "ch4", ts, value, "%LEL", state)
    return round(n / (time.perf_counter() - t0))
