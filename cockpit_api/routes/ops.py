"""Open endpoints for operators and orchestrators: liveness, readiness, metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cockpit_api.deps import Svc
from cockpit_api.models import Health, Readiness
from cockpit_api.services import readiness

router = APIRouter(tags=["ops"])


@router.get("/health", response_model=Health)
def health() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "the database or Kafka does not answer"}},
)
async def ready(services: Svc) -> JSONResponse:
    """The database and Kafka both answer."""
    checks = await readiness(services)
    ok = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ok else "not ready", "checks": checks},
        status_code=200 if ok else 503,
    )


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
