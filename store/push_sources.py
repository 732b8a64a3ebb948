"""Push sources: the carrier IoT platforms and vendor clouds that push a city's readings
over HTTPS, each with an ingest key (stored hashed) and an HMAC secret (stored, since
the endpoint must recompute signatures), a rate limit and an optional vendor mapping
that says where a report names its device.

A source of a platform with a connector of its own (CTWing, Huawei IoTDA, ...) names the
platform; a platform that does not sign its requests gets a long random token in its URL
(stored hashed, shown once) and may be held to the networks it pushes from."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import string
from dataclasses import astuple, dataclass, field
from typing import Any, NamedTuple

import psycopg
from psycopg.rows import dict_row

from lifeline.codes import is_city_code
from lifeline.platforms import PLATFORMS, TOKEN_SIGNED, UNSIGNED

KEY_PREFIX = "cpk_"
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
#: Readings a second a new source may push unless told otherwise.
DEFAULT_RATE = 5000.0
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class PushSource:
    city: str
    name: str
    key_id: str
    key_hash: str
    hmac_secret: str
    vendor: str | None
    rate_per_s: float
    platform: str = "cityops"
    url_token_hash: str | None = None
    networks: tuple[Network, ...] = field(default_factory=tuple)
    #: the token a platform signs its pushes with (OneNET), and its AES key when it
    #: encrypts them
    platform_secret: str | None = None
    aes_key: str | None = None

    def key_matches(self, secret: str) -> bool:
        return hmac.compare_digest(self.key_hash, _hash(secret))

    def token_matches(self, token: str) -> bool:
        return self.url_token_hash is not None and hmac.compare_digest(
            self.url_token_hash, _hash(token)
        )

    def admits(self, address: str | None) -> bool:
        """Whether a request from ``address`` may come in: any, unless the source lists
        the networks its platform pushes from."""
        if not self.networks:
            return True
        try:
            ip = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        return any(ip in net for net in self.networks)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Created(NamedTuple):
    """A new source and what is shown of it once: its ingest key, and the URL token of
    a source of an unsigned platform."""

    source: PushSource
    key: str
    url_token: str | None = None


#: characters of a platform token (OneNET takes letters and digits)
_TOKEN_CHARS = string.ascii_letters + string.digits


def platform_token() -> str:
    """A token for a platform that signs with one: 32 random letters and digits."""
    return "".join(secrets.choice(_TOKEN_CHARS) for _ in range(32))


def parse_networks(texts: list[str] | tuple[str, ...]) -> tuple[Network, ...]:
    """Networks in CIDR form (a bare address is a network of one); ``ValueError`` names
    the first bad one."""
    out = []
    for text in texts:
        try:
            out.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"network {text!r} is not an address or CIDR block: {exc}") from exc
    return tuple(out)


def create_source(
    conn: psycopg.Connection[Any],
    city: str,
    name: str,
    vendor: str | None = None,
    rate_per_s: float = DEFAULT_RATE,
    platform: str = "cityops",
    networks: tuple[Network, ...] = (),
    aes_key: str | None = None,
) -> Created:
    """A new source of ``city``; returns it with its ingest key (``cpk_<id>.<secret>``)
    and, for an unsigned platform, its URL token, which are shown once. A revoked
    source's name may be used again."""
    if platform not in PLATFORMS:
        raise ValueError(f"platform {platform!r} is not one of {', '.join(PLATFORMS)}")
    if not is_city_code(city):
        raise ValueError(f"city must be a 6-digit administrative code, not {city!r}")
    if not NAME.match(name):
        raise ValueError(
            f"source name {name!r}: lower-case letters, digits, '-' and '_', at most 40"
        )
    if not rate_per_s > 0:
        raise ValueError("the rate limit must be a positive number of readings a second")
    key_id, key_secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    hmac_secret = secrets.token_urlsafe(32)
    url_token = secrets.token_urlsafe(32) if platform in UNSIGNED else None
    token_hash = _hash(url_token) if url_token else None
    if aes_key is not None and platform not in TOKEN_SIGNED:
        raise ValueError(f"an AES key is for OneNET's encrypted pushes, not {platform}")
    source = PushSource(
        city,
        name,
        key_id,
        _hash(key_secret),
        hmac_secret,
        vendor,
        rate_per_s,
        platform,
        token_hash,
        networks,
        platform_token() if platform in TOKEN_SIGNED else None,
        aes_key,
    )
    with conn.transaction():
        conn.execute(
            "DELETE FROM push_sources WHERE city = %s AND name = %s AND revoked_at IS NOT NULL",
            (city, name),
        )
        try:
            conn.execute(
                "INSERT INTO push_sources (city, name, key_id, key_hash, hmac_secret, vendor,"
                " rate_per_s, platform, url_token_hash, networks, platform_secret, aes_key)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::cidr[], %s, %s)",
                (*astuple(source)[:-3], [str(n) for n in networks], *astuple(source)[-2:]),
            )
        except psycopg.errors.UniqueViolation as exc:
            raise ValueError(
                f"city {city} already has a source named {name!r}; revoke it first or "
                "choose another name"
            ) from exc
    return Created(source, f"{KEY_PREFIX}{key_id}.{key_secret}", url_token)


def load_sources(
    conn: psycopg.Connection[Any], cities: list[str] | None = None
) -> list[PushSource]:
    """Every source not revoked (of ``cities`` when given)."""
    query = (
        "SELECT city, name, key_id, key_hash, hmac_secret, vendor, rate_per_s, platform,"
        " url_token_hash, networks::text[], platform_secret, aes_key FROM push_sources"
        " WHERE revoked_at IS NULL"
    )
    params: tuple[Any, ...] = ()
    if cities is not None:
        query += " AND city = ANY(%s)"
        params = (cities,)
    return [
        PushSource(
            city=r[0],
            name=r[1],
            key_id=r[2],
            key_hash=r[3],
            hmac_secret=r[4],
            vendor=r[5],
            rate_per_s=r[6],
            platform=r[7],
            url_token_hash=r[8],
            networks=parse_networks(r[9] or ()),
            platform_secret=r[10],
            aes_key=r[11],
        )
        for r in conn.execute(query, params).fetchall()
    ]


def list_sources(conn: psycopg.Connection[Any], city: str | None = None) -> list[dict[str, Any]]:
    """Sources with their device counts, revoked ones included; never a secret."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT s.city, s.name, s.key_id, s.platform, s.networks::text[] AS networks,"
            " s.vendor, s.rate_per_s, s.created_at,"
            " s.revoked_at, count(d.device_id) AS devices"
            " FROM push_sources s LEFT JOIN devices d"
            "   ON d.city = s.city AND d.source = s.name AND d.transport = 'http'"
            " WHERE %(city)s::text IS NULL OR s.city = %(city)s"
            " GROUP BY s.city, s.name ORDER BY s.city, s.name",
            {"city": city},
        ).fetchall()


def revoke_source(conn: psycopg.Connection[Any], city: str, name: str) -> bool:
    """Revoke a source: its key and signatures are refused from then on."""
    cur = conn.execute(
        "UPDATE push_sources SET revoked_at = now()"
        " WHERE city = %s AND name = %s AND revoked_at IS NULL",
        (city, name),
    )
    return cur.rowcount == 1


def source_names(conn: psycopg.Connection[Any], city: str) -> set[str]:
    """The names of ``city``'s sources not revoked (onboarding checks against them)."""
    rows = conn.execute(
        "SELECT name FROM push_sources WHERE city = %s AND revoked_at IS NULL", (city,)
    ).fetchall()
    return {r[0] for r in rows}
