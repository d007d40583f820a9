"""Proof bundles (SPEC §4) and their verifier.

A bank verifies a bundle in two steps, neither of which trusts the ledger service:

1. :func:`chain_query` says what to read from the chain (anchor contract, checkpoint
   index, device id and the reading's time);
2. the caller reads those facts from a node it trusts (``rootOf(index)`` and the device's
   ``keyAt(device, time)`` in the registry the anchor names) and passes them to
   :func:`verify_bundle`, which checks everything else offline and names each check.

``pledgeledger verify FILE --rpc URL`` is exactly this with web3 as the reader.

A *multiproof bundle* (``pledgeledger.multiproof/1``) proves several readings of one lot in one
batch with a single OpenZeppelin multiproof: each reading comes with its digest, salt, leaf and
device key as in a proof bundle, and ``multiproof`` is ``{"leaves": [[salt, digest], …],
"proof": […], "proofFlags": […]}``, the object OpenZeppelin's ``StandardMerkleTree.verifyMultiProof``
takes; ``MerkleProof.multiProofVerify(proof, proofFlags, root, [leaf, …])`` checks the same on
chain. :func:`chain_queries` and :func:`verify_any` take either kind of bundle (told apart by
``format``); the facts are one :class:`ChainFacts` per reading.

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
from attestation.merkle import leaf_hash, process_multiproof, process_proof
from attestation.readings import SignedReading, parse_reading

__all__ = [
    "BUNDLE_FORMAT",
    "MULTIPROOF_FORMAT",
    "PRODUCTION_FORMAT",
    "AnchorQuery",
    "BundleFormatError",
    "ChainFacts",
    "CheckResult",
    "OnChainKey",
    "VerificationReport",
    "chain_queries",
    "build_bundle",
    "chain_query",
    "check_device_key",
    "key_valid_at",
    "multiproof_scope",
    "verify_any",
    "verify_bundle",
    "verify_multiproof_bundle",
]

BUNDLE_FORMAT = "pledgeledger.proof/1"
MULTIPROOF_FORMAT = "pledgeledger.multiproof/1"
#: A production-metric answer: its evidence is multiproof bundles (:mod:`attestation.production`).
PRODUCTION_FORMAT = "pledgeledger.production/1"

#: The checks of a bundle, in the order they are reported.
CHECKS = ("format", "signature", "digest", "leaf", "proof", "chain", "root", "link", "device_key")
#: The checks of a multiproof bundle: each per-reading check holds only if it holds for every reading.
MULTIPROOF_CHECKS = ("format", "signature", "digest", "leaf", "multiproof", "chain", "root", "link", "device_key")
#: What a failed check raises (a verifier never lets bad input escape as an exception).
_FAILURES = (AttestationError, ValueError, TypeError, KeyError)


class BundleFormatError(AttestationError):
    code = "invalid_bundle"


@dataclass(frozen=True)
class AnchorQuery:
    """What a verifier must read from the chain for one reading of a bundle."""

    chain_id: int
    contract: str
    index: int
    device: str
    timestamp: int  # the reading's time in Unix seconds (floor), for DeviceRegistry.keyAt
    tx_hash: str  # the transaction the bundle says anchored checkpoint ``index``


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
    previous_root: bytes | None = None  # rootOf(index - 1); None at index 0 or if there is none
    anchored: tuple[int, bytes] | None = None  # (index, root) the bundle's transaction checkpointed, if it did


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


@dataclass
class VerificationReport:
    checks: list[CheckResult] = field(default_factory=list)
    expected: tuple[str, ...] = CHECKS  # the checks a complete report has

    @property
    def ok(self) -> bool:
        return [c.name for c in self.checks] == list(self.expected) and all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if not c.ok]

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "failed": self.failed, "checks": [c.__dict__ for c in self.checks]}

    def run(self, name: str, test: Callable[[], str]) -> bool:
        """Run one named check: its detail on success, the reason it failed otherwise."""
        try:
            self.checks.append(CheckResult(name, True, test()))
            return True
        except _FAILURES as exc:
            self.checks.append(CheckResult(name, False, getattr(exc, "message", None) or str(exc)))
            return False

    def skip_rest(self, reason: str = "the bundle is malformed") -> VerificationReport:
        """After a check the others depend on failed: every other check fails as not checked."""
        for name in self.expected[len(self.checks):]:
            self.checks.append(CheckResult(name, False, f"not checked: {reason}"))
        return self


def key_valid_at(keys: Sequence[OnChainKey], timestamp: int) -> OnChainKey | None:
    """``DeviceRegistry.keyAt`` over a device's ``keysOf`` list: the newest key valid at ``timestamp``."""
    return next((k for k in reversed(keys) if k.valid_from <= timestamp < k.valid_until), None)


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


