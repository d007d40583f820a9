"""Fixtures for the HTTP tests: a ledger on an embedded chain behind a real uvicorn server."""

from __future__ import annotations

import httpx
import pytest

from api.main import create_app
from ledger.simulator import SimulatedDevice
from tests.conftest import LiveServer


def bearer(org) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"Authorization": f"Bearer {org.api_key}"}


@pytest.fixture
def env(db_url, ledger_factory):  # type: ignore[no-untyped-def]
    ledger = ledger_factory(db_url)
    operator = ledger.create_organisation(name="Warehouse One", role="operator")
    bank = ledger.create_organisation(name="Bank A", role="bank")
    with LiveServer(create_app(ledger=ledger)) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        yield ledger, http, operator, bank


def register(http: httpx.Client, operator, device: SimulatedDevice) -> httpx.Response:  # type: ignore[no-untyped-def]
    return http.post("/v1/devices", json=device.registration(), headers=bearer(operator))
