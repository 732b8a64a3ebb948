"""Push of CAP messages to the dispatcher endpoints registered per city, with retries.

Deliveries are rows in the store (an outbox): the feed adds one per alert change and
webhook; any API process claims due ones, posts the CAP XML signed with the hook's
secret, and records the outcome. Failures are retried with exponential back-off and
end as ``failed`` after ``MAX_ATTEMPTS``; everything is visible in the delivery log.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import socket
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
import psycopg
from prometheus_client import Counter

from cockpit_api.cap import CAP_MIME, CapAlert, to_xml
from lifeline.signature import sign
from store.alerts import get_alert
from store.webhooks import claim_deliveries, enqueue_deliveries, record_delivery

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
DELIVERIES = Counter("cityops_api_webhook_attempts_total", "Webhook delivery attempts", ["outcome"])


#: Hosts a webhook may never name unless the operator allows them: this machine.
_OWN = ("localhost", "localhost.localdomain", "ip6-localhost")
_HOST = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)


def destination_problem(url: str, allow: Sequence[str]) -> str | None:
    """What is wrong with ``url`` as a webhook destination, or None.

    An http(s) URL with a host and nothing unprintable in it. With ``allow`` (host names,
    ``*.suffix`` patterns, addresses or networks in CIDR), the host must be one of them;
    without, any public name or address but this machine's (loopback, link-local,
    unspecified addresses and ``localhost``), and a name needs a dot.
    """
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        return "the URL has spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return "the URL must start with http:// or https://"
    host = (parts.hostname or "").lower()
    if not host:
        return "the URL names no host"
    if port == 0:
        return "port 0 is not a destination"
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
        if not _HOST.match(host):
            return f"{host!r} is not a host name"
    if allow:
        for given in allow:
            rule = given.strip().lower()
            if rule.startswith("*.") and address is None and host.endswith(rule[1:]):
                return None
            if rule == host:
                return None
            if address is not None and "/" in rule:
                with contextlib.suppress(ValueError):
                    if address in ipaddress.ip_network(rule, strict=False):
                        return None
        return f"{host} is not among the allowed webhook destinations (CITYOPS_WEBHOOK_ALLOW)"
    if address is not None:
        if address.is_loopback or address.is_link_local or address.is_unspecified:
            return f"{host} is this machine or its link: not a webhook destination"
        if address.is_multicast or address.is_reserved:
            return f"{host} is not a unicast address"
        return None
    if host in _OWN or host.endswith(".localhost"):
        return f"{host} is this machine: not a webhook destination"
    if "." not in host:
        return f"{host!r} is not a full host name (e.g. cad.example.gov.cn)"
    return None


def _own(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """This machine or its link, or no single host: never a default destination."""
    return (
        address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
    )


class DestinationRefused(httpcore.ConnectError):
    """A webhook host that resolves to an address it may not be sent to."""


class VettedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses a webhook may reach: the host is resolved here, and
    the connection made to the address that was checked, so a name that resolves to
    this machine (or is made to, between registration and delivery) is refused. With
    an operator's allow list, the hosts it names were allowed by name and go through."""

    def __init__(self, allow: Sequence[str]) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allow = tuple(a.strip().lower() for a in allow)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  # httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        address = await self.vet(host, port)
        return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)

    async def vet(self, host: str, port: int) -> str:
        """The address to connect to for ``host``; ``DestinationRefused`` if none may be."""
        if self._allow:
            return host  # checked against the allow list before every delivery
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise httpcore.ConnectError(f"{host}: {exc}") from exc
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        refused = [a for a in addresses if _own(a)]
        if refused or not addresses:
            raise DestinationRefused(
                f"{host} resolves to {refused[0] if refused else 'nothing'}: this machine or"
                " its link is not a webhook destination (CITYOPS_WEBHOOK_ALLOW)"
            )
        return str(addresses[0])

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109  # httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise DestinationRefused("a webhook is never a local socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class VettedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over ``VettedBackend``."""

    def __init__(self, allow: Sequence[str]) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=20,
            max_keepalive_connections=10,
            keepalive_expiry=5.0,
            network_backend=VettedBackend(allow),
        )


