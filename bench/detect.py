"""``cityops bench detect``: detection quality on labelled series, and kernel speed.

The signal families (:mod:`simulators.families`: daily cycles, steps, drifts, wider
spreads, spikes, dropouts, stuck readings, random-walk demand; weeks each, at 1, 5 or
15 minutes) judge the adaptive baseline per family: event recall, false-alarm episodes
per 1,000 normal rows, repeats (further episodes within one event) and the median time
to detect in intervals, with the microseconds per reading of the worker's scalar path;
beside it the same for a rolling z-score and river's ADWIN and Page-Hinkley on the raw
readings, and whether the targets (recall >= 0.95, <= 0.5 false alarms per 1,000
normal rows, steps and spikes within two intervals) are met.

Quality is counted per incident: a detection is a run of alarmed rows; it is a true
positive when it overlaps an injected incident (or starts within ``GRACE`` intervals of
its end), a false positive otherwise. Time to detect is in reporting intervals from the
incident's first sample to its first alarmed row.

The kernel figure is the default detectors of every kind run over batches of one
series, on one core, timed alone.

The worker figure is the real ``cityops worker`` process on the real broker: readings
of 2,000 registered gas wells are loaded into a topic of their own first, as batch
records of one partition each, as the bridge sends them; then the worker is started on
it; the rate, in readings, is taken between its offset commits (anomalies, changelog and
all) from a tenth of the run to the end, with the CPU of the worker and of Kafka over
the same span. The headline run is ``worker_readings`` readings in records of 200 with a
checkpoint every second; ``sweep`` repeats it (``sweep_readings`` each; 0 leaves the
sweep and the ceiling out) over records of 1, 10, 50 and 200 readings and checkpoints
every 0.5, 1 and 2 s. ``worker_joint_readings_per_s`` is the headline run again with
1,500 wells and 100 heating stations, whose five metrics each are also judged together
by their joint models (a quarter of the readings). In the same run: ``faust_ceiling_records_per_s``,
a Faust agent that only iterates the records of the batch-of-one topic (what Faust alone
allows here per record), and ``step_readings_per_s``, the worker's detection fold alone.
"""

from __future__ import annotations

import secrets
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
    worker_readings: int = 1_000_000,
    sweep_readings: int = 400_000,
    family_series: int = 36,
    seed: int | None = None,
) -> dict[str, Any]:
    """Everything below, and first the signal families (a new seed each run unless
    ``seed`` is given; the seed is reported so that a run can be repeated)."""
    seed = secrets.randbelow(2**31) if seed is None else seed
    families = _families(seed, family_series) if family_series else {}
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
        **families,
        "precision": round(tp / (tp + fp), 4) if tp + fp else None,
        "recall": round(tp / (tp + fn), 4) if tp + fn else None,
        "median_ttd_intervals": float(statistics.median(ttd)) if ttd else None,
        "kernel_readings_per_s": round(statistics.median(rates)),
        "kernel_batch": kernel_batch,
        **(_worker_rate(worker_readings, sweep_readings) if worker_readings else {}),
        "incidents": tp + fn,
        "false_positives": fp,
        "per_kind": per_kind,
        "series": len(KINDS) * series_per_kind,
        "runs": runs,
    }


def _families(seed: int, series: int) -> dict[str, Any]:
    """The adaptive baseline (the default for a metric without fixed limits) on the
    signal families, against a rolling z-score and river's drift detectors."""
    from bench._detect_families import meets_targets, quality

    q = quality(seed, series_per_family=series)
    ours = q["baseline"]
    return {
        "families_seed": seed,
        "families_series": series,
        "baseline_us_per_reading": ours["us_per_reading"],
        "baseline_targets_met": meets_targets(ours["families"]),
        "families": ours["families"],
        "compared": {
            name: {"us_per_reading": r["us_per_reading"], "families": r["families"]}
            for name, r in q.items()
            if name != "baseline"
        },
    }


WORKER_CITY = "329990"
WORKER_DEVICES = 2000
#: the joint run: heating stations (five metrics each, judged together) among the wells
JOINT_STATIONS = 100
JOINT_WELLS = 1500
PARTITIONS = 12
SWEEP_BATCHES = (1, 10, 50, 200)
SWEEP_CHECKPOINTS = (0.5, 1.0, 2.0)


