"""Anchoring under faults on a real anvil: finality, stuck and dropped transactions, taken nonces,
reorganisations and the node going away.

The ledger reaches anvil as a JSON-RPC chain (``PLEDGELEDGER_CHAIN=http://...``), so finality is
anvil's ``finalized`` block (64 blocks behind the latest) unless a test says otherwise. Faults are
made with anvil's own controls: ``evm_setAutomine``/``evm_mine`` (a transaction that is not mined),
``anvil_setNextBlockBaseFeePerGas`` (one that became too cheap), ``anvil_reorg`` (reorganisations),
and stopping the node. Every test ends with each checkpoint on chain exactly once, and those that
anchor everything with :func:`~tests.reliability.soundness.assert_sound`: every accepted reading
stored and provable against the chain, nothing anchored twice, the audit clean.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3

from ledger.chain import ANVIL_DEV_KEY, AnvilNode, ChainUnavailable, SignedTx, deploy_to, open_chain
from ledger.store.models import Batch
from tests.ledger.test_anchoring import batches, checkpoint_logs, restarted, setup_device, setup_readings
from tests.reliability.servers import rpc
from tests.reliability.soundness import assert_sound

pytestmark = pytest.mark.anvil


@pytest.fixture
def open_ledger(node: AnvilNode, ledger_factory, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Ledgers on SQLite reaching the node by its URL, with contracts deployed as `pledgeledger deploy` would."""
    data_dir = tmp_path / "data"
    with open_chain(node.url, data_dir, relayer_key=ANVIL_DEV_KEY) as handle:
        deploy_to(handle.client, data_dir)

    def make(**kw):  # type: ignore[no-untyped-def]
        ledger = ledger_factory(f"sqlite:///{tmp_path / 'ledger.sqlite3'}", chain=node.url, relayer_key=ANVIL_DEV_KEY,
                                data_dir=data_dir, **kw)  # fmt: skip
        ledger.anchorer.receipt_wait_s = 1.0  # anvil mines at once, but a loaded test machine may not answer at once
        return ledger

    return make


def finalise(node: AnvilNode) -> None:
    """Mine the 64 blocks after which anvil calls a block finalized."""
    rpc(node, "anvil_mine", "0x40")


def status(ledger, index: int = 0) -> str:  # type: ignore[no-untyped-def]
    return batches(ledger)[index].status


def signed(batch: Batch) -> SignedTx:
    return SignedTx(batch.tx_hash, batch.nonce, batch.raw_tx, batch.fee_cap, batch.tip)


# --- finality ---------------------------------------------------------------------------------------


def test_an_anchor_is_final_at_the_nodes_finalized_block(node: AnvilNode, open_ledger) -> None:  # type: ignore[no-untyped-def]
    ledger = open_ledger()
    ids = setup_readings(ledger)
    ledger.anchorer.tick()
    included = batches(ledger)[0]
    assert included.status == "included" and included.block_number and included.block_hash
    assert ledger.proof(ids[0])["anchor"]["status"] == "included"

    rpc(node, "anvil_mine", "0x3e")  # 62 more: the finalized block is still below it
    assert ledger.anchorer.anchor_pending() == 0 and status(ledger) == "included"
    finalise(node)
    assert ledger.anchorer.anchor_pending() == 1 and status(ledger) == "final"
    assert ledger.proof(ids[0])["anchor"]["status"] == "final"
    assert_sound(ledger.db, ledger.chain.client, ids)


