"""Simulated devices that speak the real protocols (SPEC §1-§2), for the demo and tests.

A :class:`SimulatedDevice` holds a private key like a secure element would, signs readings
with strictly increasing sequence numbers and chains each to the digest of the previous one,
and produces its own registration request with a proof of possession. It signs readings as
JSON envelopes (:meth:`SimulatedDevice.reading`) or as COSE_Sign1 messages
(:meth:`SimulatedDevice.cose_reading`), and chains the two kinds together.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import cbor2
import coincurve
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from attestation.cose import COSE_ALG_IDS
from attestation.devices import pop_message
from attestation.encoding import b64url_encode, canonical_json

__all__ = ["SimulatedDevice", "utc_timestamp"]


def utc_timestamp(moment: datetime | None = None) -> str:
    """RFC 3339 UTC with milliseconds and ``Z``, as devices stamp readings."""
    moment = (moment or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class SimulatedDevice:
    id: str
    kind: str
    alg: str = "ES256"
    lot: str | None = None
    seq: int = 0
    prev: str | None = None
    _key: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self._key is None:
            self._key = {
                "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
                "ES256K": lambda: ec.generate_private_key(ec.SECP256K1()),
                "EdDSA": ed25519.Ed25519PrivateKey.generate,
            }[self.alg]()

    @property
    def public_key_pem(self) -> str:
        return (
            self._key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode("ascii")
        )

    def sign(self, message: bytes) -> bytes:
        """Raw 64-byte signature in the SPEC §1 encoding for this device's ``alg``."""
        if self.alg == "EdDSA":
            return self._key.sign(message)
        if self.alg == "ES256K":
            secret = self._key.private_numbers().private_value.to_bytes(32, "big")
            der = coincurve.PrivateKey(secret).sign(message, hasher=lambda m: hashlib.sha256(m).digest())
            r, s = decode_dss_signature(der)
        else:
            r, s = decode_dss_signature(self._key.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def registration(self, *, lot: str | None = None) -> dict[str, Any]:
        """The body of ``POST /v1/devices`` (SPEC §2), with the proof of possession."""
        pem = self.public_key_pem
        body = {
            "id": self.id,
            "alg": self.alg,
            "public_key": pem,
            "kind": self.kind,
            "pop": b64url_encode(self.sign(pop_message(self.id, pem))),
        }
        if lot or self.lot:
            body["lot"] = lot or self.lot
        return body

    def _next_payload(
        self, data: dict[str, Any], ts: datetime | str | None, seq_step: int, lot: str | None | bool
    ) -> dict[str, Any]:
        self.seq += seq_step
        return {
            "v": 1,
            "device": self.id,
            "seq": self.seq,
            "prev": self.prev,
            "ts": ts if isinstance(ts, str) else utc_timestamp(ts),
            "kind": self.kind,
            "lot": self.lot if lot is False else lot,
            "data": data,
        }

    def reading(self, data: dict[str, Any], *, ts: datetime | str | None = None, seq_step: int = 1,
                lot: str | None | bool = False) -> dict[str, Any]:
        """Sign the next reading and advance ``seq`` and ``prev`` as a device would."""
        payload = self._next_payload(data, ts, seq_step, lot)
        signed = canonical_json(payload)
        self.prev = hashlib.sha256(signed).hexdigest()
        return {"payload": payload, "alg": self.alg, "sig": b64url_encode(self.sign(signed))}

    def cose_reading(self, data: dict[str, Any], *, ts: datetime | str | None = None, seq_step: int = 1,
                     lot: str | None | bool = False, unprotected: dict[Any, Any] | None = None) -> bytes:
        """Sign the next reading as a tagged COSE_Sign1 message (RFC 9052) and advance ``seq`` and ``prev``.

        The payload is the deterministic CBOR of the payload map; the signature is over
        ``["Signature1", protected, h'', payload]``. ``prev`` chains across both envelopes.
        """
        payload = cbor2.dumps(self._next_payload(data, ts, seq_step, lot), canonical=True)
        protected = cbor2.dumps({1: COSE_ALG_IDS[self.alg]})
        signature = self.sign(cbor2.dumps(["Signature1", protected, b"", payload]))
        self.prev = hashlib.sha256(payload).hexdigest()
        return cbor2.dumps(cbor2.CBORTag(18, [protected, unprotected or {}, payload, signature]))
