"""Binary frames inside pushed reports: a vendor mapping unpacks the device's bytes
(Base64 or hex) by a fixed layout, and its metrics read the named values."""

from __future__ import annotations

import base64
import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest.adapters import VENDOR_DIR, VendorMapping
from ingest.errors import PayloadError
from ingest.frames import Frame

FRAME = Frame("payload.APPdata", "base64", ">BBHhHH", ("v", "s", "ch4", "temp", "mv", "_"))


def _bytes(ch4_dlel: int = 123, temp_cdeg: int = -250) -> bytes:
    return struct.pack(">BBHhHH", 1, 0, ch4_dlel, temp_cdeg, 3600, 7)


def test_a_base64_frame_unpacks_into_named_values_without_the_skipped() -> None:
    values = FRAME.unpack(base64.b64encode(_bytes()).decode())
    assert values == {"v": 1.0, "s": 0.0, "ch4": 123.0, "temp": -250.0, "mv": 3600.0}


def test_a_hex_frame_unpacks_alike() -> None:
    frame = Frame("data", "hex", ">BBHhHH", FRAME.fields)
    assert frame.unpack(_bytes().hex().upper()) == FRAME.unpack(base64.b64encode(_bytes()).decode())


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (None, "no base64 frame"),
        ("not base64!", "not valid base64"),
        (base64.b64encode(_bytes()[:-1]).decode(), "has 9 bytes"),
    ],
)
def test_a_bad_frame_is_a_payload_error_that_says_why(text: object, says: str) -> None:
    with pytest.raises(PayloadError, match=says) as err:
        FRAME.unpack(text)
    assert err.value.reason == "bad_frame"


def test_a_layout_must_name_each_value() -> None:
    with pytest.raises(ValueError, match="holds 6 values but 5"):
        Frame("p", "base64", ">BBHhHH", ("a", "b", "c", "d", "e"))
    with pytest.raises(ValueError, match="encoding"):
        Frame("p", "base32", ">H", ("a",))
    with pytest.raises(ValueError, match="struct format"):
        Frame("p", "hex", ">H10s", ("a", "b"))


def test_the_shipped_gas_well_mapping_reads_methane_from_the_frame() -> None:
    mapping = VendorMapping.load(VENDOR_DIR / "nb_gaswell.toml")
    at = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
    report = {
        "deviceId": "nb-0001",
        "timestamp": int(at.timestamp() * 1000),
        "payload": {"APPdata": base64.b64encode(_bytes(ch4_dlel=355)).decode()},
    }
    got = mapping.extract(report)
    assert got.device_id == "nb-0001"
    assert [(s.metric, s.unit, s.ts) for s in got.samples] == [("ch4", "%LEL", at)]
    assert got.samples[0].value == pytest.approx(35.5)
    with pytest.raises(PayloadError) as err:
        mapping.extract({**report, "payload": {"APPdata": "AAAA"}})
    assert err.value.reason == "bad_frame"


def test_a_mapping_file_with_a_bad_layout_is_refused_on_load(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'name = "bad"\ntimestamp = "t"\n[frame]\npath = "p"\nformat = ">H"\n'
        'fields = ["a", "b"]\n[metrics.ch4]\nvalue = "frame.a"\n'
    )
    with pytest.raises(ValueError, match="holds 1 values but 2"):
        VendorMapping.load(bad)
