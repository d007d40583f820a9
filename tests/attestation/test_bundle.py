"""verify_bundle offline: every check passes on a good bundle and each tamper names its check."""

from __future__ import annotations

import copy
import os
from dataclasses import replace

import pytest

from attestation.bundle import (
    BUNDLE_FORMAT,
    MULTIPROOF_FORMAT,
    ChainFacts,
    OnChainKey,
    build_bundle,
    chain_queries,
    chain_query,
    verify_any,
    verify_bundle,
    verify_multiproof_bundle,
)
from attestation.devices import key_fingerprint
from attestation.encoding import to_hex
from attestation.merkle import StandardTree, leaf_hash
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
    return bundle, ChainFacts(31337, CONTRACT.lower(), tree.root, key, previous_root=os.urandom(32), anchored=(7, tree.root))


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
    on_chain = bytes.fromhex(other["root"][2:])  # the transaction anchored that root, at this index
    report = verify_bundle(bundle, replace(facts, root=on_chain, anchored=(7, on_chain)))
    assert report.failed == ["root"]
    report = verify_bundle(bundle, replace(facts, root=None, anchored=None))  # no such checkpoint at all
    assert report.failed == ["root", "link"]


def test_device_key_checks() -> None:
    """Fraud case 3: unregistered, swapped or expired key."""
    bundle, facts, device = make()
    assert verify_bundle(bundle, replace(facts, device_key=None)).failed == ["device_key"]
    other = SimulatedDevice("wh1-scale-03", "load_cell")
    swapped = OnChainKey(key_fingerprint(other.public_key_pem), "ES256", 0, 2**64 - 1)
    assert verify_bundle(bundle, replace(facts, device_key=swapped)).failed == ["device_key"]
    expired = OnChainKey(facts.device_key.fingerprint, "ES256", 0, 1795248000)
    assert verify_bundle(bundle, replace(facts, device_key=expired)).failed == ["device_key"]
    # the bundle carries a different key than the one that signed: signature and device_key both fail
    forged = tamper(bundle, "device.public_key", other.public_key_pem)
    assert verify_bundle(forged, facts).failed == ["signature", "device_key"]


def test_garbage_never_raises() -> None:
    _, facts, _ = make()
    for garbage in [None, [], {"format": BUNDLE_FORMAT}, {"format": BUNDLE_FORMAT, "reading": 3}]:
        report = verify_bundle(garbage, facts)
        assert not report.ok and report.failed[0] == "format"


# --- multiproof bundles -------------------------------------------------------------------------


def make_multi(n: int = 3) -> tuple[dict, list[ChainFacts], list[SimulatedDevice]]:
    """A multiproof bundle of ``n`` readings of LOT-1 from two devices in a tree of 12 leaves, and its facts."""
    devices = [SimulatedDevice("wh1-scale-03", "load_cell", lot="LOT-1"), SimulatedDevice("wh1-rfid-01", "rfid_inventory", lot="LOT-1")]
    readings = []
    for i in range(n):
        device = devices[i % 2]
        data = {"weight_kg": 1000.0 + i} if device.kind == "load_cell" else {"count": 40 + i}
        readings.append((device, device.reading(data, ts=f"2026-11-21T08:00:0{i}.000Z")))
    salts = [os.urandom(32) for _ in readings]
    values = [(os.urandom(32), os.urandom(32)) for _ in range(12 - n)] + [(s, parse_reading(r).digest) for s, (_, r) in zip(salts, readings)]
    tree = StandardTree.of(values)
    order, mp = tree.multiproof(range(12 - n, 12))
    entries = []
    for i in order:
        device, envelope = readings[i - (12 - n)]
        salt, digest = tree.values[i]
        entries.append({"reading": envelope, "digest": to_hex(digest), "salt": to_hex(salt), "leaf": to_hex(leaf_hash(salt, digest)),
                        "device": {"id": device.id, "alg": device.alg, "public_key": device.public_key_pem}})
    bundle = {
        "format": MULTIPROOF_FORMAT,
        "lot": "LOT-1",
        "readings": entries,
        "multiproof": {"leaves": [[e["salt"], e["digest"]] for e in entries], "proof": [to_hex(p) for p in mp.proof],
                       "proofFlags": mp.proof_flags},
        "root": to_hex(tree.root),
        "anchor": {"chain_id": 31337, "contract": CONTRACT, "index": 7, "tx_hash": "0x" + "ab" * 32, "block_number": 12,
                   "status": "final"},
    }
    keys = {d.id: OnChainKey(key_fingerprint(d.public_key_pem), d.alg, 1_700_000_000, 2**64 - 1) for d in devices}
    facts = [ChainFacts(31337, CONTRACT.lower(), tree.root, keys[e["device"]["id"]], previous_root=os.urandom(32), anchored=(7, tree.root))
             for e in entries]
    return bundle, facts, devices


