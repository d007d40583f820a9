"""The signed reading envelope of SPEC §1: parsing, canonical bytes, digest, signature check."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from attestation.devices import check_device_id
from attestation.encoding import b64url_decode, canonical_json
from attestation.errors import InvalidReading, InvalidSignature
from attestation.signatures import ALGORITHMS, verify_signature
from attestation.thing_models import check_data

__all__ = ["MAX_SEQ", "SignedReading", "parse_reading", "parse_timestamp"]

MAX_SEQ = 2**53 - 1  # JSON numbers are IEEE doubles (RFC 8785): larger integers do not round-trip
_TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z")
_PREV = re.compile(r"[0-9a-f]{64}")
_PAYLOAD_KEYS = {"v", "device", "seq", "prev", "ts", "kind", "lot", "data"}
_ENVELOPE_KEYS = {"payload", "alg", "sig"}


@dataclass(frozen=True)
class SignedReading:
    """A structurally valid reading. ``digest`` is its identity; the signature is not yet checked."""

    raw: dict[str, Any]  # the envelope exactly as received (parsed JSON)
    payload: dict[str, Any]
    alg: str
    signature: bytes
    signed_bytes: bytes  # RFC 8785 bytes of payload
    digest: bytes  # SHA-256 of signed_bytes

    @property
    def id(self) -> str:
        return self.digest.hex()

    @property
    def device(self) -> str:
        return self.payload["device"]

    @property
    def seq(self) -> int:
        return self.payload["seq"]

    @property
    def prev(self) -> str | None:
        return self.payload["prev"]

    @property
    def ts(self) -> datetime:
        return parse_timestamp(self.payload["ts"])

    @property
    def kind(self) -> str:
        return self.payload["kind"]

    @property
    def lot(self) -> str | None:
        return self.payload["lot"]

    def verify(self, public_key_pem: str) -> None:
        """Raise :class:`InvalidSignature` unless ``sig`` verifies over the signed bytes."""
        verify_signature(self.alg, public_key_pem, self.signed_bytes, self.signature)


def parse_timestamp(text: str) -> datetime:
    """RFC 3339 UTC with ``Z`` (fractions beyond microseconds are truncated)."""
    if not isinstance(text, str) or not _TS.fullmatch(text):
        raise InvalidReading("payload.ts must be RFC 3339 UTC ending in Z, e.g. 2026-11-21T08:00:00.000Z", field="payload.ts")
    head, _, frac = text[:-1].partition(".")
    try:
        moment = datetime.fromisoformat(head).replace(tzinfo=timezone.utc)
    except ValueError:
        raise InvalidReading(f"payload.ts {text!r} is not a real date and time", field="payload.ts") from None
    return moment.replace(microsecond=int((frac + "000000")[:6])) if frac else moment


def parse_reading(envelope: Any) -> SignedReading:
    """Check a reading's structure against SPEC §1 and compute its digest.

    Raises :class:`InvalidReading` (or :class:`InvalidThingData`) naming the field to fix.
    The signature itself is checked by :meth:`SignedReading.verify` with the device's key.
    """
    if not isinstance(envelope, dict):
        raise InvalidReading("a reading is a JSON object with payload, alg and sig", field="reading")
    extra = set(envelope) - _ENVELOPE_KEYS
    if extra:
        raise InvalidReading(f"unknown reading fields: {', '.join(sorted(extra))}", field="reading")
    payload = envelope.get("payload")
    if not isinstance(payload, dict):
        raise InvalidReading("payload must be a JSON object", field="payload")
    missing = _PAYLOAD_KEYS - set(payload)
    if missing:
        raise InvalidReading(f"payload is missing {', '.join(sorted(missing))}", field=f"payload.{sorted(missing)[0]}")
    extra = set(payload) - _PAYLOAD_KEYS
    if extra:
        raise InvalidReading(f"unknown payload fields: {', '.join(sorted(extra))}", field="payload")
    if payload["v"] != 1 or isinstance(payload["v"], bool):
        raise InvalidReading("payload.v must be 1", field="payload.v")
    check_device_id(payload["device"], field="payload.device")
    seq = payload["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= MAX_SEQ:
        raise InvalidReading(f"payload.seq must be an integer from 0 to {MAX_SEQ}", field="payload.seq")
    prev = payload["prev"]
    if prev is not None and not (isinstance(prev, str) and _PREV.fullmatch(prev)):
        raise InvalidReading("payload.prev must be null or the previous reading's digest as 64 lowercase hex", field="payload.prev")
    parse_timestamp(payload["ts"])
    lot = payload["lot"]
    if lot is not None and not (isinstance(lot, str) and 1 <= len(lot) <= 128):
        raise InvalidReading("payload.lot must be null or a lot id of 1-128 characters", field="payload.lot")
    if not isinstance(payload["kind"], str):
        raise InvalidReading("payload.kind must be a thing-model name", field="payload.kind")
    check_data(payload["kind"], payload["data"])

    alg = envelope.get("alg")
    if alg not in ALGORITHMS:
        raise InvalidReading(f"alg must be one of {', '.join(ALGORITHMS)}", field="alg")
    try:
        signature = b64url_decode(envelope.get("sig"))
    except (ValueError, TypeError):
        raise InvalidSignature("sig must be base64url without padding", field="sig") from None
    try:
        signed = canonical_json(payload)
    except Exception as exc:  # rfc8785 raises its own errors for numbers JSON cannot carry exactly
        raise InvalidReading(f"payload cannot be canonicalised per RFC 8785: {exc}", field="payload") from None
    return SignedReading(
        raw=envelope,
        payload=payload,
        alg=alg,
        signature=signature,
        signed_bytes=signed,
        digest=hashlib.sha256(signed).digest(),
    )
