"""How an off-chain document and an identifier become the ``bytes32`` a lot's record holds on chain.

CollateralRegistry stores hashes only (DOMAIN.md: core data must not leak). Two conventions, both
keccak-256 so a contract or any Ethereum tool can recompute them:

- :func:`document_hash`: a JSON document (goods description, assay record, loan terms, a freeze's
  reason, a cash payment reference) is ``keccak256(JCS(document))``, its RFC 8785 canonical bytes, so
  key order and number formatting cannot change the hash (fraud case 13: JSON re-serialised).
- :func:`identifier_hash`: an identifier (receipt code = lot id, registration number, device id) is
  ``keccak256(utf8 bytes)``, as ``DeviceRegistry`` and ``lotOfRegistration`` take it.
"""

from __future__ import annotations

from typing import Any

from sha3 import keccak_256

from attestation.encoding import canonical_json

__all__ = ["document_hash", "identifier_hash"]


def document_hash(document: Any) -> bytes:
    """``keccak256`` of the RFC 8785 canonical JSON of ``document`` (any JSON value). Raises
    ``ValueError``/``TypeError`` for what JSON cannot carry (NaN, non-string keys)."""
    return keccak_256(canonical_json(document)).digest()


def identifier_hash(identifier: str) -> bytes:
    """``keccak256`` of the identifier's UTF-8 bytes; empty identifiers are refused."""
    if not identifier:
        raise ValueError("empty identifier")
    return keccak_256(identifier.encode("utf-8")).digest()
