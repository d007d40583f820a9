"""pledgeledger's verification-critical core: pure, I/O-free, importable on its own.

WARNING: the encodings and hashes here define what a valid reading, leaf, proof and bundle
are (``../shared/SPEC.md``). Devices, banks' tools and the contracts depend on them byte for
byte: a change here that alters any output breaks verification of everything already
anchored. Nothing in this package opens a file, a socket or a database; chain facts are
handed in by the caller (:class:`attestation.bundle.ChainFacts`).

Modules:

- :mod:`attestation.encoding`   canonical JSON (RFC 8785), base64url, hex helpers
- :mod:`attestation.signatures` ES256 / ES256K / EdDSA behind one ``verify`` function
- :mod:`attestation.devices`    key fingerprints and registration proof of possession
- :mod:`attestation.readings`   the signed reading (SPEC §1) in its JSON and COSE envelopes, and its digest
- :mod:`attestation.cose`       COSE_Sign1 (RFC 9052) structure and deterministic CBOR (RFC 8949)
- :mod:`attestation.merkle`     OpenZeppelin StandardMerkleTree hashing, trees, proofs and multiproofs
- :mod:`attestation.bundle`     the proof bundle (SPEC §4), the multiproof bundle, and their verifiers
- :mod:`attestation.documents`  how documents, identifiers and a freeze's evidence (``reason``) are hashed for the chain
- :mod:`attestation.collateral` CollateralRegistry's transitions, calldata, events and lot state machine, for verifiers
- :mod:`attestation.evidence`   a lot's evidence package (``pledgeledger.evidence/1``) and its verifier
- :mod:`attestation.production` production metrics (kWh, run hours, utilisation) and the verifier of their answers
- :mod:`attestation.errors`     the error tree
"""

from attestation.bundle import (
    BUNDLE_FORMAT,
    MULTIPROOF_FORMAT,
    AnchorQuery,
    ChainFacts,
    CheckResult,
    OnChainKey,
    VerificationReport,
    chain_queries,
    build_bundle,
    chain_query,
    key_valid_at,
    verify_any,
    verify_bundle,
    verify_multiproof_bundle,
)
from attestation.devices import key_fingerprint, pop_message, verify_pop
from attestation.encoding import canonical_json
from attestation.documents import evidence_reason
from attestation.errors import (
    AttestationError,
    InvalidKey,
    InvalidReading,
    InvalidSignature,
    UnsupportedAlgorithm,
)
from attestation.merkle import (
    MultiProof,
    StandardTree,
    leaf_hash,
    node_hash,
    process_multiproof,
    process_proof,
    verify_multiproof,
)
from attestation.production import PRODUCTION_FORMAT, ProductionQuery, verify_production
from attestation.readings import SignedReading, parse_cose_reading, parse_reading, validate_payload
from attestation.signatures import ALGORITHMS, verify_signature

__all__ = [
    "ALGORITHMS",
    "AnchorQuery",
    "AttestationError",
    "BUNDLE_FORMAT",
    "ChainFacts",
    "CheckResult",
    "InvalidKey",
    "InvalidReading",
    "InvalidSignature",
    "MULTIPROOF_FORMAT",
    "MultiProof",
    "OnChainKey",
    "PRODUCTION_FORMAT",
    "ProductionQuery",
    "SignedReading",
    "StandardTree",
    "UnsupportedAlgorithm",
    "VerificationReport",
    "build_bundle",
    "canonical_json",
    "evidence_reason",
    "chain_queries",
    "chain_query",
    "key_fingerprint",
    "key_valid_at",
    "leaf_hash",
    "node_hash",
    "parse_cose_reading",
    "parse_reading",
    "pop_message",
    "process_multiproof",
    "process_proof",
    "validate_payload",
    "verify_any",
    "verify_bundle",
    "verify_multiproof",
    "verify_multiproof_bundle",
    "verify_pop",
    "verify_production",
    "verify_signature",
]
