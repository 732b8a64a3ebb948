"""The device registry: onboarded devices by (city, device id), what ingest, the push
endpoint and the detection worker check every message and reading against. Pure; the
store loads it and keeps it current (``store.registry``)."""

from __future__ import annotations

from collections.abc import Iterable

from lifeline.devices import Device


class Registry:
    """Onboarded devices by (city, device id). Replaced whole on reload, read lock-free."""

    def __init__(self, devices: Iterable[Device] = ()) -> None:
        self._devices: dict[tuple[str, str], Device] = {}
        self.replace(devices)

    def replace(self, devices: Iterable[Device]) -> None:
        self._devices = {(d.city, d.device_id): d for d in devices}

    def get(self, city: str, device_id: str) -> Device | None:
        return self._devices.get((city, device_id))

    def __len__(self) -> int:
        return len(self._devices)