def _worker_rate(n: int, sweep_readings: int = 400_000) -> dict[str, Any]:
    """The headline run (``n`` readings in batches of 200, checkpoint every second), the
    sweep over batch sizes and checkpoint intervals (``sweep_readings`` each), and
    Faust's own ceiling on the batch-of-one topic."""
    import psycopg

    from cityops.settings import get_settings
    from lifeline.devices import gas_well
    from store.devices import upsert_devices

    settings = get_settings()
    with psycopg.connect(settings.db_dsn.get_secret_value(), autocommit=True) as conn:
        devices = [
            gas_well(WORKER_CITY, f"bw-{i:05d}", grid_code=f"329990001001{i % 1000:03d}")
            for i in range(WORKER_DEVICES)
        ]
        devices += [_station(i) for i in range(JOINT_STATIONS)]
        upsert_devices(
            conn, devices, {d.device_id: (f"{WORKER_CITY}.{d.device_id}", "x") for d in devices}
        )
    headline = _worker_run(settings, n, batch=200, checkpoint_s=1.0)
    joint = _worker_run(settings, n, batch=200, checkpoint_s=1.0, joint=True)
    joint.pop("topic")
    sweep = []
    ceiling_topic = None
    for batch in SWEEP_BATCHES if sweep_readings else ():
        run = _worker_run(settings, sweep_readings, batch=batch, checkpoint_s=1.0)
        sweep.append(run)
        if batch == 1:
            ceiling_topic = run.pop("topic")
    for checkpoint_s in SWEEP_CHECKPOINTS if sweep_readings else ():
        if checkpoint_s != 1.0:
            sweep.append(
                _worker_run(settings, sweep_readings, batch=200, checkpoint_s=checkpoint_s)
            )
    for run in sweep:
        run.pop("topic", None)
    headline.pop("topic")
    ceiling = None
    if ceiling_topic is not None:
        import subprocess
        import sys

        import orjson

        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench._faust_ceiling",
                settings.kafka_bootstrap,
                ceiling_topic,
                str(sweep_readings),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        ceiling = next(
            orjson.loads(line)["per_s"]
            for line in out.stdout.splitlines()
            if line.startswith('{"per_s"')
        )
    return {
        "worker_readings_per_s": headline["readings_per_s"],
        "worker_readings": n,
        "worker_batch": 200,
        "worker_checkpoint_s": 1.0,
        "worker_cpu_pct": headline["worker_cpu_pct"],
        "kafka_cpu_pct": headline["kafka_cpu_pct"],
        "worker_joint_readings_per_s": joint["readings_per_s"],
        "worker_joint_share": joint["joint_share"],
        "worker_joint_cpu_pct": joint["worker_cpu_pct"],
        "sweep": sweep,
        "faust_ceiling_records_per_s": ceiling,
        "step_readings_per_s": _step_rate(),
    }


def _station(i: int) -> Any:
    """A heating station of the benchmark's city: five metrics judged together."""
    from lifeline.devices import Device
    from lifeline.kinds import KINDS

    spec = KINDS["heat_network"]
    return Device(
        city=WORKER_CITY,
        device_id=f"bh-{i:04d}",
        family="sensors",
        kind=spec.name,
        metrics={m.name: m.quantity.unit for m in spec.metrics},
        owner_dept="heating",
        lon=118.78,
        lat=32.04,
        grid_code=f"329990001002{i % 1000:03d}",
    )


def _series(joint: bool) -> list[tuple[str, str, str, float, float]]:
    """What the load sends, one reading of each per step: (device, metric, unit, mean,
    deviation); a station's metrics side by side, as it reports them."""
    from lifeline.kinds import KINDS

    wells = JOINT_WELLS if joint else WORKER_DEVICES
    out = [(f"bw-{i:05d}", "ch4", "%LEL", 2.0, 0.3) for i in range(wells)]
    for i in range(JOINT_STATIONS if joint else 0):
        for m in KINDS["heat_network"].metrics:
            sd = max(m.normal.sd, 1e-3)
            out.append((f"bh-{i:04d}", m.name, m.quantity.unit, m.normal.mean, sd))
    return out