def backoff(attempts: int) -> timedelta:
    """Wait before the next attempt after ``attempts`` failed ones: 1, 2, 4, … s."""
    return timedelta(seconds=min(300, 2 ** max(0, attempts - 1)))


class Dispatcher:
    def __init__(
        self,
        dsn: str,
        poll_s: float = 1.0,
        timeout_s: float = 5.0,
        allow: Sequence[str] = (),
    ) -> None:
        self.dsn = dsn
        self.allow = tuple(allow)
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Future[int]] = set()

    def enqueue(self, entries: list[dict[str, Any]]) -> None:
        """Called by the feed hub, on the event loop, with new entries."""
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(self._enqueue, entries))
        self._pending.add(task)
        task.add_done_callback(self._enqueued)

    def _enqueued(self, task: asyncio.Future[int]) -> None:
        self._pending.discard(task)
        if task.cancelled():
            return
        if task.exception() is not None:
            log.warning("webhook enqueue failed", extra={"error": str(task.exception())[:200]})
        elif task.result():
            self._wake.set()

    def _enqueue(self, entries: list[dict[str, Any]]) -> int:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            return enqueue_deliveries(conn, entries)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhooks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        async with self.client() as client:
            while True:
                try:
                    await self.deliver_due(client)
                except (psycopg.Error, OSError) as exc:
                    log.warning("webhook dispatch failed", extra={"error": str(exc)[:200]})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)
                self._wake.clear()

    def client(self) -> httpx.AsyncClient:
        """The client deliveries go through: it reaches only allowed destinations."""
        return httpx.AsyncClient(
            timeout=self.timeout_s, transport=VettedTransport(self.allow), follow_redirects=False
        )

    async def deliver_due(self, client: httpx.AsyncClient) -> int:
        due = await asyncio.to_thread(self._claim)
        if due:
            await asyncio.gather(*(self._deliver(client, d) for d in due))
        return len(due)

    def _claim(self) -> list[dict[str, Any]]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            due = claim_deliveries(conn, datetime.now(UTC))
            for d in due:
                row = get_alert(conn, d["alert_id"], None)
                d["body"] = to_xml(CapAlert.from_row(row)) if row else b""
            return due

    async def _deliver(self, client: httpx.AsyncClient, d: dict[str, Any]) -> None:
        body: bytes = d["body"]
        status: int | None = None
        error = ""
        problem = destination_problem(d["url"], self.allow)
        if problem is not None:  # the operator's policy changed since it was registered
            DELIVERIES.labels("refused").inc()
            error = f"destination refused: {problem}"
            await asyncio.to_thread(self._record, d["delivery_id"], False, None, error, None)
            return
        try:
            resp = await client.post(
                d["url"],
                content=body,
                headers={
                    "Content-Type": CAP_MIME,
                    "X-CityOps-Signature": sign(d["secret"], body),
                    "X-CityOps-Delivery": str(d["delivery_id"]),
                },
            )
            status = resp.status_code
            ok = 200 <= status < 300
            if not ok:
                error = f"HTTP {status}: {resp.text[:200]}"
        except httpx.HTTPError as exc:
            ok = False
            error = f"{type(exc).__name__}: {exc}"
            if "not a webhook destination" in str(exc):
                error = f"destination refused: {exc}"
        attempts = d["attempts"] + 1
        retry = None if ok or attempts >= MAX_ATTEMPTS else backoff(attempts)
        DELIVERIES.labels("delivered" if ok else "retry" if retry else "failed").inc()
        await asyncio.to_thread(self._record, d["delivery_id"], ok, status, error, retry)

    def _record(
        self, delivery_id: int, ok: bool, status: int | None, error: str, retry: timedelta | None
    ) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            record_delivery(conn, delivery_id, ok, status, error, retry)
