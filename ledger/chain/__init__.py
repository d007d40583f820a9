"""Access to the EVM chain: the pledgeledger contracts, their deployment, and the node.

- :mod:`ledger.chain.base`      shared types (:class:`Deployment`, :class:`AnchorReceipt`, errors)
- :mod:`ledger.chain.artifacts` the compiled contracts shipped with the package
- :mod:`ledger.chain.client`    :class:`ChainReader` (no key) and :class:`ChainClient` (relayer)
- :mod:`ledger.chain.backends`  :func:`open_chain` (managed anvil, embedded py-evm, JSON-RPC URL)
  and the deployment records (:func:`ensure_deployment`, :func:`deploy_to`)
- :mod:`ledger.chain.collateral` CollateralRegistry: EIP-712 typed data of every lot transition and
  :class:`~ledger.chain.collateral.CollateralClient`
"""

from ledger.chain.artifacts import load_artifact
from ledger.chain.backends import (
    ANVIL_DEV_KEY,
    AnvilNode,
    ChainHandle,
    ChainKind,
    deploy_to,
    deployment_path,
    ensure_deployment,
    find_anvil,
    open_chain,
    read_deployment,
    write_deployment,
)
from ledger.chain.base import (
    ALG_CODES,
    ANCHOR,
    COLLATERAL,
    OPEN_UNTIL,
    REGISTRY,
    AnchorReceipt,
    ChainError,
    ChainRevert,
    ChainUnavailable,
    Deployment,
    DeviceKey,
    NonceConsumed,
    SignedTx,
)
from ledger.chain.client import ChainClient, ChainReader, decode_revert

__all__ = [
    "ALG_CODES",
    "ANCHOR",
    "ANVIL_DEV_KEY",
    "AnvilNode",
    "COLLATERAL",
    "OPEN_UNTIL",
    "REGISTRY",
    "AnchorReceipt",
    "ChainClient",
    "ChainError",
    "ChainHandle",
    "ChainKind",
    "ChainReader",
    "ChainRevert",
    "ChainUnavailable",
    "Deployment",
    "DeviceKey",
    "NonceConsumed",
    "SignedTx",
    "decode_revert",
    "deploy_to",
    "deployment_path",
    "ensure_deployment",
    "find_anvil",
    "load_artifact",
    "open_chain",
    "read_deployment",
    "write_deployment",
]
