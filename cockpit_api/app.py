"""The cockpit API (``cityops api``): REST under ``/v1``, the live feed, CAP 1.2 and the page.

Everything but ``/health``, ``/ready``, ``/metrics`` and the page's static files needs
an API key; every query is limited to the key's cities, and an alert of another city is
answered as not found.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

import orjson
import psycopg
from fastapi import (
    Depends,
    FastAPI,
    Header,
    HTTPException,
    Query,
    Request,
    Response,
    WebSocket,
    WebSocketDisconnect,
)
from fastapi import (
    Path as PathParam,
)
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from psycopg_pool import ConnectionPool, PoolClosed
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

from cockpit_api import cap, openapi
from cockpit_api.auth import (
    KeyCache,
    Principal,
    RateLimiter,
    authenticate,
    cities_for,
    require_city,
    require_role,
)
from cockpit_api.cache import ResponseCache
from cockpit_api.feed import FeedHub
from cockpit_api.layers import LayerCache, bbox_rows
from cockpit_api.webhooks import Dispatcher, destination_problem
from geo.mapout import feature_collection, grid_heat, points_layer
from lifeline import wording
from lifeline.alerts import ACTIONS, STATUSES, TransitionError
from lifeline.codes import CITY_PATTERN, GRID_PATTERN, is_city_code
from lifeline.vocabulary import IncidentType, Severity
from store import cockpit as db
from store.queries import Point, choose_bucket, series

log = logging.getLogger(__name__)

REQUESTS = Counter("cityops_api_requests_total", "API requests", ["route", "status"])
LATENCY = Histogram(
    "cityops_api_request_seconds",
    "API request latency",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

CITY = Annotated[str, PathParam(pattern=CITY_PATTERN, description="GB/T 2260 city code")]
ALERT_ID = Annotated[str, PathParam(min_length=1, max_length=128)]
Who = Annotated[Principal, Depends(authenticate)]
#: ECharts as the npm registry ships it, under cockpit_api/web
ECHARTS = "node_modules/echarts/dist/echarts.min.js"
#: Times the API takes: ISO 8601 with a time zone, within these bounds.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def _iso_only(value: Any) -> Any:
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        raise ValueError("a time is ISO 8601 with a time zone, e.g. 2026-01-01T00:00:00Z")
    return value


def _bounded(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("a time needs a time zone, e.g. 2026-01-01T00:00:00Z or +08:00")
    if not EARLIEST <= value <= LATEST:
        raise ValueError(f"a time between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
    return value


#: A time in a query: ISO 8601 with a zone, 1970-2200 (a number or a year 1 is a 422).
Time = Annotated[datetime, BeforeValidator(_iso_only), AfterValidator(_bounded)]


def _language(
    accept_language: Annotated[str | None, Header()] = None,
    lang: Annotated[
        Literal["zh", "en"] | None,
        Query(description="zh or en for titles and descriptions; else Accept-Language, else zh"),
    ] = None,
) -> wording.Lang:
    return wording.language(accept_language, lang)


Lang = Annotated[wording.Lang, Depends(_language)]


@dataclass(frozen=True)
class ApiConfig:
    dsn: str
    kafka_bootstrap: str
    online_window: timedelta = timedelta(minutes=15)
    rate_per_s: float = 50.0
    burst: float = 200.0
    pool_size: int = 16
    background: bool = True  # feed hub, escalation and webhook loops
    escalate_every_s: float = 15.0
    overview_ttl_s: float = 1.0
    list_ttl_s: float = 10.0
    #: the platform's cities (others are known once they have devices, layers or alerts)
    cities: tuple[str, ...] = ()
    #: hosts and networks webhooks may be sent to; empty: any but this machine's
    webhook_allow: tuple[str, ...] = ()


class ActionBody(BaseModel):
    note: str = Field("", max_length=2000, description="why; recorded in the audit trail")
    department: str | None = Field(
        None, max_length=200, description="the department to assign to (assign only)"
    )


class WebhookBody(BaseModel):
    url: str = Field(
        max_length=2000,
        description="http(s) URL of the endpoint; its host must be allowed "
        "(CITYOPS_WEBHOOK_ALLOW), and never this machine unless allowed",
    )
    name: str = Field("", max_length=200)


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

    def __init__(self, app: Any, cache: ResponseCache, version: Callable[[], object]) -> None:
        self.app, self.cache, self.version = app, cache, version

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
        state = scope["app"].state
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
        body = self.cache.get(key, self.version())
        if body is None or state.limiter.take(who.key_id) > 0:
            return None
        scope["route"] = _ROUTES["overview" if overview is not None else "alerts"]
        return body


def _json(data: Any, status_code: int = 200) -> Response:
    return Response(
        orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS, default=str),
        status_code=status_code,
        media_type="application/json",
    )


def _points(points: list[Point]) -> list[dict[str, Any]]:
    return [
        {"t": p.bucket, "min": p.min, "max": p.max, "avg": p.avg, "last": p.last, "count": p.count}
        for p in points
    ]


def _bbox(text: str | None) -> tuple[float, float, float, float] | None:
    if text is None:
        return None
    try:
        w, s, e, n = (float(v) for v in text.split(","))
    except ValueError:
        raise HTTPException(
            422, detail="bbox must be 'west,south,east,north' in degrees (WGS84)"
        ) from None
    if not (-180 <= w <= e <= 180 and -90 <= s <= n <= 90):
        raise HTTPException(422, detail="bbox must satisfy west<=east and south<=north in range")
    return (w, s, e, n)


def _locate(impact: dict[str, Any], lon: float, lat: float, valves: Any) -> None:
    """Add to an impact the valves to close as points, and each affected POI's distance
    (metres, great circle) from the incident."""
    import math

    import shapely

    def metres(x: float, y: float) -> float:
        p1, p2 = math.radians(lat), math.radians(y)
        dp, dl = p2 - p1, math.radians(x - lon)
        h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
        return 2 * 6_371_008.8 * math.asin(math.sqrt(h))

    for f in impact["features"]:
        if f["properties"].get("role") == "affected_poi":
            pt = shapely.geometry.shape(f["geometry"]).representative_point()
            f["properties"]["distance_m"] = round(metres(pt.x, pt.y))
    wanted = set(impact["properties"].get("valves_to_close") or ())
    if wanted and not valves.empty:
        for _, v in valves[valves["asset_id"].isin(wanted)].iterrows():
            impact["features"].append(
                {
                    "type": "Feature",
                    "geometry": shapely.geometry.mapping(v.geometry),
                    "properties": {
                        "role": "valve_to_close",
                        "asset_id": v["asset_id"],
                        "network": v.get("network"),
                        "distance_m": round(metres(v.geometry.x, v.geometry.y)),
                    },
                }
            )


def _levels_of(kind: str | None, metric: str) -> list[dict[str, Any]]:
    """The fixed levels of the default rules of ``kind``'s ``metric`` (a chart draws them
    as bands); empty for a series watched by the adaptive baseline."""
    from lifeline.detect.detectors import Levels, Sustained
    from lifeline.detect.rules import defaults_for

    if kind is None:
        return []
    out = []
    for det in defaults_for(kind, metric):
        if isinstance(det, Levels):
            out += [
                {
                    "threshold": lv.threshold,
                    "severity": lv.severity.value,
                    "direction": det.direction,
                }
                for lv in det.levels
            ]
        elif isinstance(det, Sustained):
            out.append(
                {"threshold": det.limit, "severity": det.severity.value, "direction": det.direction}
            )
    return out


def _alert_out(row: dict[str, Any], lang: wording.Lang = "zh") -> dict[str, Any]:
    out = dict(row)
    out["changes"] = int(out.get("changes") or 0)
    sev = Severity(out["severity"])
    out["severity_level"] = sev.roman
    itype = IncidentType(out["type"])
    cells, assets = out.get("grid_cells") or (), out.get("asset_ids") or ()
    out["title"] = wording.title(itype, out["incident_id"], cells, assets, lang)
    out["description"] = wording.description(
        itype, sev, out["alert_status"], out.get("incident_status") or "open", cells, assets, lang
    )
    out["language"] = lang
    out["actions"] = [a.name for a in ACTIONS.values() if out["alert_status"] in a.allowed_from]
    return out


def create_app(config: ApiConfig) -> FastAPI:
    pool = ConnectionPool(
        config.dsn,
        min_size=2,
        max_size=config.pool_size,
        kwargs={"autocommit": True},
        open=False,
        name="cockpit",
    )

    def verify(token: str) -> db.ApiKey | None:
        with pool.connection() as conn:
            return db.verify_key(conn, token)

    dispatcher = Dispatcher(config.dsn)
    hub = FeedHub(config.dsn, on_entries=dispatcher.enqueue)
    layer_cache = LayerCache(pool.connection)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(pool.open, True, 10.0)
        tasks: list[asyncio.Task[None]] = []
        if config.background:
            await hub.start()
            await dispatcher.start()
            tasks.append(asyncio.create_task(escalation_loop(), name="escalation"))
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await hub.stop()
            await dispatcher.stop()
            await asyncio.to_thread(pool.close)

    async def escalation_loop() -> None:
        while True:
            await asyncio.sleep(config.escalate_every_s)
            try:
                done = await asyncio.to_thread(run_escalation)
                if done:
                    log.info("alerts escalated", extra={"alerts": done})
            except (psycopg.Error, PoolClosed) as exc:
                log.warning("escalation check failed", extra={"error": str(exc)[:200]})

    def run_escalation() -> list[str]:
        with pool.connection() as conn:
            return db.escalate_alone(conn, datetime.now(UTC)) or []

    app = FastAPI(
        title="CityOps cockpit API",
        version="1.0",
        description=(
            "Live lifeline incidents and alerts of the pilot cities for the operations centre "
            "and the emergency dispatchers. Authenticate with `Authorization: Bearer <key>`."
        ),
        lifespan=lifespan,
    )
    openapi.install(app)
    app.state.keys = KeyCache(verify)
    app.state.limiter = RateLimiter(config.rate_per_s, config.burst)
    app.state.hub = hub
    app.state.dispatcher = dispatcher
    app.state.pool = pool

    @app.exception_handler(psycopg.DataError)
    async def bad_data(_request: Request, exc: psycopg.DataError) -> JSONResponse:
        # Input the database cannot hold, such as a NUL byte in a text value.
        return JSONResponse(
            {"detail": f"the request holds a value the store cannot take: {exc}"[:300]},
            status_code=422,
        )

    @app.exception_handler(psycopg.OperationalError)
    async def db_down(_request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        return JSONResponse(
            {"detail": "the database is unavailable; try again shortly"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @contextlib.contextmanager
    def conn() -> Iterator[psycopg.Connection[Any]]:
        with pool.connection() as c:
            yield c

    # --- open endpoints -------------------------------------------------------------

    @app.get("/health", tags=["ops"])
    def health() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/ready", tags=["ops"])
    async def ready() -> JSONResponse:
        """The database and Kafka both answer."""
        checks = {"database": await asyncio.to_thread(_db_ok), "kafka": await _kafka_ok()}
        ok = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": checks},
            status_code=200 if ok else 503,
        )

    def _db_ok() -> bool:
        try:
            with pool.connection(timeout=2.0) as c:
                c.execute("SELECT 1")
        except (psycopg.Error, OSError, TimeoutError) as exc:
            log.warning("readiness: database", extra={"error": str(exc)[:200]})
            return False
        return True

    async def _kafka_ok() -> bool:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(
            bootstrap_servers=config.kafka_bootstrap, request_timeout_ms=3000
        )
        try:
            await asyncio.wait_for(admin.start(), 4)
            await asyncio.wait_for(admin.describe_cluster(), 4)
        except Exception as exc:  # any failure to reach the broker means not ready
            log.warning("readiness: kafka", extra={"error": str(exc)[:200]})
            return False
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        return True

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    # --- who and where ----------------------------------------------------------------

    @app.get("/v1/me", tags=["auth"])
    def me(who: Who) -> dict[str, Any]:
        """The caller's key: name, role and cities."""
        return {
            "key_id": who.key_id,
            "name": who.name,
            "role": who.role,
            "cities": list(who.cities) if not who.all_cities else "*",
        }

    @app.get("/v1/cities", tags=["overview"])
    def cities(who: Who) -> dict[str, Any]:
        """The cities the caller may see."""
        if who.all_cities:
            with conn() as c:
                return {"cities": db.known_cities(c)}
        return {"cities": list(who.cities)}

    cache = ResponseCache()
    writes = [0]  # lifecycle changes made by this process, ahead of their feed entry

    def version() -> tuple[int, int]:
        return (hub.head, writes[0])

    inflight: dict[tuple[object, ...], asyncio.Future[bytes]] = {}

    async def cached(key: tuple[object, ...], ttl_s: float, build: Callable[[], Any]) -> Response:
        """The cached body for ``key`` at the current version, built once however many
        requests ask for it at the same moment."""
        at = version()
        body = cache.get(key, at)
        if body is not None:
            return Response(body, media_type="application/json")
        flight = inflight.get((key, at))
        if flight is not None:
            return Response(await asyncio.shield(flight), media_type="application/json")
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        inflight[(key, at)] = future
        try:
            body = await asyncio.to_thread(
                lambda: orjson.dumps(build(), option=orjson.OPT_NON_STR_KEYS, default=str)
            )
            cache.put(key, at, ttl_s, body)
            future.set_result(body)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so an unawaited failure is not reported
            raise
        finally:
            del inflight[(key, at)]
        return Response(body, media_type="application/json")

    app.add_middleware(CachedReads, cache=cache, version=version)
    app.add_middleware(MetricsMiddleware)

    @app.get("/v1/cities/{city}/overview", tags=["overview"])
    async def overview(who: Who, city: CITY) -> Response:
        """Devices online/offline, open incidents by severity and type, mean times to
        acknowledge and resolve (30 days), status per lifeline; at most
        ``overview_ttl_s`` old."""
        require_city(who, city)

        def build() -> dict[str, Any]:
            with conn() as c:
                return db.overview(c, city, datetime.now(UTC), config.online_window)

        return await cached(overview_key(city), config.overview_ttl_s, build)

    # --- alerts -----------------------------------------------------------------------

    @app.get("/v1/alerts", tags=["alerts"])
    async def list_alerts(
        request: Request,
        who: Who,
        language: Lang,
        city: Annotated[list[str], Query(description="city codes; default all of the key's")] = [],  # noqa: B006
        type: Annotated[list[IncidentType], Query()] = [],  # noqa: B006
        severity: Annotated[list[Severity], Query()] = [],  # noqa: B006
        status_: Annotated[list[Literal[STATUSES]], Query(alias="status")] = [],  # type: ignore[valid-type]  # noqa: B006
        incident_status: Annotated[list[Literal["open", "cleared"]], Query()] = [],  # noqa: B006
        start: Time | None = None,
        end: Time | None = None,
        bbox: Annotated[str | None, Query(description="west,south,east,north")] = None,
        grid_cell: Annotated[str | None, Query(pattern=GRID_PATTERN)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> Response:
        """Alerts with their incidents, newest change first, filtered and paged."""
        for code in city:
            if not is_city_code(code):
                raise HTTPException(422, detail=f"city {code!r} is not a 6-digit city code")
        scope = cities_for(who, city)
        f = db.AlertFilter(
            cities=scope,
            types=[t.value for t in type],
            severities=[s.value for s in severity],
            statuses=list(status_),
            incident_statuses=list(incident_status),
            start=start,
            end=end,
            bbox=_bbox(bbox),
            grid_cell=grid_cell,
            limit=limit,
            offset=offset,
        )

        def build() -> dict[str, Any]:
            with conn() as c:
                rows, total = db.list_alerts(c, f)
            return {
                "items": [_alert_out(r, language) for r in rows],
                "total": total,
                "limit": limit,
                "offset": offset,
            }

        key = alerts_key([*request.query_params.multi_items(), ("lang", language)], who.scope_key)
        return await cached(key, config.list_ttl_s, build)

    def _get(c: psycopg.Connection[Any], who: Principal, alert_id: str) -> dict[str, Any]:
        row = db.get_alert(c, alert_id, who.scope())
        if row is None:
            raise HTTPException(404, detail=f"no alert {alert_id!r} in the cities of this key")
        return row

    @app.get("/v1/alerts/{alert_id}", tags=["alerts"])
    def alert_detail(
        who: Who,
        alert_id: ALERT_ID,
        language: Lang,
        window_min: Annotated[int, Query(ge=1, le=1440, description="readings around it")] = 30,
    ) -> Response:
        """One alert: its incident, audit trail, anomalies with the readings around them,
        and the impact (zone, isolating valves, affected POIs and grid cells)."""
        with conn() as c:
            row = _get(c, who, alert_id)
            anomalies = db.anomalies_of(c, row["city"], row["anomaly_ids"])
            start = row["started_at"] - timedelta(minutes=window_min)
            end = (row["cleared_at"] or row["updated_at"]) + timedelta(minutes=window_min)
            evidence = []
            seen = set()
            devices = {ev["device_id"] for a in anomalies for ev in a["evidence"] or []}
            kinds = dict(
                c.execute(
                    "SELECT device_id, kind FROM devices WHERE city = %s AND device_id = ANY(%s)",
                    (row["city"], sorted(devices)),
                ).fetchall()
            )
            for a in anomalies:
                for ev in a["evidence"] or []:
                    key = (ev["device_id"], ev["metric"])
                    if key in seen:
                        continue
                    seen.add(key)
                    points = series(c, row["city"], key[0], key[1], start, end)
                    evidence.append(
                        {
                            "device_id": key[0],
                            "metric": key[1],
                            "unit": ev.get("unit"),
                            "kind": kinds.get(key[0]),
                            "levels": _levels_of(kinds.get(key[0]), key[1]),
                            "bucket_s": choose_bucket(start, end).total_seconds(),
                            "points": _points(points),
                        }
                    )
            trail = db.audit(c, alert_id)
        out = _alert_out(row, language)
        out.update(audit=trail, anomalies=anomalies, evidence=evidence, impact=_impact(row))
        return _json(out)

    def _impact(row: dict[str, Any]) -> dict[str, Any] | None:
        if row["lon"] is None or row["lat"] is None:
            return None
        from geo.impact import assess

        layers = layer_cache.get(row["city"])
        grid, pois = layers.frame("grid"), layers.frame("pois")
        if grid.empty:
            return None
        network = pipes = segment = None
        for asset in row["asset_ids"]:
            found = layers.network_of(asset)
            if found is not None:
                network, pipes = found
                segment = asset
                break
        impact = assess(
            row["lon"],
            row["lat"],
            IncidentType(row["type"]),
            Severity(row["severity"]),
            grid=grid,
            pois=pois if not pois.empty else pois.assign(kind=[], name=[]),
            network=network,
            pipes=pipes,
            segment_id=segment,
        )
        out = impact.to_geojson()
        _locate(out, row["lon"], row["lat"], layers.frame("valves"))
        return out

    @app.post("/v1/alerts/{alert_id}/actions/{action}", tags=["alerts"])
    def act(
        who: Who,
        alert_id: ALERT_ID,
        language: Lang,
        action: Annotated[Literal[tuple(ACTIONS)], PathParam()],  # type: ignore[valid-type]
        body: ActionBody | None = None,
    ) -> Response:
        """A lifecycle step: acknowledge, assign, dispatch, on_site, resolve, close or
        false_alarm. 409 if the alert's status does not allow it, saying what does."""
        require_role(who, "dispatcher")
        body = body or ActionBody()
        with conn() as c:
            try:
                row = db.transition(
                    c, alert_id, who.scope(), action, who.actor, body.note, body.department
                )
            except db.NotFound:
                raise HTTPException(
                    404, detail=f"no alert {alert_id!r} in the cities of this key"
                ) from None
            except TransitionError as exc:
                raise HTTPException(409, detail=str(exc)) from None
        writes[0] += 1
        return _json(_alert_out(row, language))

    @app.get("/v1/alerts/{alert_id}/cap", tags=["cap"], response_class=Response)
    def alert_cap(
        who: Who, alert_id: ALERT_ID, lang: Literal["zh-CN", "en-US"] = "zh-CN"
    ) -> Response:
        """The alert's current state as a CAP 1.2 message."""
        with conn() as c:
            row = _get(c, who, alert_id)
        return Response(cap.to_xml(cap.CapAlert.from_row(row), lang), media_type=cap.CAP_MIME)

    @app.get("/v1/cities/{city}/cap.atom", tags=["cap"], response_class=Response)
    def cap_feed(
        who: Who,
        city: CITY,
        request: Request,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        lang: Literal["zh-CN", "en-US"] = "zh-CN",
    ) -> Response:
        """An Atom feed of the city's alerts (newest first), each entry with its CAP."""
        require_city(who, city)
        with conn() as c:
            rows, _ = db.list_alerts(c, db.AlertFilter(cities=[city], limit=limit))
        base = str(request.base_url).rstrip("/")
        body = cap.atom_feed(city, [cap.CapAlert.from_row(r) for r in rows], base, lang)
        return Response(body, media_type="application/atom+xml")

    # --- map layers -----------------------------------------------------------------

    @app.get("/v1/cities/{city}/map/{layer}", tags=["map"])
    def map_layer(
        who: Who,
        city: CITY,
        layer: Literal["grid-heat", "grid", "assets", "pipes", "pois", "devices", "incidents"],
        zoom: Annotated[int | None, Query(ge=0, le=22)] = None,
        bbox: str | None = None,
        hours: Annotated[float, Query(gt=0, le=24 * 90)] = 24.0,
    ) -> Response:
        """A GeoJSON FeatureCollection for the map, simplified for ``zoom``."""
        require_city(who, city)
        box = _bbox(bbox)
        now = datetime.now(UTC)
        with conn() as c:
            if layer in ("grid", "assets", "pipes", "pois"):
                gdf = bbox_rows(c, city, layer, box)
                props = [col for col in gdf.columns if col != gdf.geometry.name]
                return _json(feature_collection(gdf, props, zoom))
            if layer == "grid-heat":
                events = c.execute(
                    "SELECT grid_cell, severity FROM anomalies WHERE city = %s AND ts >= %s"
                    " AND grid_cell IS NOT NULL",
                    (city, now - timedelta(hours=hours)),
                ).fetchall()
                grid = bbox_rows(c, city, "grid", box)
                return _json(grid_heat(grid, [(r[0], r[1]) for r in events], zoom))
            if layer == "devices":
                rows = db.devices(c, city, now, config.online_window, limit=10000)
                if box is not None:
                    rows = [
                        r
                        for r in rows
                        if box[0] <= r["lon"] <= box[2] and box[1] <= r["lat"] <= box[3]
                    ]
                props = [
                    "device_id",
                    "family",
                    "kind",
                    "asset_id",
                    "grid_code",
                    "online",
                    "last_status",
                ]
                return _json(points_layer(rows, props, zoom))
            rows, _ = db.list_alerts(
                c,
                db.AlertFilter(
                    cities=[city],
                    statuses=["new", "acknowledged", "dispatched", "on_site"],
                    start=now - timedelta(hours=hours),
                    bbox=box,
                    limit=500,
                ),
            )
        rows = [r for r in rows if r["lon"] is not None]
        props = ["incident_id", "type", "severity", "alert_status", "title", "updated_at"]
        return _json(points_layer(rows, props, zoom))

    # --- devices --------------------------------------------------------------------

    @app.get("/v1/cities/{city}/devices", tags=["devices"])
    def list_devices(
        who: Who,
        city: CITY,
        kind: str | None = None,
        online: bool | None = None,
        lifeline: Annotated[
            Literal["gas", "water", "drainage", "bridge", "heating", "tunnel", "public_safety"]
            | None,
            Query(),
        ] = None,
        grid_cell: Annotated[str | None, Query(pattern=GRID_PATTERN)] = None,
        limit: Annotated[int, Query(ge=1, le=10000)] = 500,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> Response:
        """Devices and cameras with their status (online when seen recently) and
        lifeline, filtered by kind, lifeline, status and grid cell."""
        require_city(who, city)
        with conn() as c:
            rows = db.devices(
                c,
                city,
                datetime.now(UTC),
                config.online_window,
                kind=kind,
                online=online,
                lifeline=lifeline,
                grid_cell=grid_cell,
                limit=limit,
                offset=offset,
            )
        return _json({"items": rows, "limit": limit, "offset": offset})

    @app.get("/v1/cities/{city}/devices/{device_id}/series", tags=["devices"])
    def device_series(
        who: Who,
        city: CITY,
        device_id: Annotated[str, PathParam(min_length=1, max_length=64)],
        metric: Annotated[str, Query(min_length=1, max_length=32)],
        start: Time | None = None,
        end: Time | None = None,
        bucket_s: Annotated[int | None, Query(ge=1, le=86400 * 7)] = None,
    ) -> Response:
        """Bucketed series (min/max/avg/last/count) of one metric; the bucket follows
        the range unless given."""
        require_city(who, city)
        end = end or datetime.now(UTC)
        start = start or end - timedelta(hours=6)
        if start.tzinfo is None or end.tzinfo is None:
            raise HTTPException(
                422, detail="start and end need a time zone, e.g. 2026-01-01T00:00:00Z"
            )
        if start >= end:
            raise HTTPException(422, detail="start must be before end")
        if bucket_s:
            bucket = timedelta(seconds=bucket_s)
            if (end - start) / bucket > 10_000:
                raise HTTPException(
                    422, detail="more than 10,000 buckets: widen bucket_s or narrow the range"
                )
        else:
            bucket = choose_bucket(start, end)
            if (end - start) / bucket > 10_000:  # longer than the widest bucket covers
                bucket = timedelta(seconds=-(-(end - start).total_seconds() // 10_000))
        with conn() as c:
            points = series(c, city, device_id, metric, start, end, bucket)
            found = c.execute(
                "SELECT kind, metrics ->> %s FROM devices WHERE city = %s AND device_id = %s",
                (metric, city, device_id),
            ).fetchone()
        kind, unit = found if found else (None, None)
        return _json(
            {
                "device_id": device_id,
                "metric": metric,
                "kind": kind,
                "unit": unit,
                "levels": _levels_of(kind, metric),
                "start": start,
                "end": end,
                "bucket_s": bucket.total_seconds(),
                "points": _points(points),
            }
        )

    # --- live feed ------------------------------------------------------------------

    @app.post("/v1/feed/ticket", tags=["feed"])
    def feed_ticket(who: Who) -> dict[str, Any]:
        """A one-time ticket (60 s) for the WebSocket or SSE URL, for browsers."""
        with pool.connection() as c:
            ticket = db.issue_ticket(c, who.key_id, timedelta(seconds=60))
        return {"ticket": ticket, "expires_in_s": 60}

    def redeem(ticket: str) -> db.ApiKey | None:
        with pool.connection() as c:
            return db.redeem_ticket(c, ticket)

    async def _feed_principal(request: Any, ticket: str | None) -> Principal:
        if ticket:
            # Tickets live in the database: any API replica redeems what another issued.
            found = await asyncio.to_thread(redeem, ticket)
            if found is None:
                raise HTTPException(401, detail="the feed ticket is unknown, used or expired")
            return Principal.of(found)
        return await authenticate(request)

    @app.websocket("/v1/feed/ws")
    async def feed_ws(
        websocket: WebSocket, ticket: str | None = None, last_id: int | None = None
    ) -> None:
        """New and changed alerts of the caller's cities as JSON messages; send
        ``last_id`` to receive what was missed since."""
        try:
            who = await _feed_principal(websocket, ticket)
        except HTTPException as exc:
            await websocket.close(
                code=4401 if exc.status_code == 401 else 4429, reason=str(exc.detail)
            )
            return
        await websocket.accept()

        async def push() -> None:
            async for event in _stream(who, last_id):
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

    @app.get("/v1/feed/sse", tags=["feed"])
    async def feed_sse(
        request: Request, ticket: str | None = None, last_id: int | None = None
    ) -> StreamingResponse:
        """The same feed as Server-Sent Events; ``Last-Event-ID`` resumes."""
        who = await _feed_principal(request, ticket)
        header = request.headers.get("last-event-id")
        resume = (
            last_id
            if last_id is not None
            else (int(header) if header and header.isascii() and header.isdigit() else None)
        )

        async def events() -> AsyncIterator[bytes]:
            yield b": connected\n\n"
            async for event in _stream(who, resume, keepalive_s=15.0):
                if event.get("keepalive"):
                    yield b": keepalive\n\n"
                    continue
                data = orjson.dumps(event).decode()
                yield f"id: {event['id']}\nevent: alert\ndata: {data}\n\n".encode()

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    async def _stream(
        who: Principal, last_id: int | None, keepalive_s: float | None = None
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

    # --- webhooks -------------------------------------------------------------------

    @app.get("/v1/cities/{city}/webhooks", tags=["webhooks"])
    def webhooks(who: Who, city: CITY) -> Response:
        """Dispatcher endpoints that receive CAP pushes for the city."""
        require_role(who, "city_admin")
        require_city(who, city)
        with conn() as c:
            return _json({"items": db.list_webhooks(c, [city])})

    @app.post("/v1/cities/{city}/webhooks", tags=["webhooks"], status_code=201)
    def add_webhook(who: Who, city: CITY, body: WebhookBody) -> Response:
        """Register an endpoint; the response carries the signing secret, once."""
        require_role(who, "city_admin")
        require_city(who, city)
        problem = destination_problem(body.url, config.webhook_allow)
        if problem is not None:
            raise HTTPException(422, detail=f"url: {problem}")
        with conn() as c:
            if city not in config.cities and not db.city_known(c, city):
                raise HTTPException(
                    404, detail=f"city {city} has no devices, layers or alerts on this platform"
                )
            return _json(db.add_webhook(c, city, body.url, body.name), status_code=201)

    @app.delete("/v1/cities/{city}/webhooks/{webhook_id}", tags=["webhooks"], status_code=204)
    def delete_webhook(who: Who, city: CITY, webhook_id: int) -> Response:
        require_role(who, "city_admin")
        require_city(who, city)
        with conn() as c:
            if not db.delete_webhook(c, webhook_id, [city]):
                raise HTTPException(404, detail=f"no webhook {webhook_id} in city {city}")
        return Response(status_code=204)

    @app.get("/v1/cities/{city}/webhooks/deliveries", tags=["webhooks"])
    def deliveries(
        who: Who,
        city: CITY,
        alert_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Response:
        """The delivery log: every push, its attempts and outcome."""
        require_role(who, "city_admin")
        require_city(who, city)
        with conn() as c:
            return _json({"items": db.delivery_log(c, [city], alert_id, limit)})

    # --- the web cockpit --------------------------------------------------------------

    static = Path(str(resources.files("cockpit_api") / "static"))
    app.mount("/static", StaticFiles(directory=static), name="static")
    # Browser libraries installed from the npm registry by the set-up (`make web`).
    echarts = Path(str(resources.files("cockpit_api") / "web")) / ECHARTS
    if not echarts.exists():
        log.warning(
            "the cockpit's charts are missing: run `make web` (npm ci in cockpit_api/web)",
            extra={"missing": str(echarts)},
        )

    @app.get("/vendor/echarts.min.js", include_in_schema=False)
    def echarts_js() -> Response:
        if not echarts.exists():
            raise HTTPException(
                404, detail="ECharts is not installed: run `make web` (npm ci in cockpit_api/web)"
            )
        return FileResponse(
            echarts,
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(static / "index.html", headers={"Cache-Control": "no-cache"})

    return app
