"""Device signature algorithms behind one function (SPEC §1).

=========  =======================  ======================================  ================
``alg``    curve                    signature bytes                          library
=========  =======================  ======================================  ================
ES256      NIST P-256 (secp256r1)   64-byte ``r‖s``, ECDSA over SHA-256      cryptography
ES256K     secp256k1                64-byte ``r‖s``, ECDSA over SHA-256      coincurve
EdDSA      Ed25519                  64-byte signature over the message       PyNaCl
=========  =======================  ======================================  ================

Each is the fastest well-kept library for its curve (one core, this project's 2-core machine):
OpenSSL through ``cryptography`` for P-256 (about 15k verifies/s); libsecp256k1 through
``coincurve`` (about 25k/s); libsodium through PyNaCl for Ed25519 (16.6k/s, against 9.6k/s for
``cryptography``). Keys are parsed from PEM by ``cryptography`` in every case. libsodium is the
stricter Ed25519 verifier (it also refuses small-order keys and ``R`` points; both refuse a
non-canonical ``S``). A small-order Ed25519 key is refused on loading, by name: OpenSSL accepts
``R = B, S = 1`` under the identity point as a signature of any message, so a device registered
with it (its proof of possession forged the same way) would vouch for readings anyone wrote.

Secure elements in real devices (ATECC608, OPTIGA Trust M) sign ES256; gateways often EdDSA;
Ethereum-native devices ES256K. High-S ECDSA signatures are accepted on both curves (the
reading id is the digest of the payload, so signature malleability cannot fork an id).
"""

from __future__ import annotations

import functools
import hashlib
from typing import Callable

import coincurve
import nacl.bindings
import nacl.exceptions
import nacl.signing
from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from attestation.errors import InvalidKey, InvalidSignature, UnsupportedAlgorithm

__all__ = ["ALGORITHMS", "load_public_key", "verify_signature"]

#: The algorithms of SPEC §1, in their on-chain enum order (DeviceRegistry.Alg: 1, 2, 3).
ALGORITHMS: tuple[str, ...] = ("ES256", "ES256K", "EdDSA")

SIGNATURE_LENGTH = 64
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

Verifier = Callable[[bytes, bytes], None]  # (message, signature) -> None or raise


@functools.lru_cache(maxsize=65536)
def load_public_key(alg: str, public_key_pem: str) -> Verifier:
    """Parse a PEM SubjectPublicKeyInfo for ``alg`` into a verifier; cached per key.

    Raises :class:`UnsupportedAlgorithm` or :class:`InvalidKey` (wrong curve, not PEM).
    """
    if alg not in ALGORITHMS:
        raise UnsupportedAlgorithm(f"alg must be one of {', '.join(ALGORITHMS)}, not {alg!r}", field="alg")
    try:
        key = serialization.load_pem_public_key(public_key_pem.encode("ascii"))
    except (ValueError, TypeError, UnicodeEncodeError, AttributeError) as exc:
        raise InvalidKey(f"public_key must be a PEM SubjectPublicKeyInfo ({exc})", field="public_key") from exc
    if alg == "ES256":
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
            raise InvalidKey("alg ES256 needs a P-256 (secp256r1) public key", field="public_key")
        return functools.partial(_verify_es256, key)
    if alg == "ES256K":
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256K1):
            raise InvalidKey("alg ES256K needs a secp256k1 public key", field="public_key")
        point = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
        return functools.partial(_verify_es256k, coincurve.PublicKey(point))
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise InvalidKey("alg EdDSA needs an Ed25519 public key", field="public_key")
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if not nacl.bindings.crypto_core_ed25519_is_valid_point(raw):
        raise InvalidKey(
            "public_key is an Ed25519 point of small order or outside the prime-order subgroup: signatures by such a key "
            "can be forged by anyone; generate the key pair afresh on the device",
            field="public_key",
        )
    return functools.partial(_verify_eddsa, nacl.signing.VerifyKey(raw))


def verify_signature(alg: str, public_key_pem: str, message: bytes, signature: bytes) -> None:
    """Verify ``signature`` over ``message``; raise :class:`InvalidSignature` if it fails."""
    verifier = load_public_key(alg, public_key_pem)
    if len(signature) != SIGNATURE_LENGTH:
        raise InvalidSignature(f"{alg} signatures are {SIGNATURE_LENGTH} bytes, got {len(signature)}", field="sig")
    verifier(message, signature)


def _verify_es256(key: ec.EllipticCurvePublicKey, message: bytes, signature: bytes) -> None:
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    try:
        key.verify(der, message, ec.ECDSA(hashes.SHA256()))
    except _CryptoInvalidSignature:
        raise InvalidSignature("ES256 signature does not verify against the device key", field="sig") from None


def _verify_es256k(key: coincurve.PublicKey, message: bytes, signature: bytes) -> None:
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    if not (0 < r < _SECP256K1_N and 0 < s < _SECP256K1_N):
        raise InvalidSignature("ES256K signature r or s out of range", field="sig")
    if s > _SECP256K1_N // 2:  # libsecp256k1 only verifies low-S; accept both forms
        s = _SECP256K1_N - s
    der = encode_dss_signature(r, s)
    if not key.verify(der, message, hasher=_sha256):
        raise InvalidSignature("ES256K signature does not verify against the device key", field="sig")


def _verify_eddsa(key: nacl.signing.VerifyKey, message: bytes, signature: bytes) -> None:
    try:
        key.verify(message, signature)
    except nacl.exceptions.BadSignatureError:
        raise InvalidSignature("EdDSA signature does not verify against the device key", field="sig") from None


def _sha256(message: bytes) -> bytes:
    return hashlib.sha256(message).digest()
