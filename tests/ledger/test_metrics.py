"""The metrics the ledger records where things happen: chain errors by operation and kind,
anchoring latency, readings by outcome (MQTT and HTTP both go through ingest)."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from web3 import Web3

from attestation.bundle import AnchorQuery
from ledger.chain.base import ChainRevert, ChainUnavailable
from ledger.chain.client import ChainReader
from ledger.errors import Conflict
from ledger.simulator import SimulatedDevice
from tests.conftest import free_port


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_chain_errors_are_counted_once_under_the_operation_asked_for(ledger_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ledger = ledger_factory(f"sqlite:///{tmp_path / 'l.sqlite3'}")
    client = ledger.chain.client
    reverts = sample("pledgeledger_chain_errors_total", operation="root_of", kind="revert")
    with pytest.raises(ChainRevert):
        client.root_of(99)  # ReadingAnchorUnknownIndex, raised in ChainReader.root_of inside ChainClient.root_of
    assert sample("pledgeledger_chain_errors_total", operation="root_of", kind="revert") == reverts + 1

    # chain_facts reads rootOf of an index not anchored yet and handles the revert: nothing failed
    query = AnchorQuery(chain_id=client.chain_id, contract=client.anchor_address, index=99, device="none", timestamp=0, tx_hash="0x" + "00" * 32)
    assert client.reader.chain_facts(query).root is None
    assert sample("pledgeledger_chain_errors_total", operation="root_of", kind="revert") == reverts + 1
    assert sample("pledgeledger_chain_errors_total", operation="chain_facts", kind="revert") == 0

    dead = ChainReader(Web3(Web3.HTTPProvider(f"http://127.0.0.1:{free_port()}", request_kwargs={"timeout": 2})))
    unavailable = sample("pledgeledger_chain_errors_total", operation="head", kind="unavailable")
    with pytest.raises(ChainUnavailable):
        dead.head(client.anchor_address)
    assert sample("pledgeledger_chain_errors_total", operation="head", kind="unavailable") == unavailable + 1


def test_anchoring_records_latency_and_readings(ledger_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ledger = ledger_factory(f"sqlite:///{tmp_path / 'l.sqlite3'}")
    operator = ledger.authenticate(ledger.create_organisation(name="W", role="operator").api_key)
    device = SimulatedDevice("wh1-scale-latency", "load_cell")
    ledger.register_device(operator, device.registration())
    accepted = sample("pledgeledger_readings_total", status="accepted", code="")
    replayed = sample("pledgeledger_readings_total", status="rejected", code="replayed")
    results = ledger.ingest_many([device.reading({"weight_kg": 1.0}), device.reading({"weight_kg": 3.0})])
    assert [r.status for r in results] == ["accepted", "accepted"]
    with pytest.raises(Conflict):
        ledger.ingest(device.reading({"weight_kg": 2.0}, seq_step=0))  # the last seq again, other data: a replay
    assert sample("pledgeledger_readings_total", status="accepted", code="") == accepted + 2
    assert sample("pledgeledger_readings_total", status="rejected", code="replayed") == replayed + 1

    count = sample("pledgeledger_anchor_latency_seconds_count")
    anchored = sample("pledgeledger_anchored_readings_total")
    ledger.anchorer.tick()
    assert sample("pledgeledger_anchor_latency_seconds_count") == count + 1
    assert sample("pledgeledger_anchored_readings_total") == anchored + 2
