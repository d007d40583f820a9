"""The chain as an evidence package's verifier reads it (:class:`attestation.evidence.EvidenceChain`).

:class:`EvidenceReader` reads any node through a :class:`~ledger.chain.client.ChainReader`: the ledger
uses it to gather what goes into a package, ``pledgeledger verify-evidence`` to check a package against
a node the verifier trusts, so both see transactions, receipts and logs in the same normalised form.
Node failures raise :class:`~ledger.chain.base.ChainError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_utils import to_checksum_address
from web3.exceptions import BlockNotFound, TransactionNotFound

from attestation.bundle import AnchorQuery, ChainFacts, OnChainKey
from attestation.collateral import STATUSES, LotState
from attestation.evidence import normalise_log, normalise_receipt, normalise_transaction
from ledger.chain.base import COLLATERAL
from ledger.chain.client import ChainReader, _chain_errors

__all__ = ["EvidenceReader"]


class EvidenceReader:
    """:class:`attestation.evidence.EvidenceChain` over web3."""

    def __init__(self, reader: ChainReader) -> None:
        self.reader = reader
        self.w3 = reader.w3

    def chain_id(self) -> int:
        return self.reader.chain_id

    def latest_block(self) -> int:
        return self.reader.block_number()

    def block(self, number: int) -> tuple[str, int] | None:
        with _chain_errors(f"reading block {number}"):
            try:
                block = self.w3.eth.get_block(number)
            except BlockNotFound:
                return None
        return (None if block is None else ("0x" + bytes(block["hash"]).hex(), int(block["timestamp"])))

    def has_code(self, address: str) -> bool:
        return self.reader.has_code(address)

    def device_registry_of(self, anchor: str) -> str:
        return self.reader.device_registry_of(anchor)

    def transaction(self, tx_hash: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        with _chain_errors(f"reading transaction {tx_hash}"):
            try:
                tx = self.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
                receipt = self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            except (TransactionNotFound, ValueError):
                return None
        if tx.get("blockNumber") is None:
            return None
        return normalise_transaction(tx), normalise_receipt(receipt)

    def lot_logs(self, registry: str, lot: str, from_block: int, to_block: int | str = "latest") -> list[dict[str, Any]]:
        params = {"address": to_checksum_address(registry), "fromBlock": from_block, "toBlock": to_block, "topics": [None, lot]}
        with _chain_errors(f"reading the logs of lot {lot}"):
            logs = self.w3.eth.get_logs(params)  # type: ignore[arg-type]
        return sorted(map(normalise_log, logs), key=lambda log: (log["blockNumber"], log["logIndex"]))

    def lot_state(self, registry: str, lot: str) -> LotState:
        fn = self.reader.contract(COLLATERAL, registry).functions.lotOf(bytes.fromhex(lot[2:]))
        (warehouse, enterprise, bank, status, frozen_from, control_start, quantity, min_quantity, unit, released,
         cure_by, goods, assay) = self.reader._call(f"lotOf({lot})", fn)  # fmt: skip
        return LotState(
            warehouse=int(warehouse), enterprise=int(enterprise), bank=int(bank), status=STATUSES[status],
            frozen_from=STATUSES[frozen_from], control_start=int(control_start), quantity=int(quantity),
            min_quantity=int(min_quantity), unit=bytes(unit).rstrip(b"\0").decode("ascii", "replace"),
            released=int(released), cure_by=int(cure_by), goods="0x" + bytes(goods).hex(), assay="0x" + bytes(assay).hex(),
        )  # fmt: skip

    def device_keys(self, registry: str, device: str) -> list[OnChainKey]:
        return [OnChainKey(k.fingerprint, k.alg, k.valid_from, k.valid_until) for k in self.reader.device_keys(registry, device)]

    def bundle_facts(self, queries: Sequence[AnchorQuery]) -> list[ChainFacts]:
        return self.reader.chain_facts_many(queries)
