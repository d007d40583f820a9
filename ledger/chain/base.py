"""The one interface the rest of the ledger uses to reach an EVM chain.

Everything chain-specific (how the node is started, how transactions are signed and sent,
how receipts are awaited) lives behind :class:`ChainClient`. Backends only differ in how they
obtain a web3 provider (see :mod:`ledger.chain.backends`); the contract calls are the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from attestation.signatures import ALGORITHMS

__all__ = ["AnchorReceipt", "ChainError", "Deployment", "DeviceKey", "SignedTx", "ALG_CODES"]

#: SPEC §1 algorithm names and their `IDeviceRegistry.Alg` enum values on chain (0 is `None`).
ALG_CODES: dict[str, int] = {alg: code for code, alg in enumerate(ALGORITHMS, start=1)}


class ChainError(Exception):
    """A chain call failed: node unreachable, transaction reverted, contract missing."""


@dataclass(frozen=True)
class Deployment:
    """Where the pledgeledger contracts live on one chain."""

    chain_id: int
    contracts: dict[str, str] = field(default_factory=dict)  # contract name -> checksum address
    block_number: int = 0


@dataclass(frozen=True)
class AnchorReceipt:
    """A checkpoint included in a block: ``checkpoint(index, root)`` as its transaction sent it."""

    index: int
    root: bytes
    tx_hash: str  # 0x-prefixed
    block_number: int
    block_hash: str  # 0x-prefixed; changes if a reorganisation moves the transaction to another block
    gas_used: int  # the receipt's gasUsed


@dataclass(frozen=True)
class SignedTx:
    """A transaction signed by the relayer, kept so that it can be looked up, sent again or replaced."""

    tx_hash: str  # 0x-prefixed
    nonce: int
    raw: bytes  # the signed transaction as broadcast
    fee_cap: int  # maxFeePerGas, or gasPrice for a legacy transaction
    tip: int | None  # maxPriorityFeePerGas; None for a legacy transaction


@dataclass(frozen=True)
class DeviceKey:
    """One key of a device as `DeviceRegistry` records it."""

    fingerprint: bytes  # SHA-256 of the DER SubjectPublicKeyInfo
    alg: str  # "ES256" | "ES256K" | "EdDSA"
    valid_from: int  # Unix seconds, inclusive
    valid_until: int  # Unix seconds, exclusive; 2**64-1 = open


# --- Added with the chain client (ledger/chain/client.py). ---

__all__ += ["ChainRevert", "ChainUnavailable", "NonceConsumed", "OPEN_UNTIL", "ANCHOR", "REGISTRY", "COLLATERAL"]

#: `DeviceRegistry.OPEN`: a key valid "until rotated or revoked".
OPEN_UNTIL: int = 2**64 - 1

#: Contract names, as used in artifacts and in :attr:`Deployment.contracts`.
ANCHOR = "ReadingAnchor"
REGISTRY = "DeviceRegistry"
COLLATERAL = "CollateralRegistry"


class ChainUnavailable(ChainError):
    """The node could not be reached (connection refused, timed out, not started)."""


class ChainRevert(ChainError):
    """A call or transaction reverted.

    ``error`` is the Solidity custom error's name when it could be decoded (for example
    ``"ReadingAnchorAlreadyAnchored"``; ``"Error"`` for ``require`` messages, ``"Panic"`` for panics),
    and ``params`` its arguments by name (``bytes32`` as ``bytes``). ``tx_hash`` is set when a
    mined transaction reverted, ``None`` when a call or gas estimate did.
    """

    def __init__(
        self,
        message: str,
        *,
        error: str | None = None,
        params: dict[str, object] | None = None,
        tx_hash: str | None = None,
    ) -> None:
        super().__init__(message)
        self.error = error
        self.params = dict(params or {})
        self.tx_hash = tx_hash


class NonceConsumed(ChainError):
    """A signed transaction can never be mined: another transaction with its nonce already was."""
