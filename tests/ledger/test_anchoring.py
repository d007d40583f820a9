"""The anchoring state machine at its crash windows, on a real EVM (py-evm) and both databases.

Each test stops the work at one point as a crash would (the process's memory is lost, the
database and the chain are not), then lets a new :class:`Anchorer` resume from what was
persisted. Faults that need a node with a pool, reorganisations or an outage (stuck and dropped
transactions, reorgs, the node down) are in ``tests/reliability/test_anchoring_faults.py``.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select
from web3 import Web3

from ledger.anchoring import Anchorer, Finality
from ledger.batching import batch_tree
from ledger.chain.client import CHECKPOINTED_TOPIC
from ledger.orgs import create_organisation
from ledger.simulator import SimulatedDevice
from ledger.store.models import Batch, Organisation, Reading


class Crash(Exception):
    """The process dies here."""


def setup_device(ledger) -> SimulatedDevice:  # type: ignore[no-untyped-def]
    """A load cell of a new warehouse, registered on chain."""
    with ledger.db.session() as session:
        org = create_organisation(session, name="WH", role="operator")
    with ledger.db.session() as session:
        operator = session.get(Organisation, org.id)
    device = SimulatedDevice("wh-1", "load_cell", lot="LOT-1")
    ledger.register_device(operator, device.registration())
    return device


def setup_readings(ledger, n: int = 3, device: SimulatedDevice | None = None) -> list[str]:  # type: ignore[no-untyped-def]
    """``n`` accepted readings (of a new device unless one is given); their ids."""
    device = device or setup_device(ledger)
    return [ledger.ingest(device.reading({"weight_kg": 100.0 + i})).id for i in range(n)]


def batches(ledger) -> list[Batch]:  # type: ignore[no-untyped-def]
    with ledger.db.session() as session:
        return list(session.scalars(select(Batch).order_by(Batch.index)))


def checkpoint_logs(ledger) -> list[int]:  # type: ignore[no-untyped-def]
    """The index of every Checkpointed event the anchor ever emitted: one per checkpoint, or a batch was anchored twice."""
    return checkpoint_events(ledger.chain.client)


def checkpoint_events(client) -> list[int]:  # type: ignore[no-untyped-def]
    """:func:`checkpoint_logs` of the anchor that ``client`` (a ``ChainClient``) writes to."""
    logs = client.w3.eth.get_logs({"address": client.anchor_address, "fromBlock": 0, "toBlock": "latest",
                                   "topics": [Web3.to_hex(CHECKPOINTED_TOPIC)]})  # fmt: skip
    return [int.from_bytes(bytes(log["topics"][1]), "big") for log in logs]


def restarted(ledger, **kw) -> Anchorer:  # type: ignore[no-untyped-def]
    """A new anchorer on the same database and chain, as after a restart (reconciled, as at start)."""
    kw.setdefault("finality", ledger.anchorer.finality)
    kw.setdefault("replace_after_s", ledger.anchorer.replace_after_s)
    anchorer = Anchorer(ledger.db, ledger.chain.client, interval_s=0.2, max_size=ledger.settings.batch_max_size, **kw)
    anchorer.reconcile()
    return anchorer


def test_seal_stores_proofs_and_empty_interval_anchors_nothing(db_url, ledger_factory) -> None:  # type: ignore[no-untyped-def]
    ledger = ledger_factory(db_url)
    ids = setup_readings(ledger, 5)
    batch = ledger.anchorer.seal()
    assert batch is not None and batch.index == 0 and batch.count == 5
    assert ledger.anchorer.seal() is None  # nothing new: no batch
    with ledger.db.session() as session:
        tree = batch_tree(session, 0)
        assert tree.root == batch.root
        for reading in session.scalars(select(Reading)):
            assert reading.id in ids
            assert reading.proof == b"".join(tree.proof(reading.leaf_index))
    assert ledger.anchorer.anchor_pending() == 1  # a dev chain: final as soon as included
    assert ledger.anchorer.anchor_pending() == 0
    assert ledger.chain.client.head() == (1, batch.root)
    b = batches(ledger)[0]
    assert b.status == "final" and b.block_hash and b.final_at and b.sent_at and b.raw_tx and b.replacements == 0
    assert Web3.to_hex(Web3.keccak(b.raw_tx)) == b.tx_hash


def test_batches_respect_max_size_and_are_sent_back_to_back(db_url, ledger_factory) -> None:  # type: ignore[no-untyped-def]
    ledger = ledger_factory(db_url, batch_max_size=2)
    setup_readings(ledger, 5)
    for _ in range(3):
        ledger.anchorer.seal()
    assert ledger.anchorer.anchor_pending() == 3  # one pass sends the backlog in order
    assert [b.count for b in batches(ledger)] == [2, 2, 1]
    assert [b.nonce for b in batches(ledger)] == [batches(ledger)[0].nonce + i for i in range(3)]
    assert [ledger.chain.client.root_of(b.index) for b in batches(ledger)] == [b.root for b in batches(ledger)]
    assert checkpoint_logs(ledger) == [0, 1, 2]


def test_crash_after_broadcast_without_a_record_is_not_anchored_twice(db_url, ledger_factory) -> None:  # type: ignore[no-untyped-def]
    """A checkpoint on chain that the database does not know of (sent, then the record was lost)."""
    ledger = ledger_factory(db_url)
    setup_readings(ledger)
    batch = ledger.anchorer.seal()
    client = ledger.chain.client
    sent = client.send_checkpoint(batch.index, batch.root)  # no record: the process "died" before writing
    client.wait_checkpoint(sent.tx_hash)
    assert batches(ledger)[0].status == "sealed"

    anchorer = restarted(ledger)
    assert anchorer.anchor_pending() == 1
    b = batches(ledger)[0]
    assert (b.status, b.tx_hash) == ("final", sent.tx_hash)  # recognised by rootOf(0) and its event
    assert checkpoint_logs(ledger) == [0]


def test_crash_after_record_before_broadcast_sends_the_recorded_transaction(db_url, ledger_factory) -> None:  # type: ignore[no-untyped-def]
    """Write-ahead: the transaction is recorded, then the process dies before it reaches the node."""
    ledger = ledger_factory(db_url)
    setup_readings(ledger)
    batch = ledger.anchorer.seal()
    anchorer = ledger.anchorer

    def record_then_die(signed):  # type: ignore[no-untyped-def]
        anchorer._submitted(batch.index, signed)
        raise Crash

    with pytest.raises(Crash):
        ledger.chain.client.send_checkpoint(batch.index, batch.root, record=record_then_die)
    recorded = batches(ledger)[0]
    assert recorded.status == "submitted" and recorded.raw_tx
    assert ledger.chain.client.transaction_status(recorded.tx_hash) == "unknown"  # never sent
    ledger.chain.client.resync_nonce()  # a new process knows no nonce

    assert restarted(ledger).anchor_pending() == 1
    b = batches(ledger)[0]
    assert (b.status, b.tx_hash, b.nonce) == ("final", recorded.tx_hash, recorded.nonce)  # the very same transaction
    assert checkpoint_logs(ledger) == [0]


def test_crash_while_submitted_resumes_from_receipt(db_url, ledger_factory) -> None:  # type: ignore[no-untyped-def]
    ledger = ledger_factory(db_url)
    setup_readings(ledger)
    batch = ledger.anchorer.seal()
    sent = ledger.chain.client.send_checkpoint(batch.index, batch.root, record=lambda s: ledger.anchorer._submitted(0, s))
    assert batches(ledger)[0].status == "submitted"  # broadcast, mined; the process "died" before looking

    assert restarted(ledger).anchor_pending() == 1
    b = batches(ledger)[0]
    assert (b.status, b.tx_hash) == ("final", sent.tx_hash)
    assert checkpoint_logs(ledger) == [0]


def test_crash_while_included_resumes_finality(db_url, ledger_factory) -> None:  # type: ignore[no-untyped-def]
    """With 3 confirmations an included anchor waits for two more blocks, across a restart."""
    ledger = ledger_factory(db_url)
    ids = setup_readings(ledger)
    anchorer = restarted(ledger, finality=Finality(confirmations=3))
    anchorer.seal()
    assert anchorer.anchor_pending() == 0
    assert batches(ledger)[0].status == "included"
    assert ledger.proof(ids[0])["anchor"]["status"] == "included"  # proofs are served from inclusion on

    tester = ledger.chain.w3.provider.ethereum_tester
    tester.mine_blocks(1)
    again = restarted(ledger, finality=Finality(confirmations=3))
    assert again.anchor_pending() == 0 and batches(ledger)[0].status == "included"  # 2 of 3
    tester.mine_blocks(1)
    assert again.anchor_pending() == 1
    assert batches(ledger)[0].status == "final"
    assert ledger.proof(ids[0])["anchor"]["status"] == "final"
    assert checkpoint_logs(ledger) == [0]


def test_a_checkpoint_run_before_its_predecessor_is_sent_again(db_url, ledger_factory) -> None:  # type: ignore[no-untyped-def]
    """A transaction refused with ReadingAnchorMissingPrevious goes back to sealed and is anchored after it."""
    ledger = ledger_factory(db_url, batch_max_size=1)
    setup_readings(ledger, 2)
    ledger.anchorer.seal()
    ledger.anchorer.seal()
    client = ledger.chain.client
    one = batches(ledger)[1]
    client.send_checkpoint(1, one.root, record=lambda s: ledger.anchorer._submitted(1, s))  # before 0: reverts
    assert batches(ledger)[1].status == "submitted"

    assert ledger.anchorer.anchor_pending() == 2
    assert [b.status for b in batches(ledger)] == ["final", "final"]
    assert checkpoint_logs(ledger) == [0, 1]


def test_fresh_chain_reanchors_everything_in_order(db_url, ledger_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An embedded chain keeps nothing: after a restart every batch is anchored again, in order."""
    data_dir = tmp_path / "d"
    first = ledger_factory(db_url, data_dir=data_dir)
    ids = setup_readings(first, 4)
    first.anchorer.tick()
    first.close()

    second = ledger_factory(db_url, data_dir=data_dir)  # new py-evm chain, new deployment
    second.anchorer.reconcile()
    assert batches(second)[0].status == "sealed" and batches(second)[0].tx_hash is None
    second.anchorer.anchor_pending()
    b = batches(second)[0]
    assert b.status == "final" and second.chain.client.head() == (1, b.root)
    bundle = second.proof(ids[0])
    assert bundle["anchor"]["contract"] == second.chain.client.anchor_address


def test_another_root_on_chain_stops_anchoring(db_url, ledger_factory) -> None:  # type: ignore[no-untyped-def]
    from ledger.anchoring import AnchorMismatch

    ledger = ledger_factory(db_url)
    setup_readings(ledger)
    ledger.anchorer.seal()
    ledger.chain.client.checkpoint(0, b"\x42" * 32)  # someone with the relayer key anchored something else
    with pytest.raises(AnchorMismatch):
        ledger.anchorer.anchor_pending()
    with pytest.raises(AnchorMismatch):
        restarted(ledger)
