"""The signed reading of SPEC §1 in its two envelopes: parsing, signed bytes, digest, signature check.

A reading's *payload* is the same map in both envelopes (``v``, ``device``, ``seq``, ``prev``,
``ts``, ``kind``, ``lot``, ``data``) and is checked by one validator, :func:`validate_payload`.

``json``
    ``{"payload": {…}, "alg": "ES256", "sig": "<base64url>"}``. The signature covers the RFC
    8785 (JCS) bytes of ``payload``; the digest is SHA-256 of those same bytes.
``cose``
    A COSE_Sign1 message (RFC 9052, CBOR tag 18; see :mod:`attestation.cose`) whose payload
    byte string is the deterministic CBOR (RFC 8949 §4.2.1) of the payload map, and nothing
    else: a payload whose bytes are not exactly the deterministic encoding of what they decode
    to is refused. The signature covers the ``Sig_structure``
    ``["Signature1", protected, h'', payload]``; the digest is SHA-256 of the payload byte
    string. Parse the bytes with :func:`parse_cose_reading`.

**JSON form of a COSE reading.** Wherever a reading travels or is kept as JSON (stored
envelopes, ``GET /v1/readings/{id}``, the ``reading`` of a proof bundle, arrays posted to
``POST /v1/readings``), a COSE reading is the object ``{"cose": "<base64url of the exact
COSE_Sign1 bytes, no padding>"}`` and nothing else. :func:`parse_reading` accepts both this
object and the JSON envelope, so a bundle's ``reading`` is verified the same way for either.
:attr:`SignedReading.raw` is that JSON form: the JSON envelope as received, or the
``{"cose": …}`` object.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from attestation.cose import check_plain, decode_sign1, deterministic_cbor, strict_loads
from attestation.devices import check_device_id
from attestation.encoding import b64url_decode, b64url_encode, canonical_json
from attestation.errors import InvalidReading, InvalidSignature
from attestation.signatures import ALGORITHMS, verify_signature
from attestation.thing_models import check_data

__all__ = [
    "MAX_SEQ",
    "EnvelopeKind",
    "SignedReading",
    "parse_cose_reading",
    "parse_reading",
    "parse_timestamp",
    "validate_payload",
]

MAX_SEQ = 2**53 - 1  # JSON numbers are IEEE doubles (RFC 8785): larger integers do not round-trip
_TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z")
_PREV = re.compile(r"[0-9a-f]{64}")
_PAYLOAD_KEYS = {"v", "device", "seq", "prev", "ts", "kind", "lot", "data"}
_ENVELOPE_KEYS = {"payload", "alg", "sig"}
_COSE_KEY = "cose"

EnvelopeKind = Literal["json", "cose"]


@dataclass(frozen=True)
class SignedReading:
    """A structurally valid reading. ``digest`` is its identity; the signature is not yet checked."""

    raw: dict[str, Any]  # the JSON form: the JSON envelope as received, or {"cose": "<base64url>"}
    payload: dict[str, Any]
    alg: str  # ES256 | ES256K | EdDSA (for COSE, the name of the protected alg)
    signature: bytes
    signed_bytes: bytes  # what the signature covers: JCS(payload) (json) or the Sig_structure (cose)
    digest: bytes  # SHA-256 of payload_bytes
    envelope_kind: EnvelopeKind
    payload_bytes: bytes  # JCS(payload) (json) or the COSE payload byte string (cose)
    ts: datetime  # payload.ts, parsed (timezone-aware UTC)

    @property
    def cose(self) -> bytes | None:
        """The exact COSE_Sign1 bytes of a COSE reading; ``None`` for a JSON one."""
        return b64url_decode(self.raw[_COSE_KEY]) if self.envelope_kind == "cose" else None

    @functools.cached_property
    def id(self) -> str:  # cached: ingestion asks for it a few times per reading
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
    def kind(self) -> str:
        return self.payload["kind"]

    @property
    def lot(self) -> str | None:
        return self.payload["lot"]

    def verify(self, public_key_pem: str) -> None:
        """Raise :class:`InvalidSignature` unless the signature verifies over :attr:`signed_bytes`."""
        try:
            verify_signature(self.alg, public_key_pem, self.signed_bytes, self.signature)
        except InvalidSignature as exc:
            if self.envelope_kind == "cose" and exc.field == "sig":
                raise InvalidSignature(exc.message, field="cose.signature") from None
            raise


def parse_timestamp(text: str) -> datetime:
    """RFC 3339 UTC with ``Z`` (fractions beyond microseconds are truncated)."""
    if not isinstance(text, str) or not _TS.fullmatch(text):
        raise InvalidReading("payload.ts must be RFC 3339 UTC ending in Z, e.g. 2026-11-21T08:00:00.000Z", field="payload.ts")
    try:  # Python 3.11+ reads exactly this shape (Z is UTC; digits past microseconds are truncated)
        return datetime.fromisoformat(text)
    except ValueError:
        raise InvalidReading(f"payload.ts {text!r} is not a real date and time", field="payload.ts") from None


def validate_payload(payload: Any) -> bytes:
    """Check a payload map against SPEC §1, whichever envelope carried it; return its JCS bytes.

    Raises :class:`InvalidReading` (or :class:`InvalidThingData`) naming the field to fix
    (``payload.seq``, ``payload.data.weight_kg``, …). A payload that RFC 8785 cannot
    serialise (integers beyond ±(2**53 - 1), non-finite numbers) is refused in both envelopes.
    """
    return _check_payload(payload)[0]


def _check_payload(payload: Any) -> tuple[bytes, datetime]:
    """:func:`validate_payload`, and the parsed ``ts``."""
    if not isinstance(payload, dict):
        raise InvalidReading("payload must be an object (a JSON object, or a CBOR map in COSE)", field="payload")
    if payload.keys() != _PAYLOAD_KEYS:
        missing = _PAYLOAD_KEYS - set(payload)
        if missing:
            raise InvalidReading(f"payload is missing {', '.join(sorted(missing))}", field=f"payload.{sorted(missing)[0]}")
        extra = set(payload) - _PAYLOAD_KEYS
        raise InvalidReading(f"unknown payload fields: {', '.join(sorted(map(str, extra)))}", field="payload")
    if type(payload["v"]) is not int or payload["v"] != 1:
        raise InvalidReading("payload.v must be 1", field="payload.v")
    check_device_id(payload["device"], field="payload.device")
    seq = payload["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= MAX_SEQ:
        raise InvalidReading(f"payload.seq must be an integer from 0 to {MAX_SEQ}", field="payload.seq")
    prev = payload["prev"]
    if prev is not None and not (isinstance(prev, str) and _PREV.fullmatch(prev)):
        raise InvalidReading("payload.prev must be null or the previous reading's digest as 64 lowercase hex", field="payload.prev")
    ts = parse_timestamp(payload["ts"])
    lot = payload["lot"]
    if lot is not None and not (isinstance(lot, str) and 1 <= len(lot) <= 128):
        raise InvalidReading("payload.lot must be null or a lot id of 1-128 characters", field="payload.lot")
    if not isinstance(payload["kind"], str):
        raise InvalidReading("payload.kind must be a thing-model name", field="payload.kind")
    check_data(payload["kind"], payload["data"])
    try:
        return canonical_json(payload), ts
    except Exception as exc:  # rfc8785 raises its own errors for numbers JSON cannot carry exactly
        raise InvalidReading(f"payload cannot be canonicalised per RFC 8785: {exc}", field="payload") from None


def parse_reading(envelope: Any) -> SignedReading:
    """Check a reading in its JSON form against SPEC §1 and compute its digest.

    ``envelope`` is the JSON envelope ``{"payload", "alg", "sig"}`` or the JSON form of a COSE
    reading, ``{"cose": "<base64url>"}`` (see the module notes). Raises
    :class:`InvalidReading` (or :class:`InvalidThingData`) naming the field to fix. The
    signature itself is checked by :meth:`SignedReading.verify` with the device's key.
    """
    if not isinstance(envelope, dict):
        raise InvalidReading('a reading is a JSON object with payload, alg and sig (or {"cose": "<base64url>"})', field="reading")
    if _COSE_KEY in envelope:
        if set(envelope) != {_COSE_KEY}:
            raise InvalidReading('a COSE reading in JSON is {"cose": "<base64url>"} with no other fields', field="reading")
        try:
            data = b64url_decode(envelope[_COSE_KEY])
        except (ValueError, TypeError):
            raise InvalidReading("cose must be the COSE_Sign1 bytes as base64url without padding", field="cose") from None
        return parse_cose_reading(data)
    if not envelope.keys() <= _ENVELOPE_KEYS:
        extra = set(envelope) - _ENVELOPE_KEYS
        raise InvalidReading(f"unknown reading fields: {', '.join(sorted(extra))}", field="reading")
    payload = envelope.get("payload")
    signed, ts = _check_payload(payload)
    alg = envelope.get("alg")
    if alg not in ALGORITHMS:
        raise InvalidReading(f"alg must be one of {', '.join(ALGORITHMS)}", field="alg")
    try:
        signature = b64url_decode(envelope.get("sig"))
    except (ValueError, TypeError):
        raise InvalidSignature("sig must be base64url without padding", field="sig") from None
    return SignedReading(
        raw=envelope,
        payload=payload,
        alg=alg,
        signature=signature,
        signed_bytes=signed,
        digest=hashlib.sha256(signed).digest(),
        envelope_kind="json",
        payload_bytes=signed,
        ts=ts,
    )


def parse_cose_reading(data: bytes) -> SignedReading:
    """Check a COSE_Sign1 reading (the exact bytes a device sent) and compute its digest.

    Raises :class:`InvalidReading` naming the part to fix: ``cose`` (not a tagged
    COSE_Sign1), ``cose.protected.alg``, ``cose.payload`` (not CBOR, not a map of plain
    values, or not its deterministic encoding), or a payload field like ``payload.seq``.
    """
    message = decode_sign1(data)
    payload = strict_loads(message.payload, field="cose.payload")
    check_plain(payload, "payload")
    if deterministic_cbor(payload) != message.payload:
        raise InvalidReading(
            "cose.payload must be the deterministic CBOR encoding (RFC 8949 §4.2.1) of the payload map: definite "
            "lengths, map keys sorted by their encoded bytes, shortest integers and lengths, the shortest float that "
            "keeps the value",
            field="cose.payload",
        )
    _, ts = _check_payload(payload)
    return SignedReading(
        raw={_COSE_KEY: b64url_encode(bytes(data))},
        payload=payload,
        alg=message.alg,
        signature=message.signature,
        signed_bytes=message.to_be_signed,
        digest=hashlib.sha256(message.payload).digest(),
        envelope_kind="cose",
        payload_bytes=message.payload,
        ts=ts,
    )
