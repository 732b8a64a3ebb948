"""Dispatcher endpoints that receive a city's alerts as CAP pushes, and their delivery log
(city admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response

from cockpit_api.deps import City, CityAdmin, Conn, Svc
from cockpit_api.models import Deliveries, NewWebhook, WebhookBody, Webhooks
from cockpit_api.services import json_response
from cockpit_api.webhooks import destination_problem
from store import overview, webhooks

router = APIRouter(prefix="/v1/cities/{city}/webhooks", tags=["webhooks"])


@router.get("", response_model=Webhooks)
def list_webhooks(_who: CityAdmin, city: City, c: Conn) -> Response:
    """Dispatcher endpoints that receive CAP pushes for the city."""
    return json_response({"items": webhooks.list_webhooks(c, [city])})


@router.post("", status_code=201, response_model=NewWebhook)
def add_webhook(_who: CityAdmin, city: City, body: WebhookBody, services: Svc, c: Conn) -> Response:
    """Register an endpoint; the response carries the signing secret, once."""
    problem = destination_problem(body.url, services.config.webhook_allow)
    if problem is not None:
        raise HTTPException(422, detail=f"url: {problem}")
    if city not in services.config.cities and not overview.city_known(c, city):
        raise HTTPException(
            404, detail=f"city {city} has no devices, layers or alerts on this platform"
        )
    return json_response(webhooks.add_webhook(c, city, body.url, body.name), status_code=201)


@router.delete("/{webhook_id}", status_code=204, response_class=Response)
def delete_webhook(_who: CityAdmin, city: City, webhook_id: int, c: Conn) -> Response:
    """Remove an endpoint; pushes to it stop."""
    if not webhooks.delete_webhook(c, webhook_id, [city]):
        raise HTTPException(404, detail=f"no webhook {webhook_id} in city {city}")
    return Response(status_code=204)


@router.get("/deliveries", response_model=Deliveries)
def deliveries(
    _who: CityAdmin,
    city: City,
    c: Conn,
    alert_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """The delivery log: every push, its attempts and outcome."""
    return json_response({"items": webhooks.delivery_log(c, [city], alert_id, limit)})
