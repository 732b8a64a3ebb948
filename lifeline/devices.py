"""Devices and cameras as onboarded: what they are, what they measure, where they are."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lifeline.codes import CITY_PATTERN, GRID_PATTERN

Family = Literal["sensors", "cameras"]


PLATFORM_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$"
IMEI_PATTERN = r"^[0-9]{15}$"


class Device(BaseModel):
    """One onboarded device or camera of a pilot city."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    city: str = Field(pattern=CITY_PATTERN)
    device_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    family: Family
    kind: str
    #: Metric name → canonical unit of every metric the device reports.
    metrics: dict[str, str] = Field(default_factory=dict)
    vendor: str | None = None
    asset_id: str | None = None
    owner_dept: str
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    grid_code: str | None = Field(None, pattern=GRID_PATTERN)
    #: How its readings arrive: over MQTT, or pushed over HTTPS by ``source``.
    transport: Literal["mqtt", "http"] = "mqtt"
    #: The push source (carrier platform or vendor cloud) of an ``http`` device.
    source: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    #: The device's id on its push source's platform (CTWing ``deviceId``, IoTDA
    #: ``device_id``, OneNET device name), by which the platform names it.
    platform_id: str | None = Field(None, pattern=PLATFORM_ID_PATTERN)
    #: The 15-digit IMEI of a cellular (NB-IoT, Cat.1) device.
    imei: str | None = Field(None, pattern=IMEI_PATTERN)


def camera(city: str, serial: int, **fields: object) -> Device:
    """A video point of ``city`` (its GB/T 28181 id: the city's centre code, city
    management, IP camera, ``serial``), as tests and benchmarks onboard them; ``fields``
    override the rest (place, transport, source, platform id)."""
    base: dict[str, object] = {
        "family": "cameras",
        "kind": "camera",
        "owner_dept": "city management",
        "lon": 118.78,
        "lat": 32.04,
    }
    device_id = f"{city}0008132{serial:07d}"
    return Device.model_validate({**base, **fields, "city": city, "device_id": device_id})


def gas_well(city: str, device_id: str, **fields: object) -> Device:
    """A gas-well methane monitor (``ch4`` in %LEL) of ``city``, as drills, benchmarks and
    tests onboard them; ``fields`` override the rest (place, owner, transport, source)."""
    base: dict[str, object] = {
        "family": "sensors",
        "kind": "gas_well",
        "metrics": {"ch4": "%LEL"},
        "owner_dept": "gas",
        "lon": 118.78,
        "lat": 32.04,
    }
    return Device.model_validate({**base, **fields, "city": city, "device_id": device_id})


def luhn_valid(digits: str) -> bool:
    """The Luhn check an IMEI's last digit makes over the other fourteen."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def with_check_digit(body: str) -> str:
    """``body`` (14 digits) with the Luhn check digit that makes it an IMEI."""
    for d in "0123456789":
        if luhn_valid(body + d):
            return body + d
    raise ValueError(body)
