"""The carrier and video platforms' own push formats, one connector each
(:class:`~ingest.push.connectors.base.Connector`), served under
``/v1/ingest/{city}/{platform}/{source}``."""

from __future__ import annotations

from ingest.push.connectors.base import Connector
from ingest.push.connectors.ctwing import CTWing
from ingest.push.connectors.hikvision import ISAPI, ISecureCenter
from ingest.push.connectors.iotda import IoTDA
from ingest.push.connectors.onenet import OneNETLegacy, OneNETStudio

CONNECTORS: dict[str, Connector] = {
    c.platform: c
    for c in (CTWing(), IoTDA(), OneNETStudio(), OneNETLegacy(), ISecureCenter(), ISAPI())
}

__all__ = ["CONNECTORS", "Connector"]
