"""The API's own ASGI layers: request metrics per route, and cached reads answered before
routing."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl

from prometheus_client import Counter, Histogram

from cockpit_api.services import Services

REQUESTS = Counter("cityops_api_requests_total", "API requests", ["route", "status"])
LATENCY = Histogram(
    "cityops_api_request_seconds",
    "API request latency",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


class MetricsMiddleware:
    """Request count and latency per route template, as a plain ASGI middleware."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status_code = [500]

        async def send_wrapper(message: Any) -> None:
            if message["type"] == "http.response.start":
                status_code[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            LATENCY.labels(route).observe(time.perf_counter() - t0)
            REQUESTS.labels(route, str(status_code[0])).inc()


def alerts_key(
    params: Iterable[tuple[str, str]], scope: tuple[str, ...] | None
) -> tuple[object, ...]:
    return ("alerts", tuple(sorted(params)), scope)


def overview_key(city: str) -> tuple[object, ...]:
    return ("overview", city)


_OVERVIEW = re.compile(r"^/v1/cities/([0-9]{6})/overview$")
#: The route templates fast answers are counted under in the request metrics.
_ROUTES = {
    "alerts": SimpleNamespace(path="/v1/alerts"),
    "overview": SimpleNamespace(path="/v1/cities/{city}/overview"),
}


class CachedReads:
    """Answers a read that is already cached without going through routing and
    validation: same key as the endpoint builds, for a key the cache already knows to
    be valid and within its rate; anything else goes on to the endpoint."""

    def __init__(self, app: Any, services: Services) -> None:
        self.app, self.services = app, services

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            body = self._hit(scope)
            if body is not None:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def _hit(self, scope: Any) -> bytes | None:
        path = scope["path"]
        overview = _OVERVIEW.match(path)
        if path != "/v1/alerts" and overview is None:
            return None
        token = None
        for name, value in scope["headers"]:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                token = value[7:].decode("latin-1").strip()
        if not token:
            return None
        state = self.services
        known, who = state.keys.cached(token)
        if not known or who is None:
            return None
        if overview is not None:
            if not who.covers(overview.group(1)):
                return None
            key = overview_key(overview.group(1))
        else:
            params = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            key = alerts_key(params, who.scope_key)
        body = state.cache.get(key, state.version())
        if body is None or state.limiter.take(who.key_id) > 0:
            return None
        scope["route"] = _ROUTES["overview" if overview is not None else "alerts"]
        return body
