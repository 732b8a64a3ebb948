"""Errors of the geo stage.

GeoError
├── CRSError        a layer or array without a CRS, or with the wrong one
└── LayerError      a layer that fails validation; names the feature and the problem
"""

from __future__ import annotations


class GeoError(Exception):
    """Base of the geo stage's errors."""


class CRSError(GeoError):
    """A CRS is missing or does not match what the operation requires."""


class LayerError(GeoError):
    """A layer failed validation. ``problems`` lists one line per bad feature."""

    def __init__(self, layer: str, problems: list[str]) -> None:
        shown = problems[:20]
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"layer {layer!r} is invalid:\n  " + "\n  ".join(shown) + more)
        self.layer = layer
        self.problems = problems
