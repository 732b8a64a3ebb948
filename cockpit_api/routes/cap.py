"""Alerts as CAP 1.2 messages, one at a time or as a city's Atom feed."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from cockpit_api import cap
from cockpit_api.deps import ALERT_ID, City, Conn, Who
from cockpit_api.routes.alerts import visible
from store import alerts as store

router = APIRouter(prefix="/v1", tags=["cap"])

CapLang = Literal["zh-CN", "en-US"]


@router.get(
    "/alerts/{alert_id}/cap",
    response_class=Response,
    responses={200: {"content": {cap.CAP_MIME: {"schema": {"type": "string"}}}}},
)
def alert_cap(who: Who, alert_id: ALERT_ID, c: Conn, lang: CapLang = "zh-CN") -> Response:
    """The alert's current state as a CAP 1.2 message."""
    row = visible(c, who, alert_id)
    return Response(cap.to_xml(cap.CapAlert.from_row(row), lang), media_type=cap.CAP_MIME)


@router.get(
    "/cities/{city}/cap.atom",
    response_class=Response,
    responses={200: {"content": {"application/atom+xml": {"schema": {"type": "string"}}}}},
)
def cap_feed(
    city: City,
    request: Request,
    c: Conn,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    lang: CapLang = "zh-CN",
) -> Response:
    """An Atom feed of the city's alerts (newest first), each entry with its CAP."""
    rows, _ = store.list_alerts(c, store.AlertFilter(cities=[city], limit=limit))
    base = str(request.base_url).rstrip("/")
    body = cap.atom_feed(city, [cap.CapAlert.from_row(r) for r in rows], base, lang)
    return Response(body, media_type="application/atom+xml")
