"""Errors raised by the attestation core.

Every error carries a stable snake_case ``code`` (the one the API puts in its error body,
SPEC §6) and a message that says what to fix::

    AttestationError
    ├── InvalidReading          the envelope or payload breaks SPEC §1 (field named)
    │   └── InvalidThingData    ``data`` does not satisfy the thing model of ``kind``
    ├── UnsupportedAlgorithm    ``alg`` is not ES256, ES256K or EdDSA
    ├── InvalidKey              the public key is not a PEM key of the named algorithm
    ├── InvalidSignature        the signature does not verify (reading or proof of possession)
    └── InvalidProductionQuery  a production-metric query names no valid device, metric or periods
"""

from __future__ import annotations

__all__ = [
    "AttestationError",
    "InvalidKey",
    "InvalidProductionQuery",
    "InvalidReading",
    "InvalidSignature",
    "InvalidThingData",
    "UnsupportedAlgorithm",
]


class AttestationError(ValueError):
    """Base of every attestation error."""

    code = "invalid_attestation"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidReading(AttestationError):
    code = "invalid_reading"


class InvalidThingData(InvalidReading):
    code = "invalid_thing_data"


class UnsupportedAlgorithm(AttestationError):
    code = "unsupported_algorithm"


class InvalidKey(AttestationError):
    code = "invalid_public_key"


class InvalidSignature(AttestationError):
    code = "invalid_signature"


class InvalidProductionQuery(AttestationError):
    code = "invalid_query"
