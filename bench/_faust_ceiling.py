"""Faust's own ceiling on this machine: an agent that does nothing but iterate the events
of a topic, in a worker like ``cityops worker``. Run as
``python -m bench._faust_ceiling BOOTSTRAP TOPIC N``; prints ``{"per_s": ...}`` once N
events have passed (timed from the first), then exits."""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
import time
from typing import Any

import faust
import orjson


def main(bootstrap: str, topic: str, n: int) -> None:
    app = faust.App(
        f"bench-ceiling-{secrets.token_hex(3)}",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=tempfile.mkdtemp(prefix="cityops-bench-ceiling-"),
        topic_replication_factor=1,
        web_enabled=False,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
    )
    source = app.topic(topic, key_type=bytes, value_type=bytes)
    seen = 0
    first = 0.0

    @app.agent(source)
    async def iterate(stream: Any) -> None:
        nonlocal seen, first
        async for _event in stream.events():
            if not seen:
                first = time.perf_counter()
            seen += 1
            if seen == n:
                rate = (n - 1) / (time.perf_counter() - first)
                os.write(1, b"\n" + orjson.dumps({"per_s": round(rate)}) + b"\n")
                os._exit(0)

    worker = faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
