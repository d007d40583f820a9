"""Tree export and multiproofs over real HTTP, checked with OpenZeppelin's JS library and the chain."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from attestation.bundle import chain_queries, verify_any
from ledger.chain.client import ChainReader
from ledger.simulator import SimulatedDevice
from tests.api.conftest import bearer, register
from tests.conftest import run_node

OZ = Path(__file__).resolve().parent.parent / "attestation" / "oz_merkle.mjs"


@pytest.fixture
def anchored(env):  # type: ignore[no-untyped-def]
    """Batch 0: five readings of LOT-A from two devices, two of LOT-B; an auditor's key."""
    ledger, http, operator, bank = env
    auditor = ledger.create_organisation(name="Audit & Co", role="auditor")
    devices = [SimulatedDevice("wh1-scale-a", "load_cell", lot="LOT-A"), SimulatedDevice("wh1-rfid-a", "rfid_inventory", lot="LOT-A"),
               SimulatedDevice("wh2-scale-b", "load_cell", lot="LOT-B")]
    for device in devices:
        assert register(http, operator, device).status_code == 201
    envelopes = [devices[0].reading({"weight_kg": 700.0 + i}) for i in range(3)] + [devices[1].reading({"count": 5}),
                 devices[1].reading({"count": 6})] + [devices[2].reading({"weight_kg": 1.0 + i}) for i in range(2)]
    ids = [r["id"] for r in http.post("/v1/readings", json=envelopes).json()]
    ledger.anchorer.tick()
    return ledger, http, {"operator": operator, "bank": bank, "auditor": auditor}, ids


def test_tree_export_loads_in_openzeppelin_with_the_anchored_root(anchored) -> None:  # type: ignore[no-untyped-def]
    ledger, http, orgs, ids = anchored
    r = http.get("/v1/batches/0/tree", headers=bearer(orgs["auditor"]))
    assert r.status_code == 200, r.text
    dump = r.json()
    assert dump["format"] == "standard-v1" and dump["leafEncoding"] == ["bytes32", "bytes32"]
    assert sorted(digest[2:] for _, digest in (v["value"] for v in dump["values"])) == sorted(ids)
    assert dump["anchor"]["index"] == 0 and dump["anchor"]["status"] in ("included", "final")
    ref = run_node(OZ, {"dump": dump})  # StandardMerkleTree.load() validates every node and value
    on_chain = "0x" + ChainReader(ledger.chain.w3).root_of(dump["anchor"]["contract"], 0).hex()
    assert ref["loadedRoot"] == on_chain == dump["tree"][0]
    assert ref["verified"] == [True] * len(ids)


def test_tree_export_is_for_auditors_only(anchored) -> None:  # type: ignore[no-untyped-def]
    _, http, orgs, _ = anchored
    for role in ("operator", "bank"):
        r = http.get("/v1/batches/0/tree", headers=bearer(orgs[role]))
        assert (r.status_code, r.json()["error"]["code"]) == (403, "role_forbidden"), role
        assert "auditor" in r.json()["error"]["message"]
    assert http.get("/v1/batches/0/tree").status_code == 401
    r = http.get("/v1/batches/9/tree", headers=bearer(orgs["auditor"]))
    assert (r.status_code, r.json()["error"]["code"]) == (404, "batch_not_found")
    assert http.get("/v1/batches/-1/tree", headers=bearer(orgs["auditor"])).json()["error"]["code"] == "invalid_request"


def test_multiproof_of_a_lot_verifies_on_chain_and_in_openzeppelin(anchored) -> None:  # type: ignore[no-untyped-def]
    ledger, http, orgs, ids = anchored
    r = http.get("/v1/batches/0/multiproof", params={"lot": "LOT-A"}, headers=bearer(orgs["bank"]))
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["format"] == "pledgeledger.multiproof/1" and bundle["lot"] == "LOT-A"
    assert sorted(e["digest"][2:] for e in bundle["readings"]) == sorted(ids[:5])
    assert bundle["anchor"]["status"] in ("included", "final")
    reader = ChainReader(ledger.chain.w3)
    report = verify_any(bundle, reader.chain_facts_many(chain_queries(bundle)))
    assert report.ok, report.as_dict()
    ref = run_node(OZ, {"multiproofs": [{"root": bundle["root"], "multiproof": bundle["multiproof"]}]})
    assert ref["multiVerified"] == [True]

    # a reading of another lot swapped in, with its genuine signature, salt and key, is refused
    other = http.get("/v1/batches/0/multiproof", params={"lot": "LOT-B"}, headers=bearer(orgs["bank"])).json()
    forged = copy.deepcopy(bundle)
    forged["readings"][0] = other["readings"][0]
    forged["lot"] = "LOT-A"
    forged["multiproof"]["leaves"][0] = other["multiproof"]["leaves"][0]
    assert not verify_any(forged, reader.chain_facts_many(chain_queries(forged))).ok


def test_multiproof_errors(anchored) -> None:  # type: ignore[no-untyped-def]
    ledger, http, orgs, _ = anchored
    headers = bearer(orgs["bank"])
    r = http.get("/v1/batches/0/multiproof", params={"lot": "LOT-NONE"}, headers=headers)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "lot_not_in_batch")
    r = http.get("/v1/batches/5/multiproof", params={"lot": "LOT-A"}, headers=headers)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "batch_not_found")
    assert http.get("/v1/batches/0/multiproof", headers=headers).json()["error"]["code"] == "invalid_request"  # lot is required
    assert http.get("/v1/batches/0/multiproof", params={"lot": "LOT-A"}).status_code == 401
    device = SimulatedDevice("wh1-scale-late", "load_cell", lot="LOT-A")
    assert register(http, orgs["operator"], device).status_code == 201
    assert http.post("/v1/readings", json=device.reading({"weight_kg": 3.0})).status_code == 201
    ledger.anchorer.seal()  # batch 1 sealed, not anchored yet
    r = http.get("/v1/batches/1/multiproof", params={"lot": "LOT-A"}, headers=headers)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "proof_pending") and int(r.headers["Retry-After"]) >= 1
