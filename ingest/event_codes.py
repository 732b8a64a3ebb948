"""Each city's table of its video platforms' event codes.

A video platform names its events by codes that each deployment assigns (iSecure
Center's integer ``eventType``, a camera's ISAPI ``eventType`` word), so every city keeps
a table, ``events/{city}.toml`` beside the vendor mappings::

    # Nanjing: iSecure Center's event types and the cameras' ISAPI events
    [hik-isc]
    192513 = { type = "smoke_fire", priority = 1, name = "烟雾检测" }
    930335 = "road_ponding"

    [isapi]
    smokeDetection = { type = "smoke_fire", priority = 1 }

A code maps to one of the video event types; ``priority`` (GB/T 28181, 1 highest) is
the event's unless the platform sends a level of its own (iSecure Center's ``eventLvl``,
where its linkage sets one). A code the table does not name
is kept as ``unmapped``, with the platform's code, and shown to operators: never
dropped. ISAPI words are matched in any case.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lifeline.codes import is_city_code
from lifeline.platforms import PLATFORMS
from lifeline.vocabulary import VideoEventType

#: the folder of the built-in tables, beside the vendor mappings
EVENT_CODES_DIR = Path(__file__).with_name("vendors") / "events"
#: the priority of an event the table does not map: shown, at the lowest level
UNMAPPED_PRIORITY = 4


class EventCodeError(ValueError):
    """A code table that cannot be used, with the file and the entry."""


@dataclass(frozen=True, slots=True)
class EventCode:
    """What a platform's event code means in a city."""

    event_type: VideoEventType
    priority: int | None = None
    name: str | None = None


UNMAPPED = EventCode(VideoEventType.UNMAPPED, UNMAPPED_PRIORITY)


class EventCodes:
    """The cities' code tables: ``(city, platform, code)`` → :class:`EventCode`."""

    def __init__(self, tables: dict[tuple[str, str], dict[str, EventCode]] | None = None) -> None:
        self.tables = tables or {}

    def lookup(self, city: str, platform: str, code: str) -> EventCode:
        table = self.tables.get((city, platform))
        if table is None:
            return UNMAPPED
        found = table.get(code if platform != "isapi" else code.lower())
        return found if found is not None else UNMAPPED

    def cities(self) -> set[str]:
        return {city for city, _ in self.tables}

    @classmethod
    def load(cls, *folders: Path) -> EventCodes:
        """The built-in tables and those in ``folders`` (``events/*.toml`` in each; a
        later folder's table of a city replaces an earlier one's)."""
        tables: dict[tuple[str, str], dict[str, EventCode]] = {}
        for folder in (EVENT_CODES_DIR, *(f / "events" for f in folders)):
            for path in sorted(folder.glob("*.toml")):
                tables.update(read_table(path))
        return cls(tables)


def read_table(path: Path) -> dict[tuple[str, str], dict[str, EventCode]]:
    """One city's table (the file is named by the city's code)."""
    city = path.stem
    if not is_city_code(city):
        raise EventCodeError(f"{path}: name the file by the city's 6-digit code, e.g. 320100.toml")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise EventCodeError(f"{path}: {exc}") from exc
    out: dict[tuple[str, str], dict[str, EventCode]] = {}
    for platform, entries in data.items():
        if platform not in PLATFORMS or not isinstance(entries, dict):
            raise EventCodeError(
                f"{path}: [{platform}] is not a platform's table; use one of "
                f"{', '.join(p for p in PLATFORMS if p in {'hik-isc', 'isapi'})}"
            )
        table: dict[str, EventCode] = {}
        for code, entry in entries.items():
            key = code.lower() if platform == "isapi" else code
            table[key] = _entry(path, platform, code, entry)
        out[(city, platform)] = table
    return out


def _entry(path: Path, platform: str, code: str, entry: Any) -> EventCode:
    where = f"{path}: [{platform}] {code}"
    spec = {"type": entry} if isinstance(entry, str) else entry
    if not isinstance(spec, dict) or "type" not in spec:
        raise EventCodeError(f"{where}: give a video event type, or a table with `type`")
    unknown = set(spec) - {"type", "priority", "name"}
    if unknown:
        raise EventCodeError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    try:
        event_type = VideoEventType(spec["type"])
    except ValueError:
        known = ", ".join(t.value for t in VideoEventType if t is not VideoEventType.UNMAPPED)
        raise EventCodeError(f"{where}: {spec['type']!r} is not one of {known}") from None
    priority = spec.get("priority")
    if priority is not None and (
        isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 4
    ):
        raise EventCodeError(f"{where}: priority is 1 (highest) to 4")
    name = spec.get("name")
    return EventCode(event_type, priority, str(name) if name is not None else None)
