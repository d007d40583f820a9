"""Proof bundles (SPEC §4) and their verifier.

A bank verifies a bundle in two steps, neither of which trusts the ledger service:

1. :func:`chain_query` says what to read from the chain (anchor contract, checkpoint
   index, device id and the reading's time);
2. the caller reads those facts from a node it trusts (``rootOf(index)`` and the device's
   ``keyAt(device, time)`` in the registry the anchor names) and passes them to
   :func:`verify_bundle`, which checks everything else offline and names each check.

``pledgeledger verify FILE --rpc URL`` is exactly this with web3 as the reader.

A bundle's ``reading`` is the JSON envelope as received or, for a COSE_Sign1 reading,
``{"cose": "<base64url of its exact bytes>"}`` (:mod:`attestation.readings`); both are
checked the same way, the signature over what that envelope signs.
"""

from __future__ import annotations

import hmac
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from attestation.devices import key_fingerprint
from attestation.encoding import from_hex32, to_hex
from attestation.errors import AttestationError
from attestation.merkle import leaf_hash, process_proof
from attestation.readings import SignedReading, parse_reading

__all__ = [
    "BUNDLE_FORMAT",
    "AnchorQuery",
    "ChainFacts",
    "CheckResult",
    "OnChainKey",
    "VerificationReport",
    "build_bundle",
    "chain_query",
    "verify_bundle",
]

BUNDLE_FORMAT = "pledgeledger.proof/1"

#: The checks of a bundle, in the order they are reported.
CHECKS = ("format", "signature", "digest", "leaf", "proof", "chain", "root", "device_key")


class BundleFormatError(AttestationError):
    code = "invalid_bundle"


@dataclass(frozen=True)
class AnchorQuery:
    """What a verifier must read from the chain for one bundle."""

    chain_id: int
    contract: str
    index: int
    device: str
    timestamp: int  # the reading's time in Unix seconds (floor), for DeviceRegistry.keyAt


@dataclass(frozen=True)
class OnChainKey:
    """``DeviceRegistry.keyAt(device, timestamp)`` as read from the chain."""

    fingerprint: bytes
    alg: str
    valid_from: int
    valid_until: int


@dataclass(frozen=True)
class ChainFacts:
    """Facts read from the chain the bundle names; ``None`` where the chain had none."""

    chain_id: int
    contract: str
    root: bytes | None  # rootOf(index)
    device_key: OnChainKey | None  # keyAt(device, timestamp)


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


@dataclass
class VerificationReport:
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return len(self.checks) == len(CHECKS) and all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if not c.ok]

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "failed": self.failed, "checks": [c.__dict__ for c in self.checks]}


def build_bundle(
    *,
    reading: dict[str, Any],
    salt: bytes,
    digest: bytes,
    proof: Sequence[bytes],
    root: bytes,
    device: dict[str, str],
    anchor: dict[str, Any],
) -> dict[str, Any]:
    """The SPEC §4 proof bundle of one reading, as the ledger serves it.

    **Parameters**

    - ``reading``: the signed reading exactly as received (JSON envelope or ``{"cose": ...}``)
    - ``salt``, ``digest``: the reading's leaf values; the leaf is computed from them
    - ``proof``: sibling hashes from the leaf up to ``root``
    - ``device``: ``{"id", "alg", "public_key"}``
    - ``anchor``: ``{"chain_id", "contract", "index", "tx_hash", "block_number", "status"}``
    """
    return {
        "format": BUNDLE_FORMAT,
        "reading": reading,
        "digest": to_hex(digest),
        "salt": to_hex(salt),
        "leaf": to_hex(leaf_hash(salt, digest)),
        "proof": [to_hex(p) for p in proof],
        "root": to_hex(root),
        "device": dict(device),
        "anchor": dict(anchor),
    }


def _require(bundle: Any, path: str, kind: type | tuple[type, ...]) -> Any:
    node = bundle
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise BundleFormatError(f"bundle has no {path}", field=path)
        node = node[part]
    if not isinstance(node, kind) or isinstance(node, bool) and kind is not bool:
        raise BundleFormatError(f"bundle {path} has the wrong type", field=path)
    return node


def chain_query(bundle: Any) -> AnchorQuery:
    """Read what must be fetched from the chain; raise :class:`BundleFormatError` if malformed."""
    if _require(bundle, "format", str) != BUNDLE_FORMAT:
        raise BundleFormatError(f"bundle format must be {BUNDLE_FORMAT}", field="format")
    reading = parse_reading(_require(bundle, "reading", dict))
    return AnchorQuery(
        chain_id=_require(bundle, "anchor.chain_id", int),
        contract=_require(bundle, "anchor.contract", str),
        index=_require(bundle, "anchor.index", int),
        device=reading.device,
        timestamp=math.floor(reading.ts.timestamp()),
    )


