"""Canonical encodings shared by readings, proofs of possession and bundles."""

from __future__ import annotations

import base64
from typing import Any

import rfc8785

__all__ = ["b64url_decode", "b64url_encode", "canonical_json", "from_hex32", "to_hex"]


def canonical_json(value: Any) -> bytes:
    """RFC 8785 (JCS) canonical UTF-8 serialisation: the bytes devices sign (SPEC §1)."""
    return rfc8785.dumps(value)


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
