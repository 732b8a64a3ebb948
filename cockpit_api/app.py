"""The cockpit API (``cityops api``): REST under ``/v1``, the live feed, CAP 1.2 and the page.

Everything but ``/health``, ``/ready``, ``/metrics`` and the page's static files needs
an API key; every query is limited to the key's cities, and an alert of another city is
answered as not found. ``create_app`` only assembles: the services one process holds
(``services``), the ASGI layers (``middleware``), one router per resource (``routes``)
and the OpenAPI document (``openapi``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from cockpit_api import openapi
from cockpit_api.config import ApiConfig
from cockpit_api.middleware import CachedReads, MetricsMiddleware
from cockpit_api.routes import ROUTERS
from cockpit_api.routes.web import STATIC, check_vendor
from cockpit_api.services import Services

__all__ = ["ApiConfig", "create_app"]


async def _bad_data(_request: Request, exc: Exception) -> JSONResponse:
    # Input the database cannot hold, such as a NUL byte in a text value.
    return JSONResponse(
        {"detail": f"the request holds a value the store cannot take: {exc}"[:300]},
        status_code=422,
    )


async def _db_down(_request: Request, _exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": "the database is unavailable; try again shortly"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


def create_app(config: ApiConfig) -> FastAPI:
    services = Services(config)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await services.start()
        try:
            yield
        finally:
            await services.stop()

    app = FastAPI(
        title="CityOps cockpit API",
        version="1.0",
        description=(
            "Live lifeline incidents and alerts of the pilot cities for the operations centre "
            "and the emergency dispatchers. Authenticate with `Authorization: Bearer <key>`."
        ),
        lifespan=lifespan,
    )
    app.state.services = services
    openapi.install(app)
    app.add_exception_handler(psycopg.DataError, _bad_data)
    app.add_exception_handler(psycopg.OperationalError, _db_down)
    app.add_middleware(CachedReads, services=services)
    app.add_middleware(MetricsMiddleware)
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    check_vendor()
    return app