def _require(bundle: Any, path: str, kind: type | tuple[type, ...], *, where: str = "") -> Any:
    node = bundle
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise BundleFormatError(f"bundle has no {where}{path}", field=where + path)
        node = node[part]
    if not isinstance(node, kind) or isinstance(node, bool) and kind is not bool:
        raise BundleFormatError(f"bundle {where}{path} has the wrong type", field=where + path)
    return node


def _anchor_query(bundle: Any, reading: SignedReading) -> AnchorQuery:
    return AnchorQuery(
        chain_id=_require(bundle, "anchor.chain_id", int),
        contract=_require(bundle, "anchor.contract", str),
        index=_require(bundle, "anchor.index", int),
        device=reading.device,
        timestamp=math.floor(reading.ts.timestamp()),
        tx_hash=_require(bundle, "anchor.tx_hash", str),
    )


def _readings(bundle: Any) -> list[Any]:
    if _require(bundle, "format", str) != MULTIPROOF_FORMAT:
        raise BundleFormatError(f"bundle format must be {MULTIPROOF_FORMAT}", field="format")
    entries = _require(bundle, "readings", list)
    if not entries:
        raise BundleFormatError("a multiproof bundle proves at least one reading", field="readings")
    return entries


def multiproof_scope(bundle: Any) -> tuple[str, str]:
    """What a multiproof bundle proves readings of: ``("lot", LOT)`` (``GET /v1/batches/{i}/multiproof``)
    or ``("device", ID)`` (the evidence of a production answer, :mod:`attestation.production`).
    Exactly one of the two is named, and every reading must be of it."""
    named = [name for name in ("lot", "device") if isinstance(bundle, dict) and name in bundle]
    if len(named) != 1:
        raise BundleFormatError("a multiproof bundle names exactly one of lot or device", field="lot")
    return named[0], _require(bundle, named[0], str)


def chain_query(bundle: Any) -> AnchorQuery:
    """Read what must be fetched from the chain; raise :class:`BundleFormatError` if malformed."""
    if _require(bundle, "format", str) != BUNDLE_FORMAT:
        raise BundleFormatError(f"bundle format must be {BUNDLE_FORMAT}", field="format")
    return _anchor_query(bundle, parse_reading(_require(bundle, "reading", dict)))


def chain_queries(bundle: Any) -> list[AnchorQuery]:
    """One :class:`AnchorQuery` per reading of a proof bundle (one), a multiproof bundle (each) or
    a production answer (each reading of each of its multiproof bundles, in order)."""
    if isinstance(bundle, dict) and bundle.get("format") == PRODUCTION_FORMAT:
        from attestation.production import production_queries  # production builds on this module

        return production_queries(bundle)
    if isinstance(bundle, dict) and bundle.get("format") == MULTIPROOF_FORMAT:
        return [
            _anchor_query(bundle, parse_reading(_require(entry, "reading", dict, where=f"readings[{i}].")))
            for i, entry in enumerate(_readings(bundle))
        ]
    return [chain_query(bundle)]


@dataclass(frozen=True)
class _Entry:
    """One reading of a bundle with what the bundle claims about it."""

    reading: SignedReading
    digest: bytes
    salt: bytes
    leaf: bytes
    public_key: str
    query: AnchorQuery


