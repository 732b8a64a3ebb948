"""Fixed binary frames inside a JSON report, as carrier IoT platforms forward them: the
device's bytes as Base64 or hex at some field, unpacked by a vendor mapping's
``[frame]`` table into named fields that its metrics then read (``frame.<field>``)."""

from __future__ import annotations

import base64
import binascii
import re
import struct
from dataclasses import dataclass
from typing import Any

from ingest.errors import PayloadError

ENCODINGS = ("base64", "hex")
_FORMAT = re.compile(r"^[<>!=]?(\d*[xbBhHiIlLqQefd?])+$")


@dataclass(frozen=True)
class Frame:
    """Where the bytes sit (``path``), how they are written (``encoding``), and their
    layout: a ``struct`` format (byte order first: ``>`` big-endian, ``<`` little) and
    one name per value (``_`` for values to skip)."""

    path: str
    encoding: str
    format: str
    fields: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ValueError(f"frame encoding must be one of {', '.join(ENCODINGS)}")
        if not _FORMAT.match(self.format):
            raise ValueError(f"frame format {self.format!r} is not a struct format of numbers")
        values = len(struct.unpack(self.format, bytes(struct.calcsize(self.format))))
        if values != len(self.fields):
            raise ValueError(
                f"frame format {self.format!r} holds {values} values but {len(self.fields)} "
                "fields are named"
            )

    @property
    def size(self) -> int:
        return struct.calcsize(self.format)

    def unpack(self, text: Any) -> dict[str, float]:
        """The named values of the frame written as ``text``."""
        if not isinstance(text, str):
            raise PayloadError("bad_frame", f"no {self.encoding} frame at {self.path!r}")
        try:
            raw = (
                base64.b64decode(text, validate=True)
                if self.encoding == "base64"
                else bytes.fromhex(text)
            )
        except (binascii.Error, ValueError):
            raise PayloadError(
                "bad_frame", f"the frame at {self.path!r} is not valid {self.encoding}"
            ) from None
        if len(raw) != self.size:
            raise PayloadError(
                "bad_frame",
                f"the frame at {self.path!r} has {len(raw)} bytes; the mapping's layout "
                f"{self.format!r} has {self.size}",
            )
        values = struct.unpack(self.format, raw)
        return {
            name: float(value)
            for name, value in zip(self.fields, values, strict=True)
            if name != "_"
        }