def _worker_run(
    settings: Any, n: int, batch: int, checkpoint_s: float, joint: bool = False
) -> dict[str, Any]:
    """Load ``n`` readings into a topic of their own as records of ``batch`` readings,
    then time a ``cityops worker`` over them: readings per second between its offset
    commits, from a tenth of the run to the end, and the CPU of the worker and Kafka.
    With ``joint``, a quarter of the readings are heating stations' (judged together)."""
    import asyncio
    import os
    import secrets
    import signal
    import subprocess
    import sys
    import tempfile
    from datetime import UTC, datetime, timedelta
    from pathlib import Path

    from aiokafka import AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    from bench.e2e import _proc_sample
    from cityops.stack import Stack
    from lifeline import codec
    from streams.offsets import create_topic

    topic = f"bench.readings.{secrets.token_hex(3)}"
    app_id = f"bench-worker-{secrets.token_hex(3)}"
    rng = np.random.default_rng(7)
    series = _series(joint)
    # readings[p][k]: readings in the first k records of partition p
    readings_before: list[list[int]] = [[0] for _ in range(PARTITIONS)]

    async def load() -> None:
        await create_topic(settings.kafka_bootstrap, topic, PARTITIONS)
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, linger_ms=20, max_batch_size=1 << 20
        )
        await producer.start()
        start = datetime.now(UTC) - timedelta(days=2)
        held: list[list[bytes]] = [[] for _ in range(PARTITIONS)]
        pending = []

        async def send(p: int, encoded: list[bytes]) -> None:
            record = codec.batch(encoded) if batch > 1 else encoded[0]
            pending.append(await producer.send(topic, record, partition=p))
            readings_before[p].append(readings_before[p][-1] + len(encoded))

        try:
            for i in tqdm(range(n), desc=f"load x{batch}", unit="reading", mininterval=1):
                dev, metric, unit, mean, sd = series[i % len(series)]
                step = i // len(series)
                value = float(rng.normal(mean, sd))
                if metric == "ch4" and 40 <= step % 100 < 45:
                    value += 30.0
                ts = start + timedelta(minutes=step)
                p = codec.partition_for(dev, PARTITIONS)
                held[p].append(codec.encode_reading(WORKER_CITY, dev, ts, metric, value, unit))
                if len(held[p]) >= batch:
                    await send(p, held[p])
                    held[p] = []
                if len(pending) >= 5000:
                    await asyncio.gather(*pending)
                    pending.clear()
            for p, rest in enumerate(held):
                if rest:
                    await send(p, rest)
            await asyncio.gather(*pending)
        finally:
            await producer.stop()

    async def committed() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(
                app_id, partitions=[TopicPartition(topic, p) for p in range(PARTITIONS)]
            )
        finally:
            await admin.close()
        return sum(
            readings_before[m.partition][max(0, o.offset)]
            for m, o in offsets.items()
            if o.offset >= 0
        )

    async def skip_history() -> None:
        """The worker reads its own readings topic from the start, but none of the
        anomalies and video events of earlier runs: its group starts at their ends."""
        from aiokafka import AIOKafkaConsumer

        from lifeline import topics

        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap, group_id=app_id, enable_auto_commit=False
        )
        await consumer.start()
        try:
            tps = [
                TopicPartition(t.name, p)
                for t in (topics.ANOMALIES, topics.VIDEO)
                for p in range(t.partitions)
            ]
            ends = await consumer.end_offsets(tps)
            consumer.assign(tps)
            await consumer.commit({tp: max(0, off) for tp, off in ends.items()})
        finally:
            await consumer.stop()

    asyncio.run(load())
    asyncio.run(skip_history())
    kafka_pid = Stack.from_settings(settings).kafka.nodes[0].status().pid or 0
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
                "--checkpoint-s",
                str(checkpoint_s),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        samples: list[tuple[float, int, float, float]] = []
        bar = tqdm(total=n, desc=f"worker x{batch} ckpt {checkpoint_s:g}s", unit="reading")
        try:
            deadline = time.monotonic() + 900
            done = 0
            while done < n and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.25)
                now_done = asyncio.run(committed())
                if now_done != done:
                    cpu = (_proc_sample(proc.pid)[0], _proc_sample(kafka_pid)[0])
                    samples.append((time.monotonic(), now_done, *cpu))
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
    if done >= n and len(samples) < 2:
        Path(log.name).unlink()
        raise RuntimeError(
            f"the worker committed all {n} readings at once: too few to time a rate "
            "between its commits; give it more readings"
        )
    if len(samples) < 2 or samples[-1][1] < n:
        tail = Path(log.name).read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the worker processed {done} of {n} readings; its log:\n{tail}")
    Path(log.name).unlink()
    # Sustained rate: from the first commit past a tenth of the run (partitions assigned,
    # fetching under way) to the last.
    (t0, c0, w0, k0) = next(s for s in samples if s[1] >= n // 10)
    (t1, c1, w1, k1) = samples[-1]
    wall = t1 - t0
    return {
        "batch": batch,
        "checkpoint_s": checkpoint_s,
        "readings": n,
        "readings_per_s": round((c1 - c0) / wall) if wall > 0 else None,
        "worker_cpu_pct": round(100 * (w1 - w0) / wall, 1) if wall > 0 else None,
        "kafka_cpu_pct": round(100 * (k1 - k0) / wall, 1) if wall > 0 else None,
        "joint_share": round(sum(1 for s in series if s[1] != "ch4") / len(series), 3),
        "topic": topic,
    }


def _step_rate(n: int = 50_000) -> int:
    """The worker's detection per reading (the scalar fold of a gas well), one core."""
    from datetime import UTC, datetime, timedelta

    from lifeline.devices import gas_well
    from streams.detection import DetectionFold

    well = gas_well(
        WORKER_CITY,
        "bw-step",
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
