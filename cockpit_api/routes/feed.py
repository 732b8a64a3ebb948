"""The live feed of new and changed alerts: WebSocket or Server-Sent Events, resumable,
with one-time tickets for browsers (which cannot send headers on either)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from cockpit_api.auth import Principal, authenticate
from cockpit_api.deps import Svc, Who
from cockpit_api.feed import FeedHub
from cockpit_api.models import Ticket
from cockpit_api.services import Services
from store import keys

router = APIRouter(prefix="/v1/feed", tags=["feed"])

TICKET_TTL = timedelta(seconds=60)


@router.post("/ticket", response_model=Ticket)
def feed_ticket(who: Who, services: Svc) -> dict[str, Any]:
    """A one-time ticket (60 s) for the WebSocket or SSE URL, for browsers."""
    with services.pool.connection() as c:
        ticket = keys.issue_ticket(c, who.key_id, TICKET_TTL)
    return {"ticket": ticket, "expires_in_s": int(TICKET_TTL.total_seconds())}


async def _principal(request: Any, services: Services, ticket: str | None) -> Principal:
    if ticket:
        # Tickets live in the database: any API replica redeems what another issued.
        def redeem() -> keys.ApiKey | None:
            with services.pool.connection() as c:
                return keys.redeem_ticket(c, ticket)

        found = await asyncio.to_thread(redeem)
        if found is None:
            raise HTTPException(401, detail="the feed ticket is unknown, used or expired")
        return Principal.of(found)
    return await authenticate(request)


@router.websocket("/ws")
async def feed_ws(
    websocket: WebSocket, ticket: str | None = None, last_id: int | None = None
) -> None:
    """New and changed alerts of the caller's cities as JSON messages; send
    ``last_id`` to receive what was missed since."""
    services: Services = websocket.app.state.services
    try:
        who = await _principal(websocket, services, ticket)
    except HTTPException as exc:
        await websocket.close(code=4401 if exc.status_code == 401 else 4429, reason=str(exc.detail))
        return
    await websocket.accept()

    async def push() -> None:
        async for event in _stream(services.hub, who, last_id):
            await websocket.send_text(orjson.dumps(event).decode())
        await websocket.close()

    pusher = asyncio.create_task(push())
    try:
        # The client may leave while no event is due: notice it here, not at the
        # next send, so its subscription and this handler end at once.
        while not pusher.done():
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
    except (WebSocketDisconnect, RuntimeError):
        pass  # the connection is gone either way
    finally:
        pusher.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
            await pusher


@router.get("/sse")
async def feed_sse(
    request: Request, services: Svc, ticket: str | None = None, last_id: int | None = None
) -> StreamingResponse:
    """The same feed as Server-Sent Events; ``Last-Event-ID`` resumes."""
    who = await _principal(request, services, ticket)
    header = request.headers.get("last-event-id")
    resume = (
        last_id
        if last_id is not None
        else (int(header) if header and header.isascii() and header.isdigit() else None)
    )

    async def events() -> AsyncIterator[bytes]:
        yield b": connected\n\n"
        async for event in _stream(services.hub, who, resume, keepalive_s=15.0):
            if event.get("keepalive"):
                yield b": keepalive\n\n"
                continue
            data = orjson.dumps(event).decode()
            yield f"id: {event['id']}\nevent: alert\ndata: {data}\n\n".encode()

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


async def _stream(
    hub: FeedHub, who: Principal, last_id: int | None, keepalive_s: float | None = None
) -> AsyncIterator[dict[str, Any]]:
    sub = hub.subscribe(who.scope())
    sent = hub.head if last_id is None else last_id
    try:
        if last_id is not None:
            for missed in await asyncio.to_thread(hub.backlog, last_id, who.scope()):
                if missed["id"] > sent:
                    sent = missed["id"]
                    yield missed
        while True:
            try:
                event = await asyncio.wait_for(sub.queue.get(), keepalive_s)
            except TimeoutError:
                yield {"keepalive": True}
                continue
            if event is None:
                return
            if event["id"] > sent:
                sent = event["id"]
                yield event
    finally:
        hub.unsubscribe(sub)
