"""A small response cache for the read-heavy cockpit queries.

Entries are keyed by the request and the caller's cities, and tagged with a version:
the live feed's head plus this process's own writes. Alerts change only through the
feed, so a list cached at the current version is exact; the overview also counts
devices seen, so it is kept at most ``ttl_s`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Hashable


class ResponseCache:
    def __init__(self, max_entries: int = 4096) -> None:
        self._max = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, tuple[object, float, bytes]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, version: object) -> bytes | None:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != version or entry[1] < now:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[2]

    def put(self, key: Hashable, version: object, ttl_s: float, body: bytes) -> None:
        with self._lock:
            self._entries[key] = (version, time.monotonic() + ttl_s, body)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
