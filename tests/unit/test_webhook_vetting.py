"""The address a webhook push connects to: resolved and checked at connection time."""

from __future__ import annotations

import asyncio

import pytest

from cockpit_api.webhooks import DestinationRefused, VettedBackend


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "::1", "169.254.169.254", "0.0.0.0"])  # noqa: S104
def test_a_host_that_is_this_machine_or_its_link_is_refused_at_connection(host: str) -> None:
    with pytest.raises(DestinationRefused, match="not a webhook destination"):
        asyncio.run(VettedBackend(()).vet(host, 443))


def test_a_public_address_is_connected_to_as_resolved() -> None:
    assert asyncio.run(VettedBackend(()).vet("192.0.2.10", 443)) == "192.0.2.10"


def test_hosts_the_operator_allows_by_name_go_through() -> None:
    assert asyncio.run(VettedBackend(("localhost",)).vet("localhost", 443)) == "localhost"


def test_a_webhook_never_connects_to_a_local_socket() -> None:
    with pytest.raises(DestinationRefused):
        asyncio.run(VettedBackend(()).connect_unix_socket("/run/cityops.sock"))
