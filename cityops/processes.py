"""Several copies of one service, each in its own process (its own GIL)."""

from __future__ import annotations

import multiprocessing
import signal
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