def _entry(bundle: Any, node: Any, where: str = "") -> _Entry:
    reading = parse_reading(_require(node, "reading", dict, where=where))
    if _require(node, "device.id", str, where=where) != reading.device:
        raise BundleFormatError(f"{where}device.id differs from the reading's payload.device", field=f"{where}device.id")
    if _require(node, "device.alg", str, where=where) != reading.alg:
        raise BundleFormatError(f"{where}device.alg differs from the reading's alg", field=f"{where}device.alg")
    return _Entry(
        reading=reading,
        digest=from_hex32(_require(node, "digest", str, where=where)),
        salt=from_hex32(_require(node, "salt", str, where=where)),
        leaf=from_hex32(_require(node, "leaf", str, where=where)),
        public_key=_require(node, "device.public_key", str, where=where),
        query=_anchor_query(bundle, reading),
    )


# --- the checks, each raising with what is wrong ------------------------------------------------


def _signed_what(reading: SignedReading) -> str:
    return "COSE Sig_structure" if reading.envelope_kind == "cose" else "RFC 8785 payload"


def _digest_of(reading: SignedReading) -> str:
    return "sha256(COSE payload)" if reading.envelope_kind == "cose" else "sha256(JCS(payload))"


def _check_signature(entry: _Entry) -> str:
    entry.reading.verify(entry.public_key)
    return f"{entry.reading.alg} signature over the {_signed_what(entry.reading)} verifies with the bundle's device key"


def _check_digest(entry: _Entry) -> str:
    reading = entry.reading
    if not hmac.compare_digest(reading.digest, entry.digest):
        raise ValueError(f"{_digest_of(reading)} is {to_hex(reading.digest)}, bundle says {to_hex(entry.digest)}")
    return f"{_digest_of(reading)} = {to_hex(reading.digest)}"


def _check_leaf(entry: _Entry) -> str:
    expected = leaf_hash(entry.salt, entry.reading.digest)
    if expected != entry.leaf:
        raise ValueError(f"keccak256(keccak256(abi.encode(salt, digest))) is {to_hex(expected)}, bundle says {to_hex(entry.leaf)}")
    return f"leaf {to_hex(expected)}"


def _check_chain(facts: ChainFacts, query: AnchorQuery) -> str:
    if facts.chain_id != query.chain_id:
        raise ValueError(f"the bundle names chain {query.chain_id}, the node is chain {facts.chain_id}")
    if facts.contract.lower() != query.contract.lower():
        raise ValueError(f"the bundle names contract {query.contract}, facts were read from {facts.contract}")
    return f"chain {facts.chain_id}, anchor contract {facts.contract}"


def _check_root(facts: ChainFacts, query: AnchorQuery, claimed: bytes, computed: Callable[[], bytes], what: str) -> str:
    if facts.root is None:
        raise ValueError(f"the contract has no checkpoint {query.index}")
    if facts.root != claimed:
        raise ValueError(f"rootOf({query.index}) on chain is {to_hex(facts.root)}, the bundle root is {to_hex(claimed)}")
    if computed() != facts.root:
        raise ValueError(f"the {what} leads to {to_hex(computed())}, not rootOf({query.index})")
    return f"rootOf({query.index}) = {to_hex(facts.root)}"


def _check_link(facts: ChainFacts, query: AnchorQuery) -> str:
    """The checkpoint is where the anchor's append-only chain says: its transaction checkpointed
    exactly this index and root, and it extends checkpoint ``index - 1``."""
    if facts.anchored is None:
        raise ValueError(f"transaction {query.tx_hash} is not a successful checkpoint of {query.contract}")
    if facts.anchored != (query.index, facts.root):
        index, root = facts.anchored
        raise ValueError(f"transaction {query.tx_hash} anchored checkpoint {index} with root {to_hex(root)}, not checkpoint {query.index}")
    if query.index > 0 and facts.previous_root is None:
        raise ValueError(f"checkpoint {query.index} does not extend checkpoint {query.index - 1}: the contract has none")
    extends = "the first checkpoint" if query.index == 0 else f"extends checkpoint {query.index - 1} ({to_hex(facts.previous_root)})"  # type: ignore[arg-type]
    return f"anchored by {query.tx_hash}; {extends}"


