"""Benchmarks: each module ``bench/<name>.py`` has ``run() -> dict`` and is started by
``cityops bench NAME``, which prints the result as one JSON object on the last line."""

from __future__ import annotations

import importlib
import json
import pkgutil
from typing import Any


def available() -> list[str]:
    import bench

    return sorted(
        m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_")
    )


def run(name: str, **options: Any) -> dict[str, Any]:
    if name not in available():
        raise KeyError(name)
    module = importlib.import_module(f"bench.{name}")
    result: dict[str, Any] = module.run(**options)
    return {"name": name, **result}


def dumps(result: dict[str, Any]) -> str:
    return json.dumps(result, separators=(", ", ": "))
