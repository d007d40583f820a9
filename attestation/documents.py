"""How an off-chain document and an identifier become the ``bytes32`` a lot's record holds on chain.

CollateralRegistry stores hashes only (DOMAIN.md: core data must not leak). Two conventions, both
keccak-256 so a contract or any Ethereum tool can recompute them:

- :func:`document_hash`: a JSON document (goods description, assay record, loan terms, a freeze's
  reason, a cash payment reference) is ``keccak256(JCS(document))``, its RFC 8785 canonical bytes, so
  key order and number formatting cannot change the hash (fraud case 13: JSON re-serialised).
- :func:`identifier_hash`: an identifier (receipt code = lot id, registration number, device id) is
  ``keccak256(utf8 bytes)``, as ``DeviceRegistry`` and ``lotOfRegistration`` take it.
- :func:`evidence_reason`: the readings a supervision freeze was raised on (its ``reason`` on chain),
  ``keccak256`` of their sorted 32-byte digests (below).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sha3 import keccak_256

from attestation.encoding import canonical_json

__all__ = ["document_hash", "evidence_reason", "identifier_hash"]


def document_hash(document: Any) -> bytes:
    """``keccak256`` of the RFC 8785 canonical JSON of ``document`` (any JSON value). Raises
    ``ValueError``/``TypeError`` for what JSON cannot carry (NaN, non-string keys)."""
    return keccak_256(canonical_json(document)).digest()


def identifier_hash(identifier: str) -> bytes:
    """``keccak256`` of the identifier's UTF-8 bytes; empty identifiers are refused."""
    if not identifier:
        raise ValueError("empty identifier")
    return keccak_256(identifier.encode("utf-8")).digest()


def evidence_reason(digests: Iterable[str | bytes]) -> bytes:
    """The 32-byte commitment to the readings ``digests`` (hex ids, with or without ``0x``, or raw bytes): the
    ``reason`` of a supervision freeze.

    When a rule freezes a lot, the ``bytes32 reason`` of ``CollateralRegistry.freeze`` commits to
    the readings that triggered it, so that anyone holding those readings (a bank, an auditor, a
    court) can show that this freeze was raised on exactly this evidence::

        reason = keccak256(d_1 ‖ d_2 ‖ … ‖ d_n)

    where ``d_1 < d_2 < … < d_n`` are the distinct 32-byte digests of the evidence readings (a
    reading's digest is its id, SHA-256 of its signed bytes, SPEC §1), sorted in ascending byte
    order and concatenated with nothing in between. No evidence at all gives ``keccak256("")``.
    In Solidity: ``keccak256(abi.encodePacked(sortedDigests))`` over a ``bytes32[]``; with the
    command line: sort the lowercase hex ids, join them, and keccak256 the bytes.

    WARNING: changing this function changes what past freezes commit to.
    """
    raw = set()
    for digest in digests:
        value = bytes.fromhex(digest.removeprefix("0x")) if isinstance(digest, str) else bytes(digest)
        if len(value) != 32:
            raise ValueError(f"a reading digest is 32 bytes, got {len(value)}")
        raw.add(value)
    return keccak_256(b"".join(sorted(raw))).digest()