def test_on_a_dev_chain_an_anchor_is_final_after_the_configured_confirmations(ledger_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ledger = ledger_factory(f"sqlite:///{tmp_path / 'l.sqlite3'}", chain="managed", confirmations=3)
    ledger.anchorer.receipt_wait_s = 1.0
    setup_readings(ledger)
    ledger.anchorer.tick()
    assert status(ledger) == "included"
    w3 = ledger.chain.w3
    w3.provider.make_request("anvil_mine", ["0x1"])
    assert ledger.anchorer.anchor_pending() == 0 and status(ledger) == "included"  # 2 confirmations of 3
    w3.provider.make_request("anvil_mine", ["0x1"])
    assert ledger.anchorer.anchor_pending() == 1 and status(ledger) == "final"


# --- stuck, dropped and displaced transactions ------------------------------------------------------


def test_a_stuck_transaction_is_replaced_with_the_same_nonce_and_higher_fees(node: AnvilNode, open_ledger) -> None:  # type: ignore[no-untyped-def]
    ledger = open_ledger(replace_after_s=1.5)
    ids = setup_readings(ledger)
    rpc(node, "evm_setAutomine", False)  # from now on nothing is mined unless the test says so
    ledger.anchorer.tick()
    first = batches(ledger)[0]
    client = ledger.chain.client
    assert first.status == "submitted" and client.transaction_status(first.tx_hash) == "pending"

    assert ledger.anchorer.anchor_pending() == 0  # not due yet: nothing replaced
    assert batches(ledger)[0].tx_hash == first.tx_hash
    _wait(lambda: _due(first, 1.5), "the replacement to be due")
    ledger.anchorer.anchor_pending()
    replaced = batches(ledger)[0]
    assert replaced.status == "submitted" and replaced.replacements == 1
    assert replaced.tx_hash != first.tx_hash and replaced.nonce == first.nonce
    assert replaced.fee_cap * 8 >= first.fee_cap * 9 and replaced.tip * 8 >= first.tip * 9  # +12.5% at least
    assert client.transaction_status(first.tx_hash) == "unknown"  # the node dropped what it replaced
    assert client.transaction_status(replaced.tx_hash) == "pending"

    rpc(node, "evm_mine")
    ledger.anchorer.anchor_pending()
    assert (status(ledger), batches(ledger)[0].tx_hash) == ("included", replaced.tx_hash)
    finalise(node)
    assert ledger.anchorer.anchor_pending() == 1
    assert checkpoint_logs(ledger) == [0]
    assert_sound(ledger.db, ledger.chain.client, ids)


def test_a_transaction_dropped_for_its_low_fee_is_replaced_at_the_current_fees(node: AnvilNode, open_ledger) -> None:  # type: ignore[no-untyped-def]
    ledger = open_ledger(replace_after_s=3600)  # never due: the node's refusal alone triggers the replacement
    ids = setup_readings(ledger)
    rpc(node, "evm_setAutomine", False)
    ledger.anchorer.tick()
    first = batches(ledger)[0]
    client = ledger.chain.client
    rpc(node, "anvil_setNextBlockBaseFeePerGas", hex(first.fee_cap * 10))  # fees jump tenfold
    rpc(node, "evm_mine")
    assert client.transaction_status(first.tx_hash) == "unknown"  # too cheap now: dropped from the pool

    ledger.anchorer.anchor_pending()  # sent again, refused for its fees, so replaced at once
    replaced = batches(ledger)[0]
    assert replaced.status == "submitted" and replaced.nonce == first.nonce
    assert replaced.fee_cap > first.fee_cap * 10
    rpc(node, "evm_mine")
    ledger.anchorer.anchor_pending()
    assert (status(ledger), batches(ledger)[0].tx_hash) == ("included", replaced.tx_hash)
    assert checkpoint_logs(ledger) == [0]
    assert_sound(ledger.db, ledger.chain.client, ids)


def test_a_nonce_taken_by_another_transaction_means_sending_the_checkpoint_anew(node: AnvilNode, open_ledger) -> None:  # type: ignore[no-untyped-def]
    ledger = open_ledger()
    ids = setup_readings(ledger)
    rpc(node, "evm_setAutomine", False)
    ledger.anchorer.tick()
    first = batches(ledger)[0]
    client = ledger.chain.client
    # the relayer's key, used elsewhere, sends a transfer with the same nonce and higher fees
    other = Account.from_key(ANVIL_DEV_KEY).sign_transaction(
        {"chainId": client.chain_id, "nonce": first.nonce, "to": client.address, "value": 1, "gas": 21_000,
         "maxFeePerGas": first.fee_cap * 2, "maxPriorityFeePerGas": first.tip * 2}  # fmt: skip
    )
    client.w3.eth.send_raw_transaction(other.raw_transaction)
    rpc(node, "evm_mine")
    assert client.transaction_status(Web3.to_hex(other.hash)) == "mined"

    ledger.anchorer.anchor_pending()
    resent = batches(ledger)[0]
    assert resent.status == "submitted" and resent.nonce == first.nonce + 1 and resent.tx_hash != first.tx_hash
    rpc(node, "evm_mine")
    ledger.anchorer.anchor_pending()
    assert status(ledger) == "included"
    assert checkpoint_logs(ledger) == [0]
    assert_sound(ledger.db, ledger.chain.client, ids)


def test_a_checkpoint_displaced_behind_its_predecessor_is_anchored_in_order(node: AnvilNode, open_ledger) -> None:  # type: ignore[no-untyped-def]
    """Batch 0's nonce is taken, so batch 1's transaction runs first and is refused (MissingPrevious):
    both are sent again, in order."""
    ledger = open_ledger(batch_max_size=1)
    ids = setup_readings(ledger, 2)
    rpc(node, "evm_setAutomine", False)
    ledger.anchorer.seal()
    ledger.anchorer.seal()
    ledger.anchorer.anchor_pending()
    zero, one = batches(ledger)
    assert (zero.status, one.status, one.nonce) == ("submitted", "submitted", zero.nonce + 1)  # sent back to back
    client = ledger.chain.client
    other = Account.from_key(ANVIL_DEV_KEY).sign_transaction(
        {"chainId": client.chain_id, "nonce": zero.nonce, "to": client.address, "value": 1, "gas": 21_000,
         "maxFeePerGas": zero.fee_cap * 2, "maxPriorityFeePerGas": zero.tip * 2}  # fmt: skip
    )
    client.w3.eth.send_raw_transaction(other.raw_transaction)
    rpc(node, "evm_mine")  # the transfer, then checkpoint(1) which reverts: checkpoint 0 is missing

    ledger.anchorer.anchor_pending()
    assert [b.status for b in batches(ledger)] == ["submitted", "submitted"]
    rpc(node, "evm_mine")
    ledger.anchorer.anchor_pending()
    assert [b.status for b in batches(ledger)] == ["included", "included"]
    assert checkpoint_logs(ledger) == [0, 1]
    assert [client.root_of(i) for i in (0, 1)] == [zero.root, one.root]
    assert_sound(ledger.db, ledger.chain.client, ids)


# --- reorganisations ----------------------------------------------------------------------------------


def test_a_reorganisation_that_drops_anchors_is_detected_and_they_are_anchored_again(node: AnvilNode, open_ledger) -> None:  # type: ignore[no-untyped-def]
    ledger = open_ledger(batch_max_size=2)
    ids = setup_readings(ledger, 4)
    ledger.anchorer.seal()
    ledger.anchorer.seal()
    ledger.anchorer.anchor_pending()
    before = batches(ledger)
    assert [b.status for b in before] == ["included", "included"]
    client = ledger.chain.client
    depth = client.block_number() - before[0].block_number + 1
    rpc(node, "anvil_reorg", depth, [])  # both anchors' blocks replaced by empty ones
    assert client.size() == 0

    ledger.anchorer.anchor_pending()
    after = batches(ledger)
    assert [b.status for b in after] == ["included", "included"]
    assert [b.tx_hash for b in after] == [b.tx_hash for b in before]  # the same transactions, sent again
    assert all(a.block_hash != b.block_hash for a, b in zip(after, before))
    assert checkpoint_logs(ledger) == [0, 1]
    finalise(node)
    assert ledger.anchorer.anchor_pending() == 2
    assert_sound(ledger.db, ledger.chain.client, ids)


def test_a_reorganisation_that_moves_an_anchor_updates_its_block(node: AnvilNode, open_ledger) -> None:  # type: ignore[no-untyped-def]
    ledger = open_ledger()
    ids = setup_readings(ledger)
    ledger.anchorer.tick()
    before = batches(ledger)[0]
    rpc(node, "anvil_mine", "0x2")
    # three blocks replaced; the anchor's transaction lands in the second of the new ones
    rpc(node, "anvil_reorg", 3, [["0x" + before.raw_tx.hex(), 1]])

    ledger.anchorer.anchor_pending()
    after = batches(ledger)[0]
    assert (after.status, after.tx_hash) == ("included", before.tx_hash)
    assert after.block_hash != before.block_hash and after.block_number == before.block_number + 1
    assert checkpoint_logs(ledger) == [0]
    assert_sound(ledger.db, ledger.chain.client, ids)


# --- the node away, and crashes around a replacement ------------------------------------------------


def test_while_the_node_is_down_readings_are_accepted_and_the_backlog_anchors_when_it_returns(node: AnvilNode, open_ledger) -> None:  # type: ignore[no-untyped-def]
    ledger = open_ledger(batch_max_size=2)
    device = setup_device(ledger)
    ids = setup_readings(ledger, 1, device)

    ledger.anchorer.start()  # the real background loop (interval 0.2 s)
    _wait(lambda: status(ledger) == "included", "the first batch anchored")
    node.stop()
    for i in range(5):
        result = ledger.ingest(device.reading({"weight_kg": 200.0 + i}))
        assert result.status == "accepted"
        ids.append(result.id)
    _wait(lambda: ledger.anchorer.last_error is not None, "the loop noticing the node is down")
    assert "unreachable" in ledger.anchorer.last_error
    with pytest.raises(ChainUnavailable):
        ledger.chain.client.size()
    _wait(lambda: len(batches(ledger)) >= 3, "readings sealed while the node is down")
    assert all(b.status == "sealed" for b in batches(ledger)[1:])
    anchoring = ledger.health()["anchoring"]
    assert anchoring["pending"]["sealed"] >= 2 and "unreachable" in anchoring["last_error"]

    node.start()  # same port, same state
    _wait(lambda: [b.status for b in batches(ledger)] == ["included"] * 4, "the backlog anchored", 40)
    _wait(lambda: ledger.anchorer.last_error is None, "the loop to report no error")
    assert ledger.health()["anchoring"]["pending"] == {"sealed": 0, "submitted": 0, "included": 4}
    assert checkpoint_logs(ledger) == list(range(4))
    assert_sound(ledger.db, ledger.chain.client, ids)


def test_a_crash_after_a_replacement_went_out_but_before_it_was_recorded(node: AnvilNode, open_ledger) -> None:  # type: ignore[no-untyped-def]
    ledger = open_ledger()
    ids = setup_readings(ledger)
    rpc(node, "evm_setAutomine", False)
    ledger.anchorer.tick()
    first = batches(ledger)[0]
    replacement = ledger.chain.client.replace_checkpoint(0, first.root, signed(first))  # no record: "died" here
    rpc(node, "evm_mine")

    anchorer = restarted(ledger)
    anchorer.anchor_pending()
    assert (status(ledger), batches(ledger)[0].tx_hash) == ("included", replacement.tx_hash)  # found by its event
    assert checkpoint_logs(ledger) == [0]
    assert_sound(ledger.db, ledger.chain.client, ids)


def test_a_restart_finds_an_anchor_the_chain_lost_meanwhile(node: AnvilNode, open_ledger) -> None:  # type: ignore[no-untyped-def]
    ledger = open_ledger()
    ids = setup_readings(ledger)
    ledger.anchorer.tick()
    assert status(ledger) == "included"
    ledger.anchorer.stop()
    rpc(node, "anvil_reorg", 1, [])  # while the service is down

    anchorer = restarted(ledger)
    assert status(ledger) == "sealed"  # the node no longer has its transaction: it is sent anew
    anchorer.anchor_pending()
    assert status(ledger) == "included"
    assert checkpoint_logs(ledger) == [0]
    assert_sound(ledger.db, ledger.chain.client, ids)


# --- helpers ----------------------------------------------------------------------------------------


def _due(batch: Batch, after_s: float) -> bool:
    from ledger.anchoring import _now

    return (_now() - batch.sent_at).total_seconds() >= after_s


def _wait(condition, what: str, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception:  # noqa: BLE001 - the condition may read a chain that is down
            pass
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")
