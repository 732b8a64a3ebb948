"""API keys with roles scoped to cities, a short cache of verified keys, rate limits, and
one-time tickets for the browser's WebSocket and EventSource (which cannot send headers).

Roles, each including the one before: viewer (read), dispatcher (work alerts),
city_admin (webhooks of its cities), platform_admin (every city).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request, status

from lifeline.roles import PLATFORM_ADMIN, RANK
from store.keys import ApiKey


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str
    role: str
    cities: tuple[str, ...]  # empty: every city (platform admin)

    @property
    def all_cities(self) -> bool:
        return self.role == PLATFORM_ADMIN

    @property
    def actor(self) -> str:
        return f"{self.name} ({self.role}, key {self.key_id})"

    def can(self, role: str) -> bool:
        return RANK[self.role] >= RANK[role]

    def covers(self, city: str) -> bool:
        return self.all_cities or city in self.cities

    @property
    def scope_key(self) -> tuple[str, ...] | None:
        return None if self.all_cities else self.cities

    def scope(self) -> list[str] | None:
        """The cities a query must be limited to; None for every city."""
        return None if self.all_cities else list(self.cities)

    @classmethod
    def of(cls, key: ApiKey) -> Principal:
        return cls(key.key_id, key.name, key.role, key.cities)


class KeyCache:
    """Verified tokens for ``ttl_s`` seconds (by hash), so each request does not hit the
    database; a revoked key stops working within that time."""

    def __init__(self, verify: Callable[[str], ApiKey | None], ttl_s: float = 30.0) -> None:
        self._verify = verify
        self._ttl = ttl_s
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Principal | None]] = {}

    def cached(self, token: str) -> tuple[bool, Principal | None]:
        """(known, principal) from the cache alone, without touching the database."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            hit = self._entries.get(digest)
        if hit is not None and hit[0] > time.monotonic():
            return True, hit[1]
        return False, None

    def principal(self, token: str) -> Principal | None:
        known, who = self.cached(token)
        if known:
            return who
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        key = self._verify(token)
        found = Principal.of(key) if key else None
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[digest] = (now + (self._ttl if found else 5.0), found)
        return found


class RateLimiter:
    """A token bucket per key: ``rate`` requests per second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> float:
        """0 if the request may go on, else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate


def token_of(request: Any) -> str | None:
    """The key from ``Authorization: Bearer`` or ``X-API-Key``."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return str(header[7:].strip())
    key = request.headers.get("x-api-key")
    return str(key) if key else None


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


async def authenticate(request: Request) -> Principal:
    """The caller, from its key; 401 without a valid one, 429 over its rate."""
    state = request.app.state.services
    token = token_of(request)
    if not token:
        raise unauthorized("an API key is required: send 'Authorization: Bearer <key>'")
    known, who = state.keys.cached(token)
    if not known:
        who = await asyncio.to_thread(state.keys.principal, token)
    return _admit(request, who)


def _admit(request: Any, who: Principal | None) -> Principal:
    state = request.app.state.services
    if who is None:
        raise unauthorized("the API key is not valid or has been revoked")
    wait = state.limiter.take(who.key_id)
    if wait > 0:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"rate limit of {state.limiter.rate:g} requests/s for this key exceeded",
            headers={"Retry-After": str(max(1, round(wait + 0.5)))},
        )
    request.state.principal = who
    return who


def require_role(who: Principal, role: str) -> None:
    if not who.can(role):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, detail=f"this needs the {role} role; the key is {who.role}"
        )


def require_city(who: Principal, city: str) -> None:
    if not who.covers(city):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, detail=f"this key is not allowed to see city {city}"
        )


def cities_for(who: Principal, asked: Sequence[str]) -> list[str] | None:
    """The cities to query: those asked (each checked) or all of the caller's."""
    for city in asked:
        require_city(who, city)
    if asked:
        return list(asked)
    return who.scope()
