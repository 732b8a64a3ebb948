"""The typed dependencies and parameter types routes declare: the process's services, a
pooled database connection, the caller, the answer's language, and the city, alert and
time parameters with their checks."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import psycopg
from fastapi import Depends, Header, HTTPException, Query, Request
from fastapi import Path as PathParam
from pydantic import AfterValidator, BeforeValidator

from cockpit_api.auth import Principal, authenticate, require_city, require_role
from cockpit_api.services import Services
from lifeline import wording
from lifeline.codes import CITY_PATTERN


async def services(request: Request) -> Services:
    # Dependencies that do not block are coroutines: FastAPI runs plain functions in
    # its thread pool, a hop per request the API cannot afford on cached reads.
    found: Services = request.app.state.services
    return found


def connection(request: Request) -> Iterator[psycopg.Connection[Any]]:
    """A connection from the pool for the handler, back in the pool when it returns."""
    with request.app.state.services.pool.connection() as conn:
        yield conn


Svc = Annotated[Services, Depends(services)]
Conn = Annotated[psycopg.Connection[Any], Depends(connection, scope="function")]
Who = Annotated[Principal, Depends(authenticate)]

CITY = Annotated[str, PathParam(pattern=CITY_PATTERN, description="GB/T 2260 city code")]
ALERT_ID = Annotated[str, PathParam(min_length=1, max_length=128)]

#: Times the API takes: ISO 8601 with a time zone, within these bounds.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def _iso_only(value: Any) -> Any:
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        raise ValueError("a time is ISO 8601 with a time zone, e.g. 2026-01-01T00:00:00Z")
    return value


def _bounded(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("a time needs a time zone, e.g. 2026-01-01T00:00:00Z or +08:00")
    if not EARLIEST <= value <= LATEST:
        raise ValueError(f"a time between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
    return value


#: A time in a query: ISO 8601 with a zone, 1970-2200 (a number or a year 1 is a 422).
Time = Annotated[datetime, BeforeValidator(_iso_only), AfterValidator(_bounded)]


async def _language(
    accept_language: Annotated[str | None, Header()] = None,
    lang: Annotated[
        Literal["zh", "en"] | None,
        Query(description="zh or en for titles and descriptions; else Accept-Language, else zh"),
    ] = None,
) -> wording.Lang:
    return wording.language(accept_language, lang)


Lang = Annotated[wording.Lang, Depends(_language)]


def bbox(text: str | None) -> tuple[float, float, float, float] | None:
    """``west,south,east,north`` in degrees (WGS84), or None; a 422 if it is not one."""
    if text is None:
        return None
    try:
        w, s, e, n = (float(v) for v in text.split(","))
    except ValueError:
        raise HTTPException(
            422, detail="bbox must be 'west,south,east,north' in degrees (WGS84)"
        ) from None
    if not (-180 <= w <= e <= 180 and -90 <= s <= n <= 90):
        raise HTTPException(422, detail="bbox must satisfy west<=east and south<=north in range")
    return (w, s, e, n)


BBOX = Annotated[str | None, Query(description="west,south,east,north in degrees (WGS84)")]


async def _city(who: Who, city: CITY) -> str:
    require_city(who, city)
    return city


#: A city in the path that the caller may see (403 otherwise), checked before anything else.
City = Annotated[str, Depends(_city)]


def _role(role: str) -> Any:
    async def check(who: Who) -> Principal:
        require_role(who, role)
        return who

    return Depends(check)


#: The caller, who must hold at least this role (403 otherwise).
Dispatcher = Annotated[Principal, _role("dispatcher")]
CityAdmin = Annotated[Principal, _role("city_admin")]
