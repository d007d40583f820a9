from __future__ import annotations

import httpx

from api.main import create_app
from ledger.ratelimit import DeviceRateLimiter
from ledger.simulator import SimulatedDevice
from tests.conftest import LiveServer


def test_token_bucket() -> None:
    limiter = DeviceRateLimiter(rate_per_s=2, burst=3)
    assert [limiter.take("d", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("d", now=0.0) == 0.5  # empty: one token takes half a second
    assert limiter.take("other", now=0.0) == 0.0  # per device
    assert limiter.take("d", now=0.5) == 0.0
    assert limiter.take("d", now=0.5) > 0
    assert limiter.take("d", now=100.0) == 0.0  # refilled, capped at the burst
    assert [limiter.take("d", now=100.0) for _ in range(3)] == [0.0, 0.0, 0.5]


def test_http_rate_limit(db_url, ledger_factory) -> None:  # type: ignore[no-untyped-def]
    ledger = ledger_factory(db_url, device_rate_per_s=0.01, device_burst=3)
    operator = ledger.create_organisation(name="wh", role="operator")
    device = SimulatedDevice("wh1-chatty", "heartbeat")
    quiet = SimulatedDevice("wh1-quiet", "heartbeat")
    with LiveServer(create_app(ledger=ledger)) as server, httpx.Client(base_url=server.url) as http:
        for d in (device, quiet):
            assert http.post("/v1/devices", json=d.registration(), headers={"Authorization": f"Bearer {operator.api_key}"}).status_code == 201
        results = http.post("/v1/readings", json=[device.reading({}) for _ in range(4)]).json()
        assert [r["status"] for r in results] == ["accepted"] * 3 + ["rejected"]
        assert results[3]["code"] == "rate_limited"
        r = http.post("/v1/readings", json=device.reading({}))
        assert (r.status_code, r.json()["error"]["code"]) == (429, "rate_limited")
        assert int(r.headers["Retry-After"]) >= 1
        assert http.post("/v1/readings", json=quiet.reading({})).status_code == 201  # other devices unaffected
