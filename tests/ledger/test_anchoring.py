"""The anchoring state machine at its crash windows, on a real EVM and both databases."""

from __future__ import annotations

from sqlalchemy import select

from ledger.batching import batch_tree
from ledger.orgs import create_organisation
from ledger.simulator import SimulatedDevice
from ledger.store.models import Batch, Reading


def setup_readings(ledger, n: int = 3) -> list[str]:  # type: ignore[no-untyped-def]
    with ledger.db.session() as session:
        org = create_organisation(session, name="WH", role="operator")
    from ledger.store.models import Organisation

    with ledger.db.session() as session:
        operator = session.get(Organisation, org.id)
    device = SimulatedDevice("wh-1", "load_cell", lot="LOT-1")
    ledger.register_device(operator, device.registration())
    return [ledger.ingest(device.reading({"weight_kg": 100.0 + i})).id for i in range(n)]


def batches(ledger) -> list[Batch]:  # type: ignore[no-untyped-def]
    with ledger.db.session() as session:
        return list(session.scalars(select(Batch).order_by(Batch.index)))


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
    assert ledger.anchorer.anchor_pending() == 1
    assert ledger.anchorer.anchor_pending() == 0
    assert ledger.chain.client.head()[0] == 1


def test_batches_respect_max_size(db_url, ledger_factory) -> None:  # type: ignore[no-untyped-def]
    ledger = ledger_factory(db_url, batch_max_size=2)
    setup_readings(ledger, 5)
    ledger.anchorer.tick()
    ledger.anchorer.tick()
    ledger.anchorer.tick()
    assert [b.count for b in batches(ledger)] == [2, 2, 1]
    assert ledger.chain.client.head()[0] == 3
    assert [ledger.chain.client.root_of(b.index) for b in batches(ledger)] == [b.root for b in batches(ledger)]


def test_crash_after_send_before_record_is_not_anchored_twice(db_url, ledger_factory) -> None:  # type: ignore[no-untyped-def]
    ledger = ledger_factory(db_url)
    setup_readings(ledger)
    batch = ledger.anchorer.seal()
    client = ledger.chain.client
    client.wait_checkpoint(client.send_checkpoint(batch.index, batch.root)[0])  # sent; the process "died" here
    assert batches(ledger)[0].status == "sealed"
    ledger.anchorer.reconcile()
    assert ledger.anchorer.anchor_pending() == 1
    assert client.head()[0] == 1  # recognised by rootOf(0), not sent again
    b = batches(ledger)[0]
    assert b.status == "confirmed" and b.tx_hash and b.block_number


def test_crash_while_submitted_resumes_from_receipt(db_url, ledger_factory) -> None:  # type: ignore[no-untyped-def]
    ledger = ledger_factory(db_url)
    setup_readings(ledger)
    batch = ledger.anchorer.seal()
    client = ledger.chain.client
    tx_hash, nonce = client.send_checkpoint(batch.index, batch.root)
    with ledger.db.session() as session:  # recorded as submitted, then the process "died"
        row = session.get(Batch, 0)
        row.status, row.tx_hash, row.nonce = "submitted", tx_hash, nonce
    assert ledger.anchorer.anchor_pending() == 1
    b = batches(ledger)[0]
    assert (b.status, b.tx_hash) == ("confirmed", tx_hash)
    assert client.head()[0] == 1


def test_fresh_chain_reanchors_everything_in_order(db_url, ledger_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An embedded chain keeps nothing: after a restart every batch is anchored again, in order."""
    data_dir = tmp_path / "d"
    first = ledger_factory(db_url, data_dir=data_dir)
    ids = setup_readings(first, 4)
    first.anchorer.tick()
    first.close()

    second = ledger_factory(db_url, data_dir=data_dir)  # new py-evm chain, new deployment
    second.anchorer.reconcile()
    assert batches(second)[0].status == "sealed"
    second.anchorer.anchor_pending()
    b = batches(second)[0]
    assert b.status == "confirmed" and second.chain.client.head()[0] == 1
    assert second.chain.client.root_of(0) == b.root
    bundle = second.proof(ids[0])
    assert bundle["anchor"]["contract"] == second.chain.client.anchor_address