def test_good_multiproof_bundle_verifies() -> None:
    bundle, facts, _ = make_multi(5)
    report = verify_multiproof_bundle(bundle, facts)
    assert report.ok, report.as_dict()
    assert [c.name for c in report.checks] == ["format", "signature", "digest", "leaf", "multiproof", "chain", "root", "link", "device_key"]
    assert verify_any(bundle, facts).ok
    queries = chain_queries(bundle)
    assert len(queries) == 5 and {q.index for q in queries} == {7}
    assert [q.device for q in queries] == [e["device"]["id"] for e in bundle["readings"]]


@pytest.mark.parametrize(
    "path,value,failed",
    [
        ("readings.1.reading.payload.data", {"weight_kg": 1.0, "count": 1}, "signature"),
        ("readings.0.digest", "0x" + "00" * 32, "format"),  # no longer the multiproof's leaf value
        ("readings.0.leaf", "0x" + "00" * 32, "leaf"),
        ("multiproof.proof.0", "0x" + "55" * 32, "multiproof"),
        ("root", "0x" + "22" * 32, "multiproof"),
        ("lot", "LOT-2", "format"),
        ("readings", [], "format"),
        ("anchor.contract", "0x" + "33" * 20, "chain"),
    ],
)
def test_multiproof_tampering_names_the_failed_check(path: str, value: object, failed: str) -> None:
    bundle, facts, _ = make_multi()
    b = copy.deepcopy(bundle)
    node = b
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    node[int(keys[-1]) if isinstance(node, list) else keys[-1]] = value
    report = verify_multiproof_bundle(b, facts)
    assert not report.ok and report.failed[0] == failed, report.as_dict()


def test_multiproof_failures_name_the_reading() -> None:
    bundle, facts, devices = make_multi(4)
    other = SimulatedDevice("wh1-scale-03", "load_cell")
    facts[2] = replace(facts[2], device_key=OnChainKey(key_fingerprint(other.public_key_pem), "ES256", 0, 2**64 - 1))
    report = verify_multiproof_bundle(bundle, facts)
    assert report.failed == ["device_key"]
    detail = report.checks[-1].detail
    assert f"reading 2 ({bundle['readings'][2]['digest'][2:]})" in detail and "1 of 4" in detail


def test_multiproof_flags_and_salts_are_bound() -> None:
    bundle, facts, _ = make_multi(3)
    flipped = copy.deepcopy(bundle)
    flipped["multiproof"]["proofFlags"][0] = not flipped["multiproof"]["proofFlags"][0]
    assert "multiproof" in verify_multiproof_bundle(flipped, facts).failed
    resalted = copy.deepcopy(bundle)
    salt = "0x" + "11" * 32
    resalted["readings"][0]["salt"] = resalted["multiproof"]["leaves"][0][0] = salt
    resalted["readings"][0]["leaf"] = to_hex(leaf_hash(bytes.fromhex(salt[2:]), bytes.fromhex(bundle["readings"][0]["digest"][2:])))
    assert verify_multiproof_bundle(resalted, facts).failed == ["multiproof", "root"]


def test_multiproof_root_differs_on_chain() -> None:
    bundle, facts, _ = make_multi()
    other = bytes.fromhex(make_multi()[0]["root"][2:])
    assert verify_multiproof_bundle(bundle, [replace(f, root=other, anchored=(7, other)) for f in facts]).failed == ["root"]
    assert verify_multiproof_bundle(bundle, facts[:1]).failed[0] == "format"  # facts for every reading


def test_verify_any_tells_the_formats_apart() -> None:
    single, single_facts, _ = make()
    multi, multi_facts, _ = make_multi()
    assert verify_any(single, [single_facts]).ok and verify_any(multi, multi_facts).ok
    assert not verify_any(single, multi_facts).ok
    for garbage in [None, {"format": MULTIPROOF_FORMAT}, {"format": MULTIPROOF_FORMAT, "readings": [3]}]:
        report = verify_any(garbage, [single_facts])
        assert not report.ok and report.failed[0] == "format"


def test_link_the_anchor_transaction_and_the_previous_checkpoint() -> None:
    bundle, facts, _ = make()
    assert verify_bundle(bundle, facts).ok
    # the named transaction anchored something else, or nothing, or the chain has a hole below
    assert verify_bundle(bundle, replace(facts, anchored=(6, facts.root))).failed == ["link"]
    assert verify_bundle(bundle, replace(facts, anchored=(7, os.urandom(32)))).failed == ["link"]
    assert verify_bundle(bundle, replace(facts, anchored=None)).failed == ["link"]
    assert verify_bundle(bundle, replace(facts, previous_root=None)).failed == ["link"]
    first = copy.deepcopy(bundle)
    first["anchor"]["index"] = 0  # the first checkpoint extends nothing
    assert "link" not in verify_bundle(first, replace(facts, previous_root=None, anchored=(0, facts.root))).failed