def check_device_key(key: OnChainKey | None, public_key: str, reading: SignedReading, timestamp: int) -> str:
    """Is ``public_key`` the key the chain records for the reading's device, valid at ``timestamp``?

    ``key`` is ``keyAt(device, timestamp)`` as read from the chain. Raises :class:`ValueError`
    naming the mismatch.
    """
    device = reading.device
    if key is None or not any(key.fingerprint):
        raise ValueError(f"no key of device {device} was registered and valid at {timestamp} on chain")
    fingerprint = key_fingerprint(public_key)
    if key.fingerprint != fingerprint:
        raise ValueError(
            f"the bundle's key has fingerprint {to_hex(fingerprint)}, the key registered on chain at that time is {to_hex(key.fingerprint)}"
        )
    if key.alg != reading.alg:
        raise ValueError(f"the key is registered for {key.alg}, the reading uses {reading.alg}")
    if not key.valid_from <= timestamp < key.valid_until:
        raise ValueError(f"the key is valid over [{key.valid_from}, {key.valid_until}), the reading is at {timestamp}")
    return f"key {to_hex(fingerprint)} registered for {device}, valid at {timestamp}"


# --- the verifiers --------------------------------------------------------------------------------


def verify_bundle(bundle: Any, facts: ChainFacts) -> VerificationReport:
    """Check a proof bundle against facts read from the chain. Pure; never raises on bad input."""
    report = VerificationReport()
    parsed: dict[str, Any] = {}

    def fmt() -> str:
        chain_query(bundle)  # the format and the anchor
        entry = parsed["entry"] = _entry(bundle, bundle)
        parsed["root"] = from_hex32(_require(bundle, "root", str))
        parsed["proof"] = [from_hex32(p) for p in _require(bundle, "proof", list)]
        return f"{BUNDLE_FORMAT}, {entry.reading.envelope_kind} reading {entry.query.device} at {entry.reading.payload['ts']}"

    if not report.run("format", fmt):
        return report.skip_rest()
    entry: _Entry = parsed["entry"]

    def computed() -> bytes:
        return process_proof(leaf_hash(entry.salt, entry.reading.digest), parsed["proof"])

    def proof() -> str:
        if computed() != parsed["root"]:
            raise ValueError(f"the proof leads to {to_hex(computed())}, not the bundle root {to_hex(parsed['root'])}")
        return f"{len(parsed['proof'])}-step proof leads to root {to_hex(parsed['root'])}"

    report.run("signature", lambda: _check_signature(entry))
    report.run("digest", lambda: _check_digest(entry))
    report.run("leaf", lambda: _check_leaf(entry))
    report.run("proof", proof)
    report.run("chain", lambda: _check_chain(facts, entry.query))
    report.run("root", lambda: _check_root(facts, entry.query, parsed["root"], computed, "reading's proof"))
    report.run("link", lambda: _check_link(facts, entry.query))
    report.run("device_key", lambda: check_device_key(facts.device_key, entry.public_key, entry.reading, entry.query.timestamp))
    return report


def _for_each(entries: Sequence[_Entry], test: Callable[[int, _Entry], str], summary: str) -> Callable[[], str]:
    """A check that holds when ``test`` holds for every reading; a failure names each failed reading."""

    def run() -> str:
        failures = []
        for i, entry in enumerate(entries):
            try:
                test(i, entry)
            except _FAILURES as exc:
                failures.append(f"reading {i} ({entry.reading.id}): {getattr(exc, 'message', None) or exc}")
        if failures:
            more = f"; and {len(failures) - 3} more" if len(failures) > 3 else ""
            raise ValueError(f"{len(failures)} of {len(entries)} readings fail: " + "; ".join(failures[:3]) + more)
        return f"all {len(entries)} readings: {summary}"

    return run


