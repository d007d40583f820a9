"""The audit on SQLite and PostgreSQL against a real EVM: clean on a healthy ledger, and each
altered, deleted or inserted row, rewritten batch or missing or extra checkpoint is named."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest
from sqlalchemy import delete, select, update

from attestation.merkle import StandardTree
from attestation.readings import parse_reading
from ledger.audit import check_checkpoint_link, run_audit
from ledger.orgs import create_organisation
from ledger.simulator import SimulatedDevice
from ledger.store.models import Batch, Organisation, Reading


@pytest.fixture
def healthy(db_url, ledger_factory):  # type: ignore[no-untyped-def]
    """Two anchored batches (two devices, one with a withheld reading and a restart) and two readings not batched yet."""
    ledger = ledger_factory(db_url)
    with ledger.db.session() as session:
        org_id = create_organisation(session, name="WH", role="operator").id
    with ledger.db.session() as session:
        operator = session.get(Organisation, org_id)
    scale = SimulatedDevice("wh1-scale-01", "load_cell", lot="LOT-A")
    rfid = SimulatedDevice("wh1-rfid-01", "rfid_inventory", lot="LOT-A")
    for device in (scale, rfid):
        ledger.register_device(operator, device.registration())
    ids = [ledger.ingest(scale.reading({"weight_kg": 500.0 + i})).id for i in range(4)]
    ids += [ledger.ingest(rfid.reading({"count": 10 + i})).id for i in range(3)]
    ledger.anchorer.tick()
    scale.reading({"weight_kg": 1.0})  # withheld: a recorded prev_mismatch gap and a seq gap
    ids.append(ledger.ingest(scale.reading({"weight_kg": 499.0})).id)
    rfid.prev = None  # rebooted
    ids.append(ledger.ingest(rfid.reading({"count": 9})).id)
    ledger.anchorer.tick()
    ids += [ledger.ingest(scale.reading({"weight_kg": 498.0})).id, ledger.ingest(rfid.reading({"count": 8})).id]
    return ledger, ids, scale


def audit(ledger):  # type: ignore[no-untyped-def]
    return run_audit(ledger.db, ledger.chain.client, chunk_size=3)


def errors(report) -> dict[str, list[dict]]:  # type: ignore[no-untyped-def]
    found: dict[str, list[dict]] = {}
    for f in report.as_dict()["findings"]:
        if f["severity"] == "error":
            found.setdefault(f["kind"], []).append(f)
    return found


def test_healthy_ledger_is_clean(healthy) -> None:  # type: ignore[no-untyped-def]
    ledger, ids, _ = healthy
    ledger.anchorer.seal()  # sealed, not anchored yet: pending, not a finding
    progress: list[tuple[int, int]] = []
    report = run_audit(ledger.db, ledger.chain.client, chunk_size=3, progress=lambda done, total: progress.append((done, total)))
    body = report.as_dict()
    assert report.ok and body["findings"] == [], body["findings"]
    assert body["counts"] == {"batches": 3, "readings": 11, "pending_batches": 1, "pending_readings": 0, "devices": 2}
    assert body["chain"]["checkpoints"] == 2
    assert progress[-1] == (11, 11) and len(progress) >= 3  # reported every chunk
    devices = {d["id"]: d for d in body["devices"]}
    scale, rfid = devices["wh1-scale-01"], devices["wh1-rfid-01"]
    assert scale["readings"] == 6 and scale["seq_gaps"] == [{"after": 4, "next": 6, "reading": ids[7]}] and scale["seq_gap_count"] == 1
    assert (scale["gap_count"], rfid["gap_count"]) == (1, 1)
    assert [g["kind"] for g in scale["gaps"]] == ["prev_mismatch"] and [g["kind"] for g in rfid["gaps"]] == ["restart"]
    assert len(scale["keys"]) == len(scale["chain_keys"]) == 1
    assert scale["keys"][0]["fingerprint"] == scale["chain_keys"][0]["fingerprint"]
    json.dumps(body)  # JSON all the way

    first, second = (ledger.chain.client.find_checkpoint(i) for i in (0, 1))
    assert check_checkpoint_link(None, first) is None and check_checkpoint_link(first, second) is None
    assert "checkpoint 1" in check_checkpoint_link(None, second)  # does not extend the empty chain
    assert "before checkpoint 0" in check_checkpoint_link(first, replace(second, block_number=first.block_number - 1))


def test_altered_rows_are_named(healthy) -> None:  # type: ignore[no-untyped-def]
    """An altered envelope, salt and column, each in another reading: each reading is named for what was done to it."""
    ledger, ids, _ = healthy
    with ledger.db.session() as session:
        row = session.scalar(select(Reading).where(Reading.id == ids[1]))
        envelope = json.loads(row.envelope)
        envelope["payload"]["data"]["weight_kg"] = 5000.0  # more goods than there are
        row.envelope = json.dumps(envelope)
        session.execute(update(Reading).where(Reading.id == ids[5]).values(salt=os.urandom(32)))
        session.execute(update(Reading).where(Reading.id == ids[8]).values(lot="LOT-Z"))
    found = errors(audit(ledger))
    named: dict[str, set[str]] = {}
    for kind, findings in found.items():
        for f in findings:
            named.setdefault(f.get("reading", f"batch {f.get('batch')}"), set()).add(kind)
    assert named == {
        ids[1]: {"digest_mismatch", "signature_invalid", "proof_invalid"},  # the envelope
        ids[5]: {"proof_invalid"},  # the salt
        ids[8]: {"column_mismatch"},  # the lot column
        "batch 0": {"batch_root_mismatch"},
    }
    assert "lot" in found["column_mismatch"][0]["message"]


def test_rewritten_batch_differs_from_the_chain(healthy) -> None:  # type: ignore[no-untyped-def]
    """An insider rewrites batch 1 consistently (new salt, tree, proofs and root): only the chain tells."""
    ledger, ids, _ = healthy
    with ledger.db.session() as session:
        session.execute(update(Reading).where(Reading.id == ids[7]).values(salt=os.urandom(32)))
        rows = session.scalars(select(Reading).where(Reading.batch_index == 1).order_by(Reading.leaf_index)).all()
        tree = StandardTree.of([(r.salt, bytes.fromhex(r.id)) for r in rows])
        for i, row in enumerate(rows):
            row.proof = b"".join(tree.proof(i))
        session.execute(update(Batch).where(Batch.index == 1).values(root=tree.root))
    found = errors(audit(ledger))
    assert list(found) == ["chain_root_mismatch"] and found["chain_root_mismatch"][0]["batch"] == 1


def test_deleted_readings_are_named(healthy) -> None:  # type: ignore[no-untyped-def]
    """One deleted from a batch is named by its successor's prev; the newest one by the device's record."""
    ledger, ids, _ = healthy
    with ledger.db.session() as session:
        session.execute(delete(Reading).where(Reading.id.in_([ids[1], ids[9]])))  # ids[9]: the scale's newest, not batched yet
    found = errors(audit(ledger))
    assert set(found) == {"link_unrecorded", "batch_count_mismatch", "batch_root_mismatch", "device_head_mismatch"}
    assert [f["reading"] for f in found["link_unrecorded"]] == [ids[2]]  # its prev names the deleted reading
    assert ids[1] in found["link_unrecorded"][0]["message"]
    assert {f["batch"] for f in found["batch_count_mismatch"] + found["batch_root_mismatch"]} == {0}
    assert ids[9] in found["device_head_mismatch"][0]["message"]


def test_inserted_reading_is_named(healthy) -> None:  # type: ignore[no-untyped-def]
    """A reading the device really signed but the ledger never received, slipped into batch 0 later."""
    ledger, ids, scale = healthy
    envelope = scale.reading({"weight_kg": 100.0})
    reading = parse_reading(envelope)
    with ledger.db.session() as session:
        template = session.scalar(select(Reading).where(Reading.id == ids[0]))
        session.add(Reading(id=reading.id, device_id=scale.id, key_id=template.key_id, seq=reading.seq, ts=template.ts.replace(year=2000),
                            kind="load_cell", lot="LOT-A", envelope=json.dumps(envelope), salt=os.urandom(32), batch_index=0,
                            leaf_index=99, proof=template.proof))
    found = errors(audit(ledger))
    assert reading.id in {f["reading"] for f in found["proof_invalid"]}
    assert {f["batch"] for f in found["batch_count_mismatch"]} == {0}


def test_reading_of_a_device_not_in_the_database_is_named(healthy) -> None:  # type: ignore[no-untyped-def]
    """readings keep no foreign key to devices: a row slipped in for a device the ledger never
    registered (signed by a key of the forger's own) is named, not skipped."""
    ledger, ids, _ = healthy
    ghost = SimulatedDevice("wh1-ghost-01", "load_cell", lot="LOT-A")
    envelope = ghost.reading({"weight_kg": 100.0})
    reading = parse_reading(envelope)
    with ledger.db.session() as session:
        template = session.scalar(select(Reading).where(Reading.id == ids[-1]))
        session.add(Reading(id=reading.id, device_id=ghost.id, key_id=template.key_id, seq=reading.seq,
                            ts=reading.ts.replace(tzinfo=None), kind="load_cell", lot="LOT-A", envelope=json.dumps(envelope), salt=os.urandom(32)))
    found = errors(audit(ledger))
    assert list(found) == ["unknown_device"], found
    assert found["unknown_device"][0]["reading"] == reading.id and found["unknown_device"][0]["device"] == ghost.id


def test_missing_checkpoint_is_named(healthy) -> None:  # type: ignore[no-untyped-def]
    """The ledger says batch 2 is anchored, but the chain never got it."""
    ledger, _, _ = healthy
    batch = ledger.anchorer.seal()
    with ledger.db.session() as session:
        session.execute(update(Batch).where(Batch.index == batch.index).values(status="final", tx_hash="0x" + "ab" * 32))
    found = errors(audit(ledger))
    assert list(found) == ["checkpoint_missing"] and found["checkpoint_missing"][0]["batch"] == 2


def test_extra_checkpoint_is_named(healthy) -> None:  # type: ignore[no-untyped-def]
    """A checkpoint on chain that no stored batch explains (a batch deleted, or another writer)."""
    ledger, _, _ = healthy
    client = ledger.chain.client
    receipt = client.checkpoint(client.size(), os.urandom(32))
    found = errors(audit(ledger))
    assert list(found) == ["checkpoint_extra"] and found["checkpoint_extra"][0]["batch"] == 2
    assert receipt.tx_hash in found["checkpoint_extra"][0]["message"]
