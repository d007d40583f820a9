"""Verify a proof document trusting only a chain node: what ``pledgeledger verify`` and the demo run.

:func:`verify_with_chain` reads, over JSON-RPC, the facts a document's checks need (``rootOf`` of its
checkpoints, the device keys in ``DeviceRegistry``) and hands them to the pure verifier
:func:`attestation.bundle.verify_any` (a proof bundle, a multiproof bundle or a production answer).
"""

from __future__ import annotations

from typing import Any

from web3 import Web3

from attestation.bundle import ChainFacts, chain_queries, verify_any
from attestation.errors import AttestationError
from ledger.chain.client import ChainReader

__all__ = ["verify_with_chain"]


def verify_with_chain(document: Any, rpc_url: str) -> Any:
    """The verification report of ``document`` against the chain at ``rpc_url``.

    A malformed document gets a report naming the failed check; an unreachable node raises
    :class:`ledger.chain.base.ChainError`.
    """
    reader = ChainReader(Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30})))
    try:
        facts = reader.chain_facts_many(chain_queries(document))
    except AttestationError:
        facts = [ChainFacts(chain_id=-1, contract="", root=None, device_key=None)]  # verify_any names the failed check
    return verify_any(document, facts)