def verify_bundle(bundle: Any, facts: ChainFacts) -> VerificationReport:
    """Check a proof bundle against facts read from the chain. Pure; never raises on bad input."""
    report = VerificationReport()

    def check(name: str, test: Callable[[], str]) -> bool:
        try:
            detail = test()
            report.checks.append(CheckResult(name, True, detail))
            return True
        except (AttestationError, ValueError, TypeError, KeyError) as exc:
            report.checks.append(CheckResult(name, False, getattr(exc, "message", None) or str(exc)))
            return False

    parsed: dict[str, Any] = {}

    def fmt() -> str:
        query = chain_query(bundle)
        parsed["query"] = query
        parsed["reading"] = parse_reading(bundle["reading"])
        parsed["digest"] = from_hex32(_require(bundle, "digest", str))
        parsed["salt"] = from_hex32(_require(bundle, "salt", str))
        parsed["leaf"] = from_hex32(_require(bundle, "leaf", str))
        parsed["root"] = from_hex32(_require(bundle, "root", str))
        parsed["proof"] = [from_hex32(p) for p in _require(bundle, "proof", list)]
        parsed["public_key"] = _require(bundle, "device.public_key", str)
        if _require(bundle, "device.id", str) != query.device:
            raise BundleFormatError("device.id differs from the reading's payload.device", field="device.id")
        if _require(bundle, "device.alg", str) != parsed["reading"].alg:
            raise BundleFormatError("device.alg differs from the reading's alg", field="device.alg")
        return f"{BUNDLE_FORMAT}, {parsed['reading'].envelope_kind} reading {query.device} at {parsed['reading'].payload['ts']}"

    if not check("format", fmt):
        for name in CHECKS[1:]:
            report.checks.append(CheckResult(name, False, "not checked: the bundle is malformed"))
        return report

    reading: SignedReading = parsed["reading"]
    query: AnchorQuery = parsed["query"]
    cose = reading.envelope_kind == "cose"
    signed_what = "COSE Sig_structure" if cose else "RFC 8785 payload"
    digest_of = "sha256(COSE payload)" if cose else "sha256(JCS(payload))"

    def signature() -> str:
        reading.verify(parsed["public_key"])
        return f"{reading.alg} signature over the {signed_what} verifies with the bundle's device key"

    def digest() -> str:
        if not hmac.compare_digest(reading.digest, parsed["digest"]):
            raise ValueError(f"{digest_of} is {to_hex(reading.digest)}, bundle says {to_hex(parsed['digest'])}")
        return f"{digest_of} = {to_hex(reading.digest)}"

    def leaf() -> str:
        expected = leaf_hash(parsed["salt"], reading.digest)
        if expected != parsed["leaf"]:
            raise ValueError(f"keccak256(keccak256(abi.encode(salt, digest))) is {to_hex(expected)}, bundle says {to_hex(parsed['leaf'])}")
        return f"leaf {to_hex(expected)}"

    def proof() -> str:
        computed = process_proof(leaf_hash(parsed["salt"], reading.digest), parsed["proof"])
        if computed != parsed["root"]:
            raise ValueError(f"the proof leads to {to_hex(computed)}, not the bundle root {to_hex(parsed['root'])}")
        return f"{len(parsed['proof'])}-step proof leads to root {to_hex(computed)}"

    def chain() -> str:
        if facts.chain_id != query.chain_id:
            raise ValueError(f"the bundle names chain {query.chain_id}, the node is chain {facts.chain_id}")
        if facts.contract.lower() != query.contract.lower():
            raise ValueError(f"the bundle names contract {query.contract}, facts were read from {facts.contract}")
        return f"chain {facts.chain_id}, anchor contract {facts.contract}"

    def root() -> str:
        if facts.root is None:
            raise ValueError(f"the contract has no checkpoint {query.index}")
        if facts.root != parsed["root"]:
            raise ValueError(f"rootOf({query.index}) on chain is {to_hex(facts.root)}, the bundle root is {to_hex(parsed['root'])}")
        computed = process_proof(leaf_hash(parsed["salt"], reading.digest), parsed["proof"])
        if computed != facts.root:
            raise ValueError(f"the reading's proof leads to {to_hex(computed)}, not rootOf({query.index})")
        return f"rootOf({query.index}) = {to_hex(facts.root)}"

    def device_key() -> str:
        key = facts.device_key
        if key is None or not any(key.fingerprint):
            raise ValueError(f"no key of device {query.device} was registered and valid at {query.timestamp} on chain")
        fingerprint = key_fingerprint(parsed["public_key"])
        if key.fingerprint != fingerprint:
            raise ValueError(
                f"the bundle's key has fingerprint {to_hex(fingerprint)}, the key registered on chain at that time is {to_hex(key.fingerprint)}"
            )
        if key.alg != reading.alg:
            raise ValueError(f"the key is registered for {key.alg}, the reading uses {reading.alg}")
        if not key.valid_from <= query.timestamp < key.valid_until:
            raise ValueError(f"the key is valid over [{key.valid_from}, {key.valid_until}), the reading is at {query.timestamp}")
        return f"key {to_hex(fingerprint)} registered for {query.device}, valid at {query.timestamp}"

    for name, test in [
        ("signature", signature),
        ("digest", digest),
        ("leaf", leaf),
        ("proof", proof),
        ("chain", chain),
        ("root", root),
        ("device_key", device_key),
    ]:
        check(name, test)
    return report
