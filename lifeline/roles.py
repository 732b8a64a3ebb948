"""Who may do what on the cockpit: the roles of API keys, each allowed what the ones
before it are (a viewer reads, a dispatcher works alerts, a city admin manages the city's
webhooks, a platform admin sees every city)."""

from __future__ import annotations

ROLES = ("viewer", "dispatcher", "city_admin", "platform_admin")
#: a role's rank: a key may do what any role of a rank up to its own may
RANK = {role: i for i, role in enumerate(ROLES)}
#: the role that is not bound to cities
PLATFORM_ADMIN = "platform_admin"


def allows(role: str, needed: str) -> bool:
    """Whether a key of ``role`` may do what ``needed`` may."""
    return RANK[role] >= RANK[needed]
