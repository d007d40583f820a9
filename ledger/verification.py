"""Verify proofs trusting only a chain node: what ``pledgeledger verify``, ``verify-evidence`` and the demo run.

:func:`verify_with_chain` reads, over JSON-RPC, the facts a document's checks need (``rootOf`` of its
checkpoints, the device keys in ``DeviceRegistry``) and hands them to the pure verifier
:func:`attestation.bundle.verify_any` (a proof bundle, a multiproof bundle or a production answer).
:func:`verify_evidence_with_chain` does the same for a lot's evidence package
(:func:`attestation.evidence.verify_evidence`).
"""

from __future__ import annotations

from typing import IO, Any

from web3 import Web3

from attestation.bundle import ChainFacts, chain_queries, verify_any
from attestation.errors import AttestationError
from attestation.evidence import open_package, verify_evidence
from ledger.chain.client import ChainReader
from ledger.chain.evidence import EvidenceReader

__all__ = ["verify_evidence_with_chain", "verify_with_chain"]


def verify_with_chain(document: Any, rpc_url: str) -> Any:
    """The verification report of ``document`` against the chain at ``rpc_url``.

    A malformed document gets a report naming the failed check; an unreachable node raises
    :class:`ledger.chain.base.ChainError`.
    """
    reader = _reader(rpc_url)
    try:
        facts = reader.chain_facts_many(chain_queries(document))
    except AttestationError:
        facts = [ChainFacts(chain_id=-1, contract="", root=None, device_key=None)]  # verify_any names the failed check
    return verify_any(document, facts)


def verify_evidence_with_chain(package: IO[bytes], rpc_url: str) -> Any:
    """The verification report of the evidence zip ``package`` against the chain at ``rpc_url``.

    Raises :class:`attestation.evidence.PackageError` for a file that is no evidence package and
    :class:`ledger.chain.base.ChainError` for an unreachable node.
    """
    return verify_evidence(open_package(package), EvidenceReader(_reader(rpc_url, timeout=60)))


def _reader(rpc_url: str, *, timeout: float = 30) -> ChainReader:
    return ChainReader(Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout})))
