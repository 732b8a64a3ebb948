"""Running services: several copies of one, each in its own process (its own GIL), and
the metrics endpoint and signal handling each one serves under."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
import ssl
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any


def run_copies(target: Callable[..., None], args: Sequence[tuple[Any, ...]], name: str) -> None:
    """Start ``target(*a)`` for each ``a`` in a spawned process; forward SIGTERM and SIGINT
    to them and return when all have ended."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=target, args=a, name=f"{name}-{i + 1}") for i, a in enumerate(args)]
    for p in procs:
        p.start()

    def forward(_signum: int, _frame: object) -> None:
        for p in procs:
            if p.is_alive():
                p.terminate()

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for p in procs:
        p.join()


def serving(metrics_port: int, addr: str) -> asyncio.Event:
    """Start the Prometheus endpoint (unless ``metrics_port`` is 0) and return the event
    SIGINT or SIGTERM sets: a service runs until it is set. Call on the running loop."""
    from prometheus_client import start_http_server

    if metrics_port:
        start_http_server(metrics_port, addr=addr)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def wait_ready(
    url: str,
    proc: subprocess.Popen[bytes],
    log: Callable[[], str],
    verify: ssl.SSLContext | bool = True,
    timeout_s: float = 60.0,
) -> None:
    """Wait until the service ``proc`` started answers ``GET {url}/ready`` with 200; if
    it exits or does not within ``timeout_s``, raise with the tail of its ``log()``."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/ready", verify=verify, timeout=2).status_code == 200:
                return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not become ready: {log()[-3000:]}")
        time.sleep(0.3)
