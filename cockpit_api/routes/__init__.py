"""The API's routers, one per resource; ``create_app`` includes them in this order."""

from cockpit_api.routes import (
    alerts,
    cap,
    devices,
    feed,
    kinds,
    maps,
    ops,
    overview,
    web,
    webhooks,
)

ROUTERS = (
    ops.router,
    overview.router,
    alerts.router,
    cap.router,
    maps.router,
    devices.router,
    kinds.router,
    feed.router,
    webhooks.router,
    web.router,
)
