"""What a cockpit API process is configured with (``cityops api`` builds it from Settings)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


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
