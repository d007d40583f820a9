"""Canonical encodings shared by readings, proofs of possession and bundles."""

from __future__ import annotations

import base64
import math
from typing import Any

import orjson
import rfc8785

__all__ = ["b64url_decode", "b64url_encode", "canonical_json", "from_hex32", "to_hex"]


def canonical_json(value: Any) -> bytes:
    """RFC 8785 (JCS) canonical UTF-8 serialisation: the bytes devices sign (SPEC §1).

    Values whose JCS form a plain sorted-keys JSON encoder writes identically (see
    :func:`_stdlib_is_jcs`) take ``orjson``, over ten times faster; everything else goes
    through ``rfc8785``, which also raises for what JCS cannot carry.
    ``tests/attestation/test_encoding.py`` pins the two paths to each other.
    """
    if _stdlib_is_jcs(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:  # a lone surrogate: rfc8785 names it
            pass
    return rfc8785.dumps(value)


_MAX_EXACT_INT = 2**53 - 1


def _stdlib_is_jcs(value: Any) -> bool:
    """True when ``json.dumps(sort_keys=True)`` (and ``orjson`` with ``OPT_SORT_KEYS``, which
    writes the same bytes for such values) writes ``value`` exactly as RFC 8785 does.

    That holds for null, booleans, strings (both escape only ``"``, ``\\`` and control
    characters, the same way), integers within ±(2**53 - 1), non-integral finite floats in
    the range where ``repr`` and ECMAScript both write plain decimals with the same shortest
    round-trip digits (1e-4 <= |x| < 1e16), lists, and objects with ASCII keys (so code-point
    order is UTF-16 order).
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is float:
        return math.isfinite(value) and not value.is_integer() and 1e-4 <= abs(value) < 1e16
    if kind is int:
        return -_MAX_EXACT_INT <= value <= _MAX_EXACT_INT
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not key.isascii() or not _stdlib_is_jcs(item):
                return False
        return True
    if kind is list:
        for item in value:
            if not _stdlib_is_jcs(item):
                return False
        return True
    return False


def b64url_encode(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict base64url without padding; raises ValueError on anything else."""
    if not isinstance(text, str) or "=" in text or not text.isascii():
        raise ValueError("expected base64url without padding")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url_encode(data) != text:  # reject non-canonical trailing bits and stray characters
        raise ValueError("expected canonical base64url")
    return data


def to_hex(data: bytes) -> str:
    """0x-prefixed lowercase hex."""
    return "0x" + data.hex()


def from_hex32(text: str) -> bytes:
    """Parse a 0x-prefixed 32-byte hex string; raises ValueError otherwise."""
    if not isinstance(text, str) or not text.startswith("0x") or len(text) != 66:
        raise ValueError("expected 0x followed by 64 hex digits")
    return bytes.fromhex(text[2:])
