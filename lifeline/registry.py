"""The device registry: onboarded devices by (city, device id), what ingest, the push
endpoint and the detection worker check every message and reading against; and by the
ids a carrier or video platform names them with (its own device id, the IMEI). Pure; the
store loads it and keeps it current (``store.registry``)."""

from __future__ import annotations

from collections.abc import Iterable

from lifeline.devices import Device


class Registry:
    """Onboarded devices by (city, device id). Replaced whole on reload, read lock-free."""

    def __init__(self, devices: Iterable[Device] = ()) -> None:
        self._devices: dict[tuple[str, str], Device] = {}
        self._platform: dict[tuple[str, str, str], Device] = {}
        self._imei: dict[tuple[str, str], Device] = {}
        self.replace(devices)

    def replace(self, devices: Iterable[Device]) -> None:
        by_id = {(d.city, d.device_id): d for d in devices}
        self._platform = {
            (d.city, d.source or "", d.platform_id): d for d in by_id.values() if d.platform_id
        }
        self._imei = {(d.city, d.imei): d for d in by_id.values() if d.imei}
        self._devices = by_id

    def get(self, city: str, device_id: str) -> Device | None:
        return self._devices.get((city, device_id))

    def on_platform(self, city: str, source: str, ref: str) -> Device | None:
        """The device a push source's platform names ``ref``: its platform id on that
        source, else its IMEI."""
        return self._platform.get((city, source, ref)) or self._imei.get((city, ref))

    def __len__(self) -> int:
        return len(self._devices)
