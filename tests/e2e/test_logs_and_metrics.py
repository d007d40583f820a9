"""Logs of the real `pledgeledger serve` process: JSON lines with request ids, and no secret in
them even at DEBUG. (/metrics with --workers: tests/e2e/test_service.py.)"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from ledger.simulator import SimulatedDevice
from tests.conftest import free_port
from tests.e2e.test_service import Service, _need_anvil, wait_proof  # noqa: F401  (autouse: anvil required)

pytestmark = pytest.mark.slow

#: anvil's second dev account (funded on every anvil chain): a relayer key that is not the default one
RELAYER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
MQTT_PASSWORD = "mqtt-Pa55-never-logged"


def test_secrets_never_reach_the_logs_even_at_debug(tmp_path: Path) -> None:
    service = Service(tmp_path / "data", f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    service.env.update(
        PLEDGELEDGER_LOG_FORMAT="json",
        PLEDGELEDGER_LOG_LEVEL="debug",
        PLEDGELEDGER_RELAYER_KEY=RELAYER_KEY,
        # no broker listens there: the bridge keeps retrying, and logging where it connects
        PLEDGELEDGER_MQTT_URL=f"mqtt://bridge:{MQTT_PASSWORD}@127.0.0.1:{free_port()}",
    )
    try:
        service.start()
        with ThreadPoolExecutor(3) as pool:
            created = dict(zip(["operator", "bank", "auditor"], pool.map(
                lambda role: service.cli("org", "create", role.title(), "--role", role), ["operator", "bank", "auditor"])))
        assert all(r.returncode == 0 for r in created.values()), [r.stderr for r in created.values()]
        keys = {role: json.loads(r.stdout)["api_key"] for role, r in created.items()}
        auth = {role: {"Authorization": f"Bearer {key}"} for role, key in keys.items()}
        device = SimulatedDevice("wh1-scale-secrets", "load_cell")
        with httpx.Client(base_url=service.url, timeout=30) as http:
            r = http.post("/v1/devices", json=device.registration(), headers={**auth["operator"], "X-Request-ID": "secrets-register"})
            assert r.status_code == 201, r.text
            ids = [http.post("/v1/readings", json=device.reading({"weight_kg": 5.0 + i})).json()["id"] for i in range(3)]
            assert wait_proof(http, ids[-1], keys["bank"])["anchor"]["status"] in ("included", "final")
            assert http.get(f"/v1/devices/{device.id}/history", headers=auth["auditor"]).status_code == 200
            assert http.get("/v1/audit", headers=auth["operator"]).status_code == 403
            assert http.post("/v1/devices", json=device.registration(), headers=auth["bank"]).status_code == 403
            assert http.get("/v1/audit", headers={"Authorization": f"Bearer {keys['auditor']}x"}).status_code == 401
            assert http.get("/v1/audit", headers={"Authorization": f"Bearer {RELAYER_KEY}"}).status_code == 401  # pasted by mistake
            assert http.get("/metrics").status_code == 200
    finally:
        service.stop()

    log = service.log.read_text()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert len(lines) > 50 and any(line["level"] == "DEBUG" for line in lines), log[-3000:]
    assert not [line for line in log.splitlines() if line.strip() and not line.startswith("{")], "every log line is JSON"
    register = [line for line in lines if line["request_id"] == "secrets-register"]
    assert any(line["logger"] == "api.access" and line["status"] == 201 for line in register), register
    assert any("mqtt" in line["logger"] and "127.0.0.1" in line["message"] for line in lines)  # the bridge did log its broker

    lowered = log.lower()
    for role, key in keys.items():
        assert key not in log and key.removeprefix("plk_") not in log, f"the {role}'s API key is in the log"
    bare = RELAYER_KEY.removeprefix("0x")
    assert bare.lower() not in lowered, "the relayer key is in the log"
    assert MQTT_PASSWORD not in log, "the MQTT password is in the log"
