"""verify_bundle offline for COSE_Sign1 readings: the bundle's reading is {"cose": "<base64url>"}."""

from __future__ import annotations

import copy

import pytest

from attestation.bundle import chain_query, verify_bundle
from attestation.encoding import b64url_decode, b64url_encode
from ledger.simulator import SimulatedDevice
from tests.attestation.test_bundle import make_bundle
from tests.attestation.test_cose import COSE_VECTOR, DIGEST, RFC8032_PEM

@pytest.mark.parametrize("alg", ["ES256", "ES256K", "EdDSA"])
def test_cose_bundle_verifies(alg: str) -> None:
    device = SimulatedDevice("wh1-scale-03", "load_cell", alg=alg, lot="LOT-1")
    data = device.cose_reading({"weight_kg": 1250.5}, ts="2026-11-21T08:00:00.000Z")
    bundle, facts = make_bundle({"cose": b64url_encode(data)}, alg, device.public_key_pem)
    report = verify_bundle(bundle, facts)
    assert report.ok, report.as_dict()
    details = {c.name: c.detail for c in report.checks}
    assert "COSE Sig_structure" in details["signature"] and "sha256(COSE payload)" in details["digest"]
    q = chain_query(bundle)
    assert (q.index, q.device, q.timestamp) == (7, "wh1-scale-03", 1795248000)


def test_hand_built_vector_in_a_bundle() -> None:
    bundle, facts = make_bundle({"cose": b64url_encode(COSE_VECTOR)}, "EdDSA", RFC8032_PEM)
    assert bundle["digest"] == "0x" + DIGEST
    assert verify_bundle(bundle, facts).ok


def _with_cose(bundle: dict, data: bytes) -> dict:
    b = copy.deepcopy(bundle)
    b["reading"] = {"cose": b64url_encode(data)}
    return b


def test_tampering_names_the_failed_check() -> None:
    bundle, facts = make_bundle({"cose": b64url_encode(COSE_VECTOR)}, "EdDSA", RFC8032_PEM)
    data = b64url_decode(bundle["reading"]["cose"])
    # seq 42 -> 43 inside the payload: still deterministic CBOR, so only the signature (and the digest) break
    forged = data.replace(bytes.fromhex("63736571182a"), bytes.fromhex("63736571182b"))
    report = verify_bundle(_with_cose(bundle, forged), facts)
    assert report.failed[:2] == ["signature", "digest"]
    # a non-deterministic payload is malformed: nothing else is checked
    loose = data.replace(bytes.fromhex("63736571182a"), bytes.fromhex("6373657119002a"))
    assert verify_bundle(_with_cose(bundle, loose), facts).failed[0] == "format"
    # the reading's JSON form admits no other fields
    extra = copy.deepcopy(bundle)
    extra["reading"]["alg"] = "EdDSA"
    assert verify_bundle(extra, facts).failed[0] == "format"
    # the device's alg must match the protected alg
    wrong_alg = copy.deepcopy(bundle)
    wrong_alg["device"]["alg"] = "ES256"
    assert verify_bundle(wrong_alg, facts).failed[0] == "format"
    # another key
    other = SimulatedDevice("wh1-scale-03", "load_cell", alg="EdDSA")
    swapped = copy.deepcopy(bundle)
    swapped["device"]["public_key"] = other.public_key_pem
    assert verify_bundle(swapped, facts).failed == ["signature", "device_key"]
    # the digest field
    bad_digest = copy.deepcopy(bundle)
    bad_digest["digest"] = "0x" + "00" * 32
    assert verify_bundle(bad_digest, facts).failed == ["digest"]


def test_garbage_cose_never_raises() -> None:
    bundle, facts = make_bundle({"cose": b64url_encode(COSE_VECTOR)}, "EdDSA", RFC8032_PEM)
    for garbage in [{"cose": None}, {"cose": ""}, {"cose": "AA"}, {"cose": b64url_encode(COSE_VECTOR[:-1])}]:
        b = copy.deepcopy(bundle)
        b["reading"] = garbage
        report = verify_bundle(b, facts)
        assert not report.ok and report.failed[0] == "format"
