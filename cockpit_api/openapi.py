"""The cockpit API's OpenAPI document as the API really answers: its bearer-key security
scheme on every ``/v1`` operation, the error answers each can give in one shape, and the
live feed's event stream."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

#: Every error the API answers: ``{"detail": <message or validation errors>}``.
ERROR = {
    "title": "Error",
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}},
            ],
            "description": "what was wrong: a message, or the fields that failed validation",
        }
    },
}

ANSWERS = {
    "401": "no API key, or one that is not valid or revoked",
    "403": "the key's role or cities do not allow this",
    "404": "not found in the cities of this key",
    "409": "the alert's status does not allow this step",
    "422": "a parameter or the body is not valid",
    "429": "over the key's rate (see Retry-After)",
    "503": "the database or Kafka is not reachable just now",
}
#: Operations that cannot answer 409 (only alert actions can).
_CONFLICTS = ("/actions/",)
_OPEN = ("/v1/feed/ws", "/v1/feed/sse")  # a ticket, not a key: no 401 via the header


def install(app: FastAPI) -> None:
    """Replace the app's OpenAPI builder with one that says what the API answers."""

    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = doc.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        schemas["Error"] = ERROR
        schemas.setdefault(
            "ValidationError",
            {
                "title": "ValidationError",
                "type": "object",
                "required": ["loc", "msg", "type"],
                "properties": {
                    "loc": {
                        "type": "array",
                        "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                    },
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        )
        components["securitySchemes"] = {
            "apiKey": {
                "type": "http",
                "scheme": "bearer",
                "description": "A cockpit API key: `Authorization: Bearer cok_…` "
                "(`cityops api key create`)",
            },
            "feedTicket": {
                "type": "apiKey",
                "in": "query",
                "name": "ticket",
                "description": "A one-time ticket from POST /v1/feed/ticket (browsers)",
            },
        }
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        for path, operations in doc.get("paths", {}).items():
            if not path.startswith("/v1/"):
                continue
            for method, op in operations.items():
                feed = path in _OPEN
                op["security"] = [{"feedTicket": []}, {"apiKey": []}] if feed else [{"apiKey": []}]
                responses = op.setdefault("responses", {})
                for code, why in ANSWERS.items():
                    if code == "409" and not any(c in path for c in _CONFLICTS):
                        continue
                    if code == "404" and method == "get" and path == "/v1/alerts":
                        continue
                    responses[code] = {"description": why, "content": error}
                if path == "/v1/feed/sse":
                    ok = responses.setdefault("200", {})
                    ok["description"] = "Server-Sent Events: one `data:` JSON entry per change"
                    ok["content"] = {"text/event-stream": {"schema": {"type": "string"}}}
        if '"#/components/schemas/HTTPValidationError"' not in json.dumps(doc):
            schemas.pop("HTTPValidationError", None)
        app.openapi_schema = doc
        return doc

    app.openapi = build  # type: ignore[method-assign]
