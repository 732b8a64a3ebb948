"""Who the caller is, which cities it may see, and a city at a glance."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Response

from cockpit_api.deps import City, Svc, Who
from cockpit_api.middleware import overview_key
from cockpit_api.models import Cities, Me, Overview
from store import overview as store

router = APIRouter(prefix="/v1")


@router.get("/me", tags=["auth"], response_model=Me)
def me(who: Who) -> dict[str, Any]:
    """The caller's key: name, role and cities."""
    return {
        "key_id": who.key_id,
        "name": who.name,
        "role": who.role,
        "cities": list(who.cities) if not who.all_cities else "*",
    }


@router.get("/cities", tags=["overview"], response_model=Cities)
def cities(who: Who, services: Svc) -> dict[str, Any]:
    """The cities the caller may see."""
    if who.all_cities:
        with services.pool.connection() as c:
            return {"cities": store.known_cities(c)}
    return {"cities": list(who.cities)}


@router.get("/cities/{city}/overview", tags=["overview"], response_model=Overview)
async def overview(city: City, services: Svc) -> Response:
    """Devices online/offline, open incidents by severity and type, mean times to
    acknowledge and resolve (30 days), status per lifeline; at most
    ``overview_ttl_s`` old."""
    config = services.config

    def build() -> dict[str, Any]:
        with services.pool.connection() as c:
            return store.overview(c, city, datetime.now(UTC), config.online_window)

    return await services.cached(overview_key(city), config.overview_ttl_s, build)
