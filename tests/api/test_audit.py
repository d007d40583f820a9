"""The auditor's endpoints over real HTTP: the whole-ledger audit and one device's history."""

from __future__ import annotations

import json

from sqlalchemy import select

from ledger.simulator import SimulatedDevice
from ledger.store.models import Reading
from tests.api.conftest import bearer, register


def test_audit_endpoints(env) -> None:  # type: ignore[no-untyped-def]
    ledger, http, operator, bank = env
    auditor = ledger.create_organisation(name="Audit & Co", role="auditor")
    device = SimulatedDevice("wh1-scale-h", "load_cell", lot="LOT-H")
    assert register(http, operator, device).status_code == 201
    ids = [r["id"] for r in http.post("/v1/readings", json=[device.reading({"weight_kg": 10.0 + i}) for i in range(3)]).json()]
    ledger.anchorer.tick()

    for path in ("/v1/audit", f"/v1/devices/{device.id}/history"):
        for org in (operator, bank):
            r = http.get(path, headers=bearer(org))
            assert (r.status_code, r.json()["error"]["code"]) == (403, "role_forbidden"), path
        assert http.get(path).status_code == 401

    report = http.get("/v1/audit", headers=bearer(auditor)).json()
    assert report["ok"] is True and report["errors"] == 0
    assert report["counts"]["readings"] == 3 and report["counts"]["batches"] == 1 and report["chain"]["checkpoints"] == 1
    history = http.get(f"/v1/devices/{device.id}/history", headers=bearer(auditor)).json()
    assert history["ok"] is True
    (view,) = history["devices"]
    assert view["id"] == device.id and view["readings"] == 3 and (view["first_seq"], view["last_seq"]) == (1, 3)
    assert [k["fingerprint"] for k in view["keys"]] == [k["fingerprint"] for k in view["chain_keys"]]
    r = http.get("/v1/devices/nope/history", headers=bearer(auditor))
    assert (r.status_code, r.json()["error"]["code"]) == (404, "device_not_found")

    with ledger.db.session() as session:  # the stored reading is altered behind the service's back
        row = session.scalar(select(Reading).where(Reading.id == ids[1]))
        envelope = json.loads(row.envelope)
        envelope["payload"]["data"]["weight_kg"] = 99.0
        row.envelope = json.dumps(envelope)
    report = http.get("/v1/audit", headers=bearer(auditor)).json()
    assert report["ok"] is False
    assert ids[1] in {f.get("reading") for f in report["findings"] if f["kind"] == "digest_mismatch"}
    history = http.get(f"/v1/devices/{device.id}/history", headers=bearer(auditor)).json()
    assert history["ok"] is False and ids[1] in {f.get("reading") for f in history["findings"]}
