"""Canonical encodings shared by readings, proofs of possession and bundles."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import rfc8785

__all__ = ["b64url_decode", "b64url_encode", "canonical_json", "from_hex32", "to_hex"]


def canonical_json(value: Any) -> bytes:
    """RFC 8785 (JCS) canonical UTF-8 serialisation: the bytes devices sign (SPEC §1).

    Values whose JCS form a plain sorted-keys JSON encoder writes identically (see
    :func:`_fast_path`) take ``orjson``, over ten times faster; everything else goes through
    ``rfc8785``, which also raises for what JCS cannot carry.
    ``tests/attestation/test_encoding.py`` pins the two paths to each other.
    """
    verdict = _fast_path(value)
    if verdict:
        try:
            return orjson.dumps(_integral_floats_as_ints(value) if verdict == _AS_INTS else value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:  # a lone surrogate: rfc8785 names it
            pass
    return rfc8785.dumps(value)


_MAX_EXACT_INT = 2**53 - 1
_NO, _AS_IS, _AS_INTS = 0, 1, 2


def _fast_path(value: Any) -> int:
    """Whether a sorted-keys JSON encoder (``orjson`` with ``OPT_SORT_KEYS``, or
    ``json.dumps(sort_keys=True)``: for these values both write the same bytes) writes ``value``
    exactly as RFC 8785 does: ``_AS_IS``, ``_AS_INTS`` (once its integral floats are ints), or
    ``_NO`` (0).

    That holds for null, booleans, strings (both escape only ``"``, ``\\`` and control
    characters, the same way), integers within ±(2**53 - 1), non-integral finite floats in
    the range where ``repr`` and ECMAScript both write plain decimals with the same shortest
    round-trip digits (1e-4 <= |x| < 1e16), integral floats within ±(2**53 - 1) (ECMAScript
    writes ``21.0`` as ``21``, exactly the integer's digits), lists, and objects with ASCII
    keys (so code-point order is UTF-16 order).
    """
    kind = type(value)
    if kind is dict:
        for key in value:
            if type(key) is not str or not key.isascii():
                return _NO
        items: Any = value.values()
    elif kind is list:
        items = value
    else:
        return _scalar(value)
    verdict = _AS_IS
    for item in items:  # the scalars inline: a reading is a dozen of them
        kind = type(item)
        if kind is str or item is None or kind is bool:
            continue
        if kind is int:
            if -_MAX_EXACT_INT <= item <= _MAX_EXACT_INT:
                continue
            return _NO
        inner = _scalar(item) if kind is float else _fast_path(item)
        if inner == _NO:
            return _NO
        verdict = max(verdict, inner)
    return verdict


def _scalar(value: Any) -> int:
    """:func:`_fast_path` of a value that is not a dict or a list."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return _AS_IS
    if kind is float:  # NaN and the infinities fail every comparison below
        if value.is_integer():
            return _AS_INTS if -_MAX_EXACT_INT <= value <= _MAX_EXACT_INT else _NO
        return _AS_IS if 1e-4 <= abs(value) < 1e16 else _NO
    if kind is int:
        return _AS_IS if -_MAX_EXACT_INT <= value <= _MAX_EXACT_INT else _NO
    return _NO


def _integral_floats_as_ints(value: Any) -> Any:
    """``value`` with every integral float made an int (:func:`_fast_path` checked their range)."""
    kind = type(value)
    if kind is float:
        return int(value) if value.is_integer() else value
    if kind is dict:
        return {key: _integral_floats_as_ints(item) for key, item in value.items()}
    if kind is list:
        return [_integral_floats_as_ints(item) for item in value]
    return value


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