def verify_multiproof_bundle(bundle: Any, facts: Sequence[ChainFacts]) -> VerificationReport:
    """Check a multiproof bundle; ``facts[i]`` are the chain facts of ``chain_queries(bundle)[i]``.

    Pure; never raises on bad input. The ``multiproof`` check recomputes every leaf from the
    reading's own digest and salt, so a leaf the bundle does not derive from a signed reading
    (an inner node, say) cannot pass.
    """
    report = VerificationReport(expected=MULTIPROOF_CHECKS)
    parsed: dict[str, Any] = {}

    def fmt() -> str:
        nodes = _readings(bundle)
        entries = [_entry(bundle, node, f"readings[{i}].") for i, node in enumerate(nodes)]
        scope, about = multiproof_scope(bundle)
        for i, entry in enumerate(entries):
            if getattr(entry.reading, scope) != about:
                raise BundleFormatError(
                    f"readings[{i}] is of {scope} {getattr(entry.reading, scope)!r}, the bundle of {scope} {about!r}", field=f"readings[{i}]"
                )
        if len({e.digest for e in entries}) != len(entries):
            raise BundleFormatError("a reading appears twice", field="readings")
        claimed = _require(bundle, "multiproof.leaves", list)
        if claimed != [[to_hex(e.salt), to_hex(e.digest)] for e in entries]:
            raise BundleFormatError("multiproof.leaves must be [salt, digest] of each reading, in order", field="multiproof.leaves")
        flags = _require(bundle, "multiproof.proofFlags", list)
        if not all(isinstance(f, bool) for f in flags):
            raise BundleFormatError("multiproof.proofFlags are booleans", field="multiproof.proofFlags")
        parsed.update(
            entries=entries,
            proof=[from_hex32(p) for p in _require(bundle, "multiproof.proof", list)],
            flags=flags,
            root=from_hex32(_require(bundle, "root", str)),
        )
        if len(facts) != len(entries):
            raise BundleFormatError(f"{len(facts)} chain facts for {len(entries)} readings: read one per chain_queries(bundle)")
        return f"{MULTIPROOF_FORMAT}, {len(entries)} readings of {scope} {about}"

    if not report.run("format", fmt):
        return report.skip_rest()
    entries: list[_Entry] = parsed["entries"]
    query = entries[0].query

    def computed() -> bytes:
        leaves = [leaf_hash(e.salt, e.reading.digest) for e in entries]
        return process_multiproof(leaves, parsed["proof"], parsed["flags"])

    def multiproof() -> str:
        if computed() != parsed["root"]:
            raise ValueError(f"the multiproof leads to {to_hex(computed())}, not the bundle root {to_hex(parsed['root'])}")
        return f"multiproof of {len(entries)} leaves ({len(parsed['proof'])} proof elements) leads to root {to_hex(parsed['root'])}"

    def chain() -> str:
        if any((f.chain_id, f.contract.lower(), f.root) != (facts[0].chain_id, facts[0].contract.lower(), facts[0].root) for f in facts):
            raise ValueError("the chain facts disagree between readings: read them from one node at one time")
        return _check_chain(facts[0], query)

    report.run("signature", _for_each(entries, lambda i, e: _check_signature(e), "signatures verify with their device keys"))
    report.run("digest", _for_each(entries, lambda i, e: _check_digest(e), "digests recomputed"))
    report.run("leaf", _for_each(entries, lambda i, e: _check_leaf(e), "leaves recomputed"))
    report.run("multiproof", multiproof)
    report.run("chain", chain)
    report.run("root", lambda: _check_root(facts[0], query, parsed["root"], computed, "multiproof"))
    report.run("link", lambda: _check_link(facts[0], query))
    report.run(
        "device_key",
        _for_each(
            entries,
            lambda i, e: check_device_key(facts[i].device_key, e.public_key, e.reading, e.query.timestamp),
            "device keys registered on chain and valid at the readings' times",
        ),
    )
    return report


def verify_any(bundle: Any, facts: Sequence[ChainFacts]) -> VerificationReport:
    """Verify a proof bundle or a multiproof bundle (told apart by ``format``) against
    ``facts[i]`` read for ``chain_queries(bundle)[i]``. A production answer
    (``pledgeledger.production/1``) is verified by :func:`attestation.production.verify_production`."""
    if isinstance(bundle, dict) and bundle.get("format") == PRODUCTION_FORMAT:
        from attestation.production import verify_production  # production builds on this module

        return verify_production(bundle, facts)
    if isinstance(bundle, dict) and bundle.get("format") == MULTIPROOF_FORMAT:
        return verify_multiproof_bundle(bundle, facts)
    if len(facts) != 1:
        report = VerificationReport()
        report.checks.append(CheckResult("format", False, f"a {BUNDLE_FORMAT} bundle needs the facts of one reading, got {len(facts)}"))
        return report.skip_rest()
    return verify_bundle(bundle, facts[0])
