"""verify_bundle offline: every check passes on a good bundle and each tamper names its check."""

from __future__ import annotations

import copy
import os

import pytest

from attestation.bundle import BUNDLE_FORMAT, ChainFacts, OnChainKey, build_bundle, chain_query, verify_bundle
from attestation.devices import key_fingerprint
from attestation.encoding import to_hex
from attestation.merkle import StandardTree
from attestation.readings import parse_reading
from ledger.simulator import SimulatedDevice

CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def make_bundle(reading_json: dict, alg: str, pem: str, device_id: str = "wh1-scale-03") -> tuple[dict, ChainFacts]:
    """A bundle for ``reading_json`` in a 5-leaf tree, and the chain facts that make it verify."""
    reading = parse_reading(reading_json)
    salt = os.urandom(32)
    tree = StandardTree.of([(os.urandom(32), os.urandom(32)) for _ in range(4)] + [(salt, reading.digest)])
    bundle = build_bundle(
        reading=reading_json, salt=salt, digest=reading.digest, proof=tree.proof(4), root=tree.root,
        device={"id": device_id, "alg": alg, "public_key": pem},
        anchor={"chain_id": 31337, "contract": CONTRACT, "index": 7, "tx_hash": "0x" + "ab" * 32,
                "block_number": 12, "status": "final"},
    )
    assert bundle["format"] == BUNDLE_FORMAT and bundle["leaf"] == to_hex(tree.tree[tree.tree_index[4]])
    key = OnChainKey(key_fingerprint(pem), alg, 1_700_000_000, 2**64 - 1)
    return bundle, ChainFacts(31337, CONTRACT.lower(), tree.root, key)


def make(alg: str = "ES256") -> tuple[dict, ChainFacts, SimulatedDevice]:
    device = SimulatedDevice("wh1-scale-03", "load_cell", alg=alg, lot="LOT-1")
    env = device.reading({"weight_kg": 1250.5}, ts="2026-11-21T08:00:00.000Z")
    bundle, facts = make_bundle(env, alg, device.public_key_pem, device.id)
    return bundle, facts, device


@pytest.mark.parametrize("alg", ["ES256", "ES256K", "EdDSA"])
def test_good_bundle_verifies(alg: str) -> None:
    bundle, facts, _ = make(alg)
    report = verify_bundle(bundle, facts)
    assert report.ok, report.as_dict()
    q = chain_query(bundle)
    assert (q.index, q.device, q.timestamp) == (7, "wh1-scale-03", 1795248000)


def tamper(bundle: dict, path: str, value: object) -> dict:
    b = copy.deepcopy(bundle)
    node = b
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value
    return b


@pytest.mark.parametrize(
    "path,value,failed",
    [
        ("reading.payload.data.weight_kg", 1250.6, "signature"),
        ("reading.payload.seq", 2, "signature"),
        ("digest", "0x" + "00" * 32, "digest"),
        ("salt", "0x" + "11" * 32, "leaf"),
        ("root", "0x" + "22" * 32, "proof"),
        ("format", "other/1", "format"),
        ("anchor.chain_id", 1, "chain"),
        ("anchor.contract", "0x" + "33" * 20, "chain"),
    ],
)
def test_tampering_names_the_failed_check(path: str, value: object, failed: str) -> None:
    bundle, facts, _ = make()
    report = verify_bundle(tamper(bundle, path, value), facts)
    assert not report.ok
    assert report.failed[0] == failed


def test_forged_proof_fails() -> None:
    bundle, facts, _ = make()
    bundle["proof"][0] = "0x" + "44" * 32
    assert "proof" in verify_bundle(bundle, facts).failed


def test_root_differs_on_chain() -> None:
    """Fraud case 12: a bundle built on another tree fails against the one on-chain root."""
    bundle, facts, _ = make()
    other, _, _ = make()
    report = verify_bundle(bundle, ChainFacts(facts.chain_id, facts.contract, bytes.fromhex(other["root"][2:]), facts.device_key))
    assert report.failed == ["root"]
    report = verify_bundle(bundle, ChainFacts(facts.chain_id, facts.contract, None, facts.device_key))
    assert report.failed == ["root"]


def test_device_key_checks() -> None:
    """Fraud case 3: unregistered, swapped or expired key."""
    bundle, facts, device = make()
    assert verify_bundle(bundle, ChainFacts(facts.chain_id, facts.contract, facts.root, None)).failed == ["device_key"]
    other = SimulatedDevice("wh1-scale-03", "load_cell")
    swapped = OnChainKey(key_fingerprint(other.public_key_pem), "ES256", 0, 2**64 - 1)
    assert verify_bundle(bundle, ChainFacts(facts.chain_id, facts.contract, facts.root, swapped)).failed == ["device_key"]
    expired = OnChainKey(facts.device_key.fingerprint, "ES256", 0, 1795248000)
    assert verify_bundle(bundle, ChainFacts(facts.chain_id, facts.contract, facts.root, expired)).failed == ["device_key"]
    # the bundle carries a different key than the one that signed: signature and device_key both fail
    forged = tamper(bundle, "device.public_key", other.public_key_pem)
    assert verify_bundle(forged, facts).failed == ["signature", "device_key"]


def test_garbage_never_raises() -> None:
    _, facts, _ = make()
    for garbage in [None, [], {"format": BUNDLE_FORMAT}, {"format": BUNDLE_FORMAT, "reading": 3}]:
        report = verify_bundle(garbage, facts)
        assert not report.ok and report.failed[0] == "format"
