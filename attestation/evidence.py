"""The evidence commitment of a supervision freeze: the ``reason`` a ``Freeze`` carries on chain.

When a rule freezes a lot, the ``bytes32 reason`` of ``CollateralRegistry.freeze`` commits to
the readings that triggered it, so that anyone holding those readings (a bank, an auditor, a
court) can show that this freeze was raised on exactly this evidence::

    reason = keccak256(d_1 ‖ d_2 ‖ … ‖ d_n)

where ``d_1 < d_2 < … < d_n`` are the distinct 32-byte digests of the evidence readings (a
reading's digest is its id, SHA-256 of its signed bytes, SPEC §1), sorted in ascending byte
order and concatenated with nothing in between. No evidence at all gives ``keccak256("")``.
In Solidity: ``keccak256(abi.encodePacked(sortedDigests))`` over a ``bytes32[]``; with the
command line: sort the lowercase hex ids, join them, and keccak256 the bytes.

WARNING: changing this function changes what past freezes commit to.
"""

from __future__ import annotations

from collections.abc import Iterable

from attestation.merkle import keccak

__all__ = ["evidence_reason"]


def evidence_reason(digests: Iterable[str | bytes]) -> bytes:
    """The 32-byte commitment to the readings ``digests`` (hex ids, with or without ``0x``, or raw bytes)."""
    raw = set()
    for digest in digests:
        value = bytes.fromhex(digest.removeprefix("0x")) if isinstance(digest, str) else bytes(digest)
        if len(value) != 32:
            raise ValueError(f"a reading digest is 32 bytes, got {len(value)}")
        raw.add(value)
    return keccak(b"".join(sorted(raw)))
