"""Carrier IoT platforms as the simulator plays them. :class:`CarrierPlatform` pushes in
our own envelope: the reports of the devices it serves go to the city's push endpoint
(``cityops push serve``) in signed batches over one keep-alive HTTPS connection.
:class:`CTWingPlatform`, :class:`OneNETPlatform` and :class:`IoTDAPlatform` speak CTWing's
subscription push, OneNET Studio's HTTP push and Huawei IoTDA's data forwarding to their
connectors, :class:`ISecureCenterPlatform` Hikvision iSecure Center's event
notifications.

What a real platform does, it does too: every attempt is signed when it is sent; a
request answered 429 or 503 is sent again after its ``Retry-After``; a request whose
answer never came (a dropped connection) is sent again; and now and then a batch whose
answer the platform did not see comes again with the next one, so the platform's
idempotence (each reading kept once) is exercised all the time.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from cityops.errors import CityOpsError
from ingest.event_codes import EventCodes
from ingest.push.connectors.hikvision import CST
from ingest.push.connectors.onenet import signature_of
from ingest.push.handler import MAX_REPORTS, SIGNATURE_HEADER, SOURCE_HEADER
from lifeline.signature import sign

log = logging.getLogger(__name__)

#: Reports a request carries at most (the endpoint takes up to MAX_REPORTS).
BATCH = 500
#: Attempts of one request before the platform gives up.
ATTEMPTS = 8


@dataclass
class PushStats:
    requests: int = 0
    reports: int = 0
    #: reports sent again with a later batch (their first answer "lost")
    repeated: int = 0
    retries: int = 0
    #: reports of a request refused as a replay of one answered already (they are in)
    answered_before: int = 0
    dead_lettered: int = 0
    #: messages a platform that does not retry could not deliver (IoTDA)
    dropped: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


class CarrierPlatform:
    """Pushes the reports of one city's push sources; ``secrets`` maps each source name
    to its HMAC secret. ``idle(seconds)`` is called instead of sleeping between retries
    (the simulator serves its MQTT connections meanwhile)."""

    def __init__(
        self,
        url: str,
        city: str,
        secrets: dict[str, str],
        *,
        ca_file: Path | None = None,
        repeat_rate: float = 0.02,
        seed: int = 7,
        idle: Callable[[float], object] = time.sleep,
        timeout_s: float = 30.0,
    ) -> None:
        verify: ssl.SSLContext | bool = True
        if url.startswith("https") and ca_file is not None and ca_file.exists():
            verify = ssl.create_default_context(cafile=str(ca_file))
        self.path = f"/v1/ingest/{city}/push"
        self.secrets = secrets
        self.repeat_rate = repeat_rate
        self.stats = PushStats()
        self._url = url
        self._rng = np.random.default_rng(seed)
        self._idle = idle
        self._held: dict[str, list[dict[str, Any]]] = {}
        self._client = httpx.Client(
            base_url=url,
            verify=verify,
            timeout=timeout_s,
            headers={"content-type": "application/json"},
        )

    def push(self, source: str, reports: Sequence[dict[str, Any]], *, repeat: bool = True) -> None:
        """Deliver ``reports`` of ``source`` (and any held back from the last call)."""
        pending = [*self._held.pop(source, []), *reports]
        for i in range(0, len(pending), BATCH):
            chunk = pending[i : i + BATCH]
            self._send(source, chunk)
            if repeat and self._rng.random() < self.repeat_rate:
                # The answer "got lost": the platform sends these reports again next time.
                self._held.setdefault(source, []).extend(chunk)
                self.stats.repeated += len(chunk)

    def flush(self) -> None:
        """Deliver the reports held back for a repeat, once more and for the last time."""
        for source in list(self._held):
            self.push(source, [], repeat=False)

    def _send(self, source: str, reports: list[dict[str, Any]]) -> None:
        assert len(reports) <= MAX_REPORTS  # noqa: S101  # BATCH is below the endpoint's limit
        secret = self.secrets.get(source)
        if secret is None:
            raise CityOpsError(
                f"push source {source!r} is not an active source of this city; create it "
                "(cityops push source create) or onboard its devices with another source"
            )
        body = orjson.dumps(reports)
        for attempt in range(1, ATTEMPTS + 1):
            headers = {SOURCE_HEADER: source, SIGNATURE_HEADER: sign(secret, body)}
            try:
                answer = self._client.post(self.path, content=body, headers=headers)
            except httpx.TransportError as exc:
                wait = min(2.0**attempt, 30.0)
                log.warning(
                    "push endpoint unreachable",
                    extra={"url": self._url, "error": str(exc), "retry_in_s": wait},
                )
                self.stats.retries += 1
                self._idle(wait)
                continue
            self.stats.requests += 1
            if answer.status_code == 200:
                result = answer.json()
                self.stats.reports += len(reports)
                self.stats.dead_lettered += int(result.get("dead_lettered", 0))
                if result.get("errors") and len(self.stats.errors) < 20:
                    self.stats.errors.extend(result["errors"][:5])
                return
            if answer.status_code == 409:
                # The same signed request (same body, same second) was answered already.
                self.stats.answered_before += len(reports)
                return
            if answer.status_code in (429, 503):
                wait = float(answer.headers.get("retry-after", "1") or 1)
                self.stats.retries += 1
                self._idle(wait)
                continue
            raise CityOpsError(
                f"the push endpoint refused source {source!r}: {answer.status_code} "
                f"{answer.text[:300]}"
            )
        raise CityOpsError(
            f"the push endpoint {self._url} did not take {len(reports)} report(s) of source "
            f"{source!r} in {ATTEMPTS} attempts; is `cityops push serve` running?"
        )

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True)
class Job:
    """One request a platform sends: the path, its query and the body."""

    path: str
    params: dict[str, str]
    body: bytes


class OneMessageAPlatform:
    """A platform that pushes one message a request (CTWing, OneNET): the messages of a
    tick are prepared in order (:meth:`report`), then sent together over a few keep-alive
    connections (:meth:`deliver`), as the platform's many senders do; a message without a
    200 is sent again up to ``attempts`` times, and about ``repeat_rate`` of them are
    sent twice, as when the platform did not see the answer."""

    #: the platform's name, for messages
    title = ""
    #: how many times the platform sends a message at most
    attempts = 4
    #: requests in flight together
    senders = 8
    #: a platform that drops a message it could not deliver (logged), instead of
    #: stopping the run
    drops_failures = False

    def __init__(
        self,
        url: str,
        city: str,
        tokens: dict[str, str],
        *,
        ca_file: Path | None = None,
        repeat_rate: float = 0.02,
        seed: int = 7,
        timeout_s: float = 15.0,
    ) -> None:
        verify: ssl.SSLContext | bool = True
        if url.startswith("https") and ca_file is not None and ca_file.exists():
            verify = ssl.create_default_context(cafile=str(ca_file))
        self.city = city
        self.tokens = tokens
        self.repeat_rate = repeat_rate
        self.stats = PushStats()
        self._url = url
        self._rng = np.random.default_rng(seed)
        self._jobs: list[Job] = []
        self._repeats: list[Job] = []
        self._lock = threading.Lock()
        self._client = httpx.Client(
            base_url=url,
            verify=verify,
            timeout=timeout_s,
            headers={"content-type": "application/json"},
            limits=httpx.Limits(max_connections=self.senders),
        )

    def token_of(self, source: str) -> str:
        token = self.tokens.get(source)
        if token is None:
            raise CityOpsError(f"no token for {self.title} source {source!r}")
        return token

    def queue(self, job: Job) -> None:
        self._jobs.append(job)
        self.stats.reports += 1
        if self._rng.random() < self.repeat_rate:
            self._repeats.append(job)
            self.stats.repeated += 1

    def deliver(self) -> None:
        """Send the messages queued since the last call, then those sent twice; raise
        ``CityOpsError`` when the endpoint refuses one for good."""
        for jobs in (self._jobs, self._repeats):
            if not jobs:
                continue
            with ThreadPoolExecutor(self.senders) as pool:
                for failure in pool.map(self._send, jobs):
                    if failure is not None and self.drops_failures:
                        log.warning(f"{self.title} dropped a message", extra={"why": failure})
                        self._count(dropped=1)
                    elif failure is not None:
                        raise CityOpsError(failure)
        self._jobs, self._repeats = [], []

    def _send(self, job: Job) -> str | None:
        for attempt in range(self.attempts):
            try:
                answer = self._client.post(job.path, params=job.params, content=job.body)
            except httpx.TransportError as exc:
                log.warning(
                    f"{self.title} push unreachable",
                    extra={"url": self._url, "error": str(exc), "attempt": attempt + 1},
                )
                self._count(retries=1)
                time.sleep(min(2.0 ** (attempt + 1), 10.0))
                continue
            if answer.status_code == 200:
                result = answer.json()
                self._count(requests=1, dead=int(result.get("dead_lettered", 0)))
                if result.get("errors"):
                    self._count(errors=result["errors"][:5])
                return None
            self._count(requests=1)
            if answer.status_code in (429, 503):
                self._count(retries=1)
                time.sleep(float(answer.headers.get("retry-after", "1") or 1))
                continue
            return (
                f"the push endpoint refused a {self.title} message to {job.path}: "
                f"{answer.status_code} {answer.text[:300]}"
            )
        return (
            f"the push endpoint {self._url} did not take a {self.title} message in "
            f"{self.attempts} attempts; is `cityops push serve` running?"
        )

    def _count(
        self,
        requests: int = 0,
        retries: int = 0,
        dead: int = 0,
        errors: list[Any] | None = None,
        dropped: int = 0,
    ) -> None:
        with self._lock:
            self.stats.dropped += dropped
            self.stats.requests += requests
            self.stats.retries += retries
            self.stats.dead_lettered += dead
            if errors and len(self.stats.errors) < 20:
                self.stats.errors.extend(errors)

    def close(self) -> None:
        self._client.close()


class CTWingPlatform(OneMessageAPlatform):
    """China Telecom's CTWing as the simulator plays it: each report of a device is one
    ``dataReport`` message, one a request, to the source's connector URL (with its
    token), sent again at most three times more, as CTWing does."""

    title = "CTWing"
    attempts = 4  # the first send and CTWing's three retries

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._packets: dict[str, int] = {}

    def report(
        self, source: str, platform_id: str, imei: str | None, ts_ms: int, values: dict[str, Any]
    ) -> None:
        """Queue one report of the device CTWing knows as ``platform_id``."""
        if source not in self.tokens:
            raise CityOpsError(
                f"no URL token for CTWing source {source!r}: pass the file `cityops demo` "
                "wrote (push-tokens-CITY.json) with --push-tokens, or create the source "
                "again and note its URL"
            )
        packet = self._packets.get(platform_id, 0) + 1
        self._packets[platform_id] = packet
        body = orjson.dumps(
            {
                "upPacketSN": packet,
                "upDataSN": -1,
                "topic": "v1/up/ad",
                "timestamp": ts_ms,
                "tenantId": "2000000000",
                "serviceId": "",
                "protocol": "lwm2m",
                "productId": "15000000",
                "messageType": "dataReport",
                "deviceType": "",
                "deviceId": platform_id,
                "assocAssetId": "",
                "IMSI": "undefined",
                "IMEI": imei or "",
                "payload": {"serviceId": "report", "serviceData": values},
            }
        )
        path = f"/v1/ingest/{self.city}/ctwing/{source}"
        self.queue(Job(path, {"token": self.token_of(source)}, body))


class OneNETPlatform(OneMessageAPlatform):
    """OneNET Studio as the simulator plays it: before a source's first push, the URL
    check (``GET ?msg=&nonce=&signature=``, answered with ``msg``); then each report of a
    device is one property notification, one a request, signed with the source's token
    (Base64(MD5(token + nonce + msg))), sent until a 200 (OneNET tries 16 times)."""

    title = "OneNET"
    attempts = 16

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._checked: set[str] = set()
        self._sent = 0

    def report(
        self, source: str, device_name: str, imei: str | None, ts_ms: int, values: dict[str, Any]
    ) -> None:
        token = self.token_of(source)
        path = f"/v1/ingest/{self.city}/onenet/{source}"
        if source not in self._checked:
            self._check(path, token, source)
        self._sent += 1
        msg = orjson.dumps(
            {
                "productId": "cityops-sim",
                "deviceName": device_name,
                "messageType": "notify",
                "notifyType": "property",
                **({"imei": imei} if imei else {}),
                "data": {
                    "id": str(self._sent),
                    "params": {k: {"value": v, "time": ts_ms} for k, v in values.items()},
                },
            }
        ).decode()
        nonce = _nonce(self._rng)
        body = orjson.dumps(
            {
                "msg": msg,
                "nonce": nonce,
                "signature": signature_of(token, nonce, msg),
                "time": ts_ms,
                "id": f"{device_name}-{ts_ms}",
            }
        )
        self.queue(Job(path, {}, body))

    def _check(self, path: str, token: str, source: str) -> None:
        msg, nonce = f"check-{self._rng.integers(1 << 30)}", _nonce(self._rng)
        params = {"msg": msg, "nonce": nonce, "signature": signature_of(token, nonce, msg)}
        answer = self._client.get(path, params=params)
        if answer.status_code != 200 or answer.text != msg:
            raise CityOpsError(
                f"OneNET's URL check of source {source!r} failed: {answer.status_code} "
                f"{answer.text[:200]}"
            )
        self._checked.add(source)


class IoTDAPlatform(OneMessageAPlatform):
    """Huawei Cloud IoTDA as the simulator plays it: each report of a device is one
    ``device.property`` notification, one a request, to the source's connector URL (with
    its token); IoTDA does not retry a failed push (one attempt), though now and then a
    notification comes twice."""

    title = "IoTDA"
    attempts = 1
    drops_failures = True

    def report(
        self, source: str, device_id: str, imei: str | None, ts_ms: int, values: dict[str, Any]
    ) -> None:
        """Queue one report of the device IoTDA knows as ``device_id``."""
        at = datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y%m%dT%H%M%SZ")
        body = orjson.dumps(
            {
                "resource": "device.property",
                "event": "report",
                "event_time": at,
                "notify_data": {
                    "header": {
                        "app_id": "cityops-sim",
                        "device_id": device_id,
                        "node_id": imei or device_id.rsplit("_", 1)[-1],
                        "product_id": device_id.split("_", 1)[0],
                    },
                    "body": {
                        "services": [
                            {"service_id": "Level", "properties": values, "event_time": at}
                        ]
                    },
                },
            }
        )
        path = f"/v1/ingest/{self.city}/iotda/{source}"
        self.queue(Job(path, {"token": self.token_of(source)}, body))


class ISecureCenterPlatform(OneMessageAPlatform):
    """Hikvision iSecure Center as the simulator plays it: each camera event is one
    ``OnEventNotify`` with one event, named by the camera's index code and the event type
    code the city's table gives its type, at China Standard Time, with its picture's URL;
    sent again while it has no 200 (3 times at most)."""

    title = "iSecure Center"
    attempts = 3

    def __init__(self, *args: Any, codes: EventCodes | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        table = (codes or EventCodes.load()).tables.get((self.city, "hik-isc"), {})
        #: video event type → the first code the city's table gives it
        self.code_of: dict[str, str] = {}
        for code, meaning in table.items():
            self.code_of.setdefault(meaning.event_type.value, code)

    def event(
        self, source: str, index_code: str, event_type: str, priority: int, at: datetime
    ) -> None:
        """Queue one event of the camera iSecure Center knows as ``index_code``."""
        code = self.code_of.get(event_type)
        if code is None:
            raise CityOpsError(
                f"city {self.city}'s event code table has no iSecure Center code for "
                f"{event_type!r}; add one to events/{self.city}.toml beside the vendor mappings"
            )
        event_id = f"{index_code[:8]}-{int(at.timestamp() * 1000)}-{code}".upper()
        happen = at.astimezone(CST).isoformat(timespec="milliseconds")
        body = orjson.dumps(
            {
                "method": "OnEventNotify",
                "params": {
                    "ability": "event_vss",
                    "sendTime": happen,
                    "events": [
                        {
                            "eventId": event_id,
                            "srcIndex": index_code,
                            "srcType": "camera",
                            "eventType": int(code) if code.isdigit() else code,
                            "status": 0,
                            "eventLvl": {2: 3, 3: 2, 4: 1}.get(priority, 0),
                            "timeout": 0,
                            "happenTime": happen,
                            "data": {
                                "dataType": event_type,
                                "imageUrl": f"http://isc.invalid/pic/{event_id}.jpg",
                            },
                        }
                    ],
                },
            }
        )
        path = f"/v1/ingest/{self.city}/hik-isc/{source}"
        self.queue(Job(path, {"token": self.token_of(source)}, body))


def _nonce(rng: np.random.Generator) -> str:
    return "".join(chr(int(c)) for c in rng.integers(97, 123, 8))
