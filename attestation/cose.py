"""COSE_Sign1 (RFC 9052) for constrained devices: structure, headers and deterministic CBOR.

A COSE reading is ``18([protected: bstr, unprotected: map, payload: bstr, signature: bstr])``
(SPEC §1, last paragraph):

- ``protected`` is the CBOR encoding of a header map holding ``1`` (alg): ``-7`` ES256,
  ``-47`` ES256K (RFC 8812) or ``-8`` EdDSA (Ed25519). Other header parameters (``kid``,
  content type, …) are allowed and ignored; ``crit`` (``2``) is refused, since this
  verifier understands no extension it could name. A label may not appear in both buckets.
- ``payload`` is the deterministic CBOR (RFC 8949 §4.2.1) of the reading's payload map; it is
  never detached.
- ``signature`` is the raw 64-byte signature of SPEC §1 (``r‖s`` for ECDSA) over the
  ``Sig_structure`` ``["Signature1", protected, h'', payload]`` (RFC 9052 §4.4).

Decoding is strict everywhere: one item with no trailing bytes, definite lengths only, no
duplicate map keys, at most :data:`MAX_DEPTH` levels of nesting.

cbor2's ``canonical=True`` is what :func:`deterministic_cbor` uses. It orders map keys
length-first, then bytewise (RFC 7049 §3.9 "canonical"), not purely bytewise as RFC 8949
§4.2.1 asks; the two orders agree whenever all keys of a map have the same major type, as
text keys do, and :func:`check_plain` refuses every other key type. Integers, lengths and
floats (the shortest of half/single/double that keeps the value) are as RFC 8949 asks.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any

import cbor2

from attestation.errors import InvalidReading

__all__ = [
    "COSE_ALGORITHMS",
    "COSE_ALG_IDS",
    "COSE_SIGN1_TAG",
    "MAX_DEPTH",
    "CoseSign1",
    "check_plain",
    "decode_sign1",
    "deterministic_cbor",
    "sig_structure",
    "strict_loads",
]

COSE_SIGN1_TAG = 18
#: COSE algorithm identifiers (IANA "COSE Algorithms") of the SPEC §1 algorithms.
COSE_ALGORITHMS: dict[int, str] = {-7: "ES256", -47: "ES256K", -8: "EdDSA"}
COSE_ALG_IDS: dict[str, int] = {name: ident for ident, name in COSE_ALGORITHMS.items()}
MAX_DEPTH = 16  # the payload map, data, and arrays in data: a handful of levels suffice

_HEADER_ALG = 1
_HEADER_CRIT = 2
_DECODE_ERRORS = (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError, MemoryError)


@dataclass(frozen=True)
class CoseSign1:
    """A structurally valid COSE_Sign1 message; nothing is verified yet."""

    protected: bytes  # the protected header bstr exactly as sent (the signature covers it)
    alg: str  # the SPEC §1 name of the protected ``alg``
    unprotected: dict[Any, Any]
    payload: bytes  # the payload bstr exactly as sent
    signature: bytes

    @property
    def to_be_signed(self) -> bytes:
        return sig_structure(self.protected, self.payload)


def strict_loads(data: bytes, *, field: str) -> Any:
    """Decode exactly one CBOR item: definite lengths, unique map keys, nothing after it."""
    stream = io.BytesIO(data)
    try:
        decoder = cbor2.CBORDecoder(stream, max_depth=MAX_DEPTH, allow_indefinite=False, allow_duplicate_keys=False)
        value = decoder.decode()
    except _DECODE_ERRORS as exc:
        raise InvalidReading(f"{field} is not valid CBOR ({exc})", field=field) from None
    if stream.tell() != len(data):
        raise InvalidReading(f"{field} has {len(data) - stream.tell()} bytes after its CBOR item", field=field)
    return value


def deterministic_cbor(value: Any) -> bytes:
    """RFC 8949 §4.2.1 core deterministic encoding of a JSON-like value (see the module notes)."""
    return cbor2.dumps(value, canonical=True)


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    """``Sig_structure`` of COSE_Sign1 with empty external AAD (RFC 9052 §4.4): the signed bytes."""
    return cbor2.dumps(["Signature1", protected, b"", payload])


def check_plain(value: Any, path: str) -> None:
    """Refuse anything JSON could not carry: only maps with text keys, arrays, text, integers,
    floats, true, false and null (no byte strings, tags, undefined or simple values)."""
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidReading(f"{path} must be a finite number", field=path)
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            check_plain(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidReading(f"{path} has a map key {key!r} that is not a text string", field=path)
            check_plain(item, f"{path}.{key}")
        return
    raise InvalidReading(
        f"{path} is a CBOR {type(value).__name__}; payloads hold only maps with text keys, arrays, text, "
        "integers, floats, true, false and null",
        field=path,
    )


def _header_map(value: Any, field: str) -> dict[Any, Any]:
    if not isinstance(value, Mapping):  # cbor2 decodes maps inside a tag as its frozendict
        raise InvalidReading(f"{field} must be a CBOR map of header parameters", field=field)
    for label in value:  # RFC 9052 §3: labels are integers or text (true or 1.0 would pass for 1 in Python)
        if isinstance(label, bool) or not isinstance(label, (int, str)):
            raise InvalidReading(f"{field} has a header label {label!r}: labels are integers or text", field=field)
    return dict(value)


def decode_sign1(data: bytes) -> CoseSign1:
    """Check a tagged COSE_Sign1 message's structure and headers; raise :class:`InvalidReading`."""
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise InvalidReading("a COSE reading is the bytes of a tagged COSE_Sign1 message", field="cose")
    if data[0] != 0xD2:  # tag 18 in its one-byte form
        raise InvalidReading("a COSE reading must start with CBOR tag 18 (COSE_Sign1, byte 0xd2)", field="cose")
    message = strict_loads(bytes(data), field="cose")
    if not (isinstance(message, cbor2.CBORTag) and message.tag == COSE_SIGN1_TAG):
        raise InvalidReading("a COSE reading must be CBOR tag 18 (COSE_Sign1)", field="cose")
    body = message.value
    if not (isinstance(body, (list, tuple)) and len(body) == 4):  # a tuple when inside a tag
        raise InvalidReading("COSE_Sign1 is an array [protected, unprotected, payload, signature]", field="cose")
    protected_bytes, unprotected, payload, signature = body
    if not isinstance(protected_bytes, bytes):
        raise InvalidReading("cose.protected must be a byte string", field="cose.protected")
    protected = {}
    if protected_bytes:  # a zero-length bstr stands for an empty map (RFC 9052 §3)
        protected = _header_map(strict_loads(protected_bytes, field="cose.protected"), "cose.protected")
    unprotected = _header_map(unprotected, "cose.unprotected")
    both = set(protected) & set(unprotected)
    if both:
        labels = ", ".join(sorted(map(str, both)))
        raise InvalidReading(f"header labels {labels} appear in both protected and unprotected headers", field="cose.unprotected")
    if _HEADER_CRIT in protected or _HEADER_CRIT in unprotected:
        raise InvalidReading(
            "crit (2) names header parameters this verifier does not understand; drop it", field="cose.protected.crit"
        )
    if _HEADER_ALG not in protected:
        where = " (it is in the unprotected headers; it must be protected)" if _HEADER_ALG in unprotected else ""
        raise InvalidReading(f"cose.protected must hold alg (1){where}", field="cose.protected.alg")
    alg = protected[_HEADER_ALG]
    if not isinstance(alg, int) or isinstance(alg, bool) or alg not in COSE_ALGORITHMS:
        choices = ", ".join(f"{i} ({n})" for i, n in COSE_ALGORITHMS.items())
        raise InvalidReading(f"cose.protected.alg must be one of {choices}, not {alg!r}", field="cose.protected.alg")
    if not isinstance(payload, bytes):
        raise InvalidReading("cose.payload must be a byte string (detached payloads are refused)", field="cose.payload")
    if not isinstance(signature, bytes):
        raise InvalidReading("cose.signature must be a byte string", field="cose.signature")
    return CoseSign1(protected_bytes, COSE_ALGORITHMS[alg], unprotected, payload, signature)
