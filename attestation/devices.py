"""Device identity: key fingerprints and the registration proof of possession (SPEC §2)."""

from __future__ import annotations

import hashlib
import re

from cryptography.hazmat.primitives import serialization

from attestation.encoding import b64url_decode, canonical_json
from attestation.errors import InvalidKey, InvalidReading, InvalidSignature
from attestation.signatures import load_public_key, verify_signature

__all__ = ["DEVICE_ID", "POP_PURPOSE", "check_device_id", "key_fingerprint", "pop_message", "verify_pop"]

#: SPEC §1: 1-64 chars of ``[A-Za-z0-9._:-]``.
DEVICE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
POP_PURPOSE = "pledgeledger/register"


def check_device_id(device: object, *, field: str = "device") -> str:
    if not isinstance(device, str) or not DEVICE_ID.fullmatch(device):
        raise InvalidReading(f"{field} must be 1-64 characters of [A-Za-z0-9._:-]", field=field)
    return device


def key_fingerprint(public_key_pem: str) -> bytes:
    """SHA-256 of the DER SubjectPublicKeyInfo: the key's identity on chain."""
    try:
        key = serialization.load_pem_public_key(public_key_pem.encode("ascii"))
    except (ValueError, TypeError, UnicodeEncodeError, AttributeError) as exc:
        raise InvalidKey(f"public_key must be a PEM SubjectPublicKeyInfo ({exc})", field="public_key") from exc
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).digest()


def pop_message(device: str, public_key_pem: str) -> bytes:
    """The bytes a device signs to prove it holds the key it registers (SPEC §2)."""
    return canonical_json({"device": device, "public_key": public_key_pem, "purpose": POP_PURPOSE})


def verify_pop(device: str, alg: str, public_key_pem: str, pop: str) -> bytes:
    """Check a registration's proof of possession; return the key's fingerprint.

    Raises :class:`InvalidReading` (bad id), :class:`UnsupportedAlgorithm`,
    :class:`InvalidKey` or :class:`InvalidSignature` (field ``pop``).
    """
    check_device_id(device, field="id")
    load_public_key(alg, public_key_pem)  # alg and key first, so the error names the real problem
    try:
        signature = b64url_decode(pop)
    except (ValueError, TypeError):
        raise InvalidSignature("pop must be base64url without padding", field="pop") from None
    try:
        verify_signature(alg, public_key_pem, pop_message(device, public_key_pem), signature)
    except InvalidSignature as exc:
        raise InvalidSignature(
            f"pop does not verify: sign the JCS bytes of "
            f'{{"device": id, "public_key": <PEM>, "purpose": "{POP_PURPOSE}"}} with the device key ({exc.message})',
            field="pop",
        ) from None
    return key_fingerprint(public_key_pem)
