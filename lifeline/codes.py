"""The codes that name places and devices (GB/T 2260 city codes, unit-grid cells, GB/T
28181 camera ids), checked one way everywhere: ASCII digits only — Python's ``\\d`` and
``str.isdigit`` also take Arabic-Indic and full-width digits."""

from __future__ import annotations

CITY_PATTERN = r"^[0-9]{6}$"
GRID_PATTERN = r"^[0-9]{15}$"
CAMERA_PATTERN = r"^[0-9]{20}$"


def digits(value: object, length: int) -> bool:
    """Whether ``value`` is a string of exactly ``length`` ASCII digits."""
    return isinstance(value, str) and len(value) == length and value.isascii() and value.isdigit()


def is_city_code(value: object) -> bool:
    return digits(value, 6)
