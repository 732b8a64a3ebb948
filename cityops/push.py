"""``cityops push serve``: the HTTPS push endpoint (:mod:`ingest.push.app`), its own
process beside the cockpit API."""

from __future__ import annotations

import os
from pathlib import Path

from cityops.settings import Settings
from ingest.push.app import ASGIApp, PushConfig, create_push_app

__all__ = ["app_from_env", "tls_files"]


def app_from_env() -> ASGIApp:
    """The app of one of several worker processes (``push serve --workers N``), from the
    environment the command set up."""
    from cityops.logs import configure
    from cityops.settings import get_settings

    settings = get_settings()
    configure(settings.log_level)
    vendor_dir = os.environ.get("CITYOPS_VENDOR_DIR")
    return create_push_app(
        PushConfig(
            settings.db_dsn.get_secret_value(),
            settings.kafka_bootstrap,
            settings.cities,
            vendor_dir=Path(vendor_dir) if vendor_dir else None,
        )
    )


def tls_files(settings: Settings) -> tuple[str, str] | None:
    """The stack's server certificate and key, when both are there."""
    cert, key = settings.tls_dir / "server.crt", settings.tls_dir / "server.key"
    return (str(cert), str(key)) if cert.exists() and key.exists() else None
