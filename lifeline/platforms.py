"""The platforms that push a city's data over HTTPS, each in its own format: our own
envelope (``cityops``, signed or keyed), the carrier IoT platforms (CTWing, OneNET
Studio and its older data push, Huawei IoTDA) and the video platforms (Hikvision iSecure
Center, a camera's ISAPI)."""

from __future__ import annotations

from typing import Literal, get_args

Platform = Literal["cityops", "ctwing", "onenet", "onenet-legacy", "iotda", "hik-isc", "isapi"]
PLATFORMS: tuple[str, ...] = get_args(Platform)
#: Platforms whose pushes carry no signature: their sources are known by a URL token.
UNSIGNED: frozenset[str] = frozenset({"ctwing", "iotda", "hik-isc", "isapi"})
#: Platforms that sign with a token of their own (MD5 over token, nonce and message).
TOKEN_SIGNED: frozenset[str] = frozenset({"onenet", "onenet-legacy"})
