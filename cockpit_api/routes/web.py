"""The web cockpit: its page, and the browser libraries the set-up installed from npm."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, HTTPException, Response
from fastapi.responses import FileResponse

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

STATIC = Path(str(resources.files("cockpit_api") / "static"))
#: ECharts as the npm registry ships it, installed by `make web` (npm ci in cockpit_api/web)
ECHARTS = (
    Path(str(resources.files("cockpit_api") / "web")) / "node_modules/echarts/dist/echarts.min.js"
)


def check_vendor() -> None:
    if not ECHARTS.exists():
        log.warning(
            "the cockpit's charts are missing: run `make web` (npm ci in cockpit_api/web)",
            extra={"missing": str(ECHARTS)},
        )


@router.get("/vendor/echarts.min.js")
def echarts_js() -> Response:
    if not ECHARTS.exists():
        raise HTTPException(
            404, detail="ECharts is not installed: run `make web` (npm ci in cockpit_api/web)"
        )
    return FileResponse(
        ECHARTS, media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"}
    )


@router.get("/")
def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})
