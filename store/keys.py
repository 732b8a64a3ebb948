"""API keys of the cockpit and the one-time feed tickets that stand in for them.

A key's token (``cok_<id>.<secret>``) is shown once and stored only hashed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from lifeline.roles import PLATFORM_ADMIN, ROLES

KEY_PREFIX = "cok_"


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    role: str
    cities: tuple[str, ...]  # empty for a platform admin: every city


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(
    conn: psycopg.Connection[Any], name: str, role: str, cities: Sequence[str]
) -> tuple[ApiKey, str]:
    """A new key; the token (``cok_<id>.<secret>``) is returned once and stored only hashed."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if role != PLATFORM_ADMIN and not cities:
        raise ValueError(f"a {role} key needs at least one city")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    cities = () if role == PLATFORM_ADMIN else tuple(sorted(set(cities)))
    conn.execute(
        "INSERT INTO api_keys (key_id, secret_hash, name, role, cities)"
        " VALUES (%s, %s, %s, %s, %s)",
        (key_id, _hash(secret), name, role, list(cities)),
    )
    return ApiKey(key_id, name, role, cities), f"{KEY_PREFIX}{key_id}.{secret}"


def verify_key(conn: psycopg.Connection[Any], token: str) -> ApiKey | None:
    """The key a token belongs to, if the token is valid and the key not revoked."""
    if not token.startswith(KEY_PREFIX) or "." not in token:
        return None
    key_id, _, secret = token[len(KEY_PREFIX) :].partition(".")
    row = conn.execute(
        "SELECT secret_hash, name, role, cities FROM api_keys"
        " WHERE key_id = %s AND revoked_at IS NULL",
        (key_id,),
    ).fetchone()
    if row is None or not hmac.compare_digest(row[0], _hash(secret)):
        return None
    return ApiKey(key_id, row[1], row[2], tuple(row[3]))


def issue_ticket(conn: psycopg.Connection[Any], key_id: str, ttl: timedelta) -> str:
    """A one-time ticket standing in for key ``key_id`` for ``ttl``; expired ones go."""
    ticket = secrets.token_urlsafe(24)
    conn.execute("DELETE FROM feed_tickets WHERE expires_at < now()")
    conn.execute(
        "INSERT INTO feed_tickets (ticket_hash, key_id, expires_at) VALUES (%s, %s, now() + %s)",
        (_hash(ticket), key_id, ttl),
    )
    return ticket


def redeem_ticket(conn: psycopg.Connection[Any], ticket: str) -> ApiKey | None:
    """The key a ticket stands in for, once: used, expired or of a revoked key, None."""
    row = conn.execute(
        "WITH t AS (DELETE FROM feed_tickets WHERE ticket_hash = %s"
        "  RETURNING key_id, expires_at)"
        " SELECT k.key_id, k.name, k.role, k.cities FROM t JOIN api_keys k USING (key_id)"
        " WHERE t.expires_at > now() AND k.revoked_at IS NULL",
        (_hash(ticket),),
    ).fetchone()
    return None if row is None else ApiKey(row[0], row[1], row[2], tuple(row[3]))


def revoke_key(conn: psycopg.Connection[Any], key_id: str) -> bool:
    cur = conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL",
        (key_id,),
    )
    return cur.rowcount == 1


def list_keys(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT key_id, name, role, cities, created_at, revoked_at FROM api_keys"
            " ORDER BY created_at"
        ).fetchall()
