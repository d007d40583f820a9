"""Lots and their actions through the Ledger (ledger.lots, ledger.org_chain, ledger.submission): organisations
register their own signer on chain, human params become typed data, a complete action is submitted once,
and a crash at each step of the submission is recovered on restart without sending anything twice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from attestation.documents import document_hash, identifier_hash
from ledger import submission
from ledger.chain.collateral import Status, sign_typed_data
from ledger.errors import Conflict, Forbidden, Invalid, NotFound
from ledger.simulator import SimulatedDevice
from ledger.store.models import Action, Organisation

GOODS = {"commodity": "copper cathode", "grade": "A", "bundles": 40}
ASSAY = {"lab": "SGS", "cu_pct": 99.99, "certificate": "SGS-2026-118"}
TERMS = {"loan_value": "6000000.00", "currency": "CNY", "commodity": "copper", "haircut": "0.30", "warning_ltv": "0.70",
         "disposal_ltv": "0.80", "min_quantity": 6_000, "cure_period_s": 86_400}  # fmt: skip


def key(name: str) -> LocalAccount:
    return Account.from_key(keccak(text=f"pledgeledger lots test {name}"))


@dataclass
class World:
    ledger: object
    keys: dict[str, LocalAccount]
    orgs: dict[str, Organisation]
    api_keys: dict[str, str]

    def sign(self, action: dict, *names: str) -> dict:
        view = action
        for name in names:
            signature = "0x" + sign_typed_data(self.keys[name].key, action["typed_data"]).hex()
            view = self.ledger.add_action_signature(self.orgs[name], action["id"], signature)
        return view

    def run(self, proposer: str, lot: str, type_: str, params: dict, *signers: str) -> dict:
        action = self.ledger.propose_action(self.orgs[proposer], lot, {"type": type_, "params": params})
        return self.sign(action, *signers)


ROLES = {"warehouse": "operator", "enterprise": "enterprise", "bank": "bank", "other_bank": "bank", "insurer": "insurer", "auditor": "auditor"}


def make_world(ledger, names=tuple(ROLES), roles=ROLES, aliases=None) -> World:  # type: ignore[no-untyped-def]
    """Organisations whose keys the test holds, each registered on chain by signing its own registration;
    ``aliases`` also file some under the names the helpers use (``warehouse``, ``enterprise``)."""
    keys, orgs, api_keys = {}, {}, {}
    for name in names:
        keys[name] = key(name)
        new = ledger.create_organisation(name=name, role=roles[name], signer=keys[name].address)
        api_keys[name] = new.api_key
        org = ledger.authenticate(new.api_key)
        mine = ledger.organisation(org)
        assert mine["chain_org"] is None and mine["registration"]["status"] == "collecting"
        assert mine["registration"]["typed_data"]["primaryType"] == "RegisterOrganisation"
        signature = sign_typed_data(keys[name].key, mine["registration"]["typed_data"])  # its own key, its own wallet
        done = ledger.add_action_signature(org, mine["registration"]["id"], "0x" + signature.hex())
        assert done["status"] == "confirmed", done
        orgs[name] = ledger.authenticate(new.api_key)
        assert orgs[name].chain_org == ledger.collateral.organisation_of(keys[name].address) > 0
    for alias, name in (aliases or {}).items():
        keys[alias], orgs[alias], api_keys[alias] = keys[name], orgs[name], api_keys[name]
    return World(ledger, keys, orgs, api_keys)


@pytest.fixture
def world(db_url, ledger_factory) -> World:  # type: ignore[no-untyped-def]
    return make_world(ledger_factory(db_url))


def new_lot(world: World, lot_id: str, device_id: str, **extra: object) -> dict:
    device = SimulatedDevice(device_id, "load_cell")
    world.ledger.register_device(world.orgs["warehouse"], device.registration())
    body = {"id": lot_id, "enterprise": "enterprise", "goods": GOODS, "quantity": 10_000, "unit": "kg", "devices": [device_id], **extra}
    made = world.ledger.register_lot(world.orgs["warehouse"], body)
    assert made["lot"]["status"] == "proposed" and made["action"]["type"] == "register"
    return world.sign(made["action"], "warehouse")


def test_lifecycle_with_human_params(world: World) -> None:
    ledger, orgs = world.ledger, world.orgs
    registered = new_lot(world, "EWR-L-1", "lots-scale-1", insurer="insurer")
    assert registered["status"] == "confirmed", registered
    verified = world.run("enterprise", "EWR-L-1", "verify", {"quantity": 10_000, "assay": ASSAY}, "warehouse", "enterprise")
    assert verified["status"] == "confirmed"
    pledge = world.run("enterprise", "EWR-L-1", "pledge",
                       {"bank": "bank", "registration": "PBOC-2026-77", "terms": TERMS, "min_quantity": 6_000},
                       "enterprise", "bank", "warehouse")  # fmt: skip
    assert pledge["status"] == "confirmed", pledge
    lot = ledger.lot(orgs["bank"], "EWR-L-1")
    assert lot["status"] == "pledged" and lot["bank"]["id"] == orgs["bank"].id
    assert lot["terms"] == TERMS and lot["terms_hash"] == "0x" + document_hash(TERMS).hex()
    assert lot["assay"] == ASSAY and lot["chain"]["documents_match"] == {"goods": True, "assay": True}
    assert ledger.collateral.lot_of_registration(identifier_hash("PBOC-2026-77")) == identifier_hash("EWR-L-1")

    world.run("bank", "EWR-L-1", "partial_release", {"quantity": 1_000}, "bank", "warehouse")
    assert ledger.lot(orgs["warehouse"], "EWR-L-1")["chain"]["quantity"] == 9_000
    world.run("enterprise", "EWR-L-1", "substitute_in", {"goods": {"commodity": "copper cathode", "grade": "A+"}, "assay": ASSAY,
              "quantity_in": 500, "quantity_out": 500}, "enterprise", "warehouse")  # fmt: skip
    out = world.run("bank", "EWR-L-1", "substitute_out", {}, "bank", "warehouse")
    assert out["status"] == "confirmed" and ledger.lot(orgs["bank"], "EWR-L-1")["goods"]["grade"] == "A+"
    frozen = world.run("warehouse", "EWR-L-1", "freeze", {"reason": {"alert": "weight drop", "kg": 300}}, "warehouse")
    assert frozen["status"] == "confirmed" and ledger.lot(orgs["bank"], "EWR-L-1")["status"] == "frozen"
    world.run("bank", "EWR-L-1", "unfreeze", {}, "bank", "warehouse")
    world.run("bank", "EWR-L-1", "release", {}, "bank", "warehouse")
    closed = world.run("warehouse", "EWR-L-1", "close", {}, "bank", "warehouse")
    assert closed["primary_type"] == "ClosePledged" and closed["status"] == "confirmed"
    assert ledger.lot(orgs["auditor"], "EWR-L-1")["status"] == "closed"

    timeline = ledger.lot_timeline(orgs["auditor"], "EWR-L-1")
    events = [e["event"] for e in timeline["entries"] if e["kind"] == "chain_event"]
    assert events == ["LotRegistered", "LotVerified", "LotPledged", "LotPartiallyReleased", "SubstitutionGoodsVerified",
                      "SubstitutionCompleted", "LotFrozen", "LotUnfrozen", "LotReleased", "LotClosed"]  # fmt: skip
    pledged = next(e for e in timeline["entries"] if e.get("event") == "LotPledged")
    assert pledged["tx_hash"] == pledge["tx_hash"] and pledged["args"]["registration"] == "0x" + identifier_hash("PBOC-2026-77").hex()
    assert len([e for e in timeline["entries"] if e["kind"] == "action"]) == 10


def test_scope_and_refusals_before_the_chain(world: World) -> None:
    ledger, orgs = world.ledger, world.orgs
    new_lot(world, "EWR-L-2", "lots-scale-2")
    world.run("enterprise", "EWR-L-2", "verify", {"quantity": 10_000, "assay": ASSAY}, "warehouse", "enterprise")
    with pytest.raises(NotFound):
        ledger.lot(orgs["bank"], "EWR-L-2")  # not pledged to it (yet)
    with pytest.raises(NotFound):
        ledger.propose_action(orgs["other_bank"], "EWR-L-2", {"type": "release", "params": {}})
    with pytest.raises(Forbidden):
        ledger.propose_action(orgs["auditor"], "EWR-L-2", {"type": "freeze", "params": {"reason": "x"}})
    with pytest.raises(Invalid) as bad:
        ledger.propose_action(orgs["enterprise"], "EWR-L-2", {"type": "pledge", "params": {"bank": "bank", "registration": "R", "terms": {**TERMS, "warning_ltv": "0.90"}}})
    assert bad.value.code == "invalid_terms" and "disposal_ltv" in bad.value.message
    with pytest.raises(Invalid):
        ledger.propose_action(orgs["enterprise"], "EWR-L-2", {"type": "teleport", "params": {}})
    with pytest.raises(Conflict) as sub:
        ledger.propose_action(orgs["bank"] if False else orgs["warehouse"], "EWR-L-2", {"type": "substitute_out", "params": {}})
    assert sub.value.code == "no_substitution"

    pledge = ledger.propose_action(orgs["enterprise"], "EWR-L-2", {"type": "pledge", "params": {
        "bank": "bank", "registration": "PBOC-L-2", "terms": TERMS, "min_quantity": 6_000}})  # fmt: skip
    assert ledger.action(orgs["bank"], pledge["id"])["status"] == "collecting"  # named in it: may read and sign it
    with pytest.raises(NotFound):
        ledger.action(orgs["other_bank"], pledge["id"])
    foreign = "0x" + sign_typed_data(world.keys["other_bank"].key, pledge["typed_data"]).hex()
    with pytest.raises(Invalid) as stranger:
        ledger.add_action_signature(orgs["enterprise"], pledge["id"], foreign)
    assert stranger.value.code == "signer_not_required"
    with pytest.raises(Invalid):
        ledger.add_action_signature(orgs["enterprise"], pledge["id"], "0x1234")


def _complete_without_submitting(world: World, lot: str, type_: str, params: dict, *signers: str) -> str:
    """An action whose every signature is stored, as if the process died right after the last one."""
    ledger = world.ledger
    action = ledger.propose_action(world.orgs[signers[0]], lot, {"type": type_, "params": params})
    with ledger.db.session() as session:
        from ledger import actions

        row = session.get(Action, action["id"])
        for name in signers:
            actions.add_signature(session, row, sign_typed_data(world.keys[name].key, action["typed_data"]))
    return action["id"]


def _relayer_nonce(world: World) -> int:
    client = world.ledger.chain.client
    return client.w3.eth.get_transaction_count(client.address)


def test_crash_after_the_last_signature_is_recovered(world: World) -> None:
    ledger = world.ledger
    new_lot(world, "EWR-L-3", "lots-scale-3")
    action_id = _complete_without_submitting(world, "EWR-L-3", "verify", {"quantity": 10_000, "assay": ASSAY}, "warehouse", "enterprise")
    assert ledger.action(world.orgs["warehouse"], action_id)["status"] == "collecting"
    before = _relayer_nonce(world)
    assert ledger.reconcile_actions() == 1
    assert ledger.action(world.orgs["warehouse"], action_id)["status"] == "confirmed"
    assert ledger.reconcile_actions() == 0 and _relayer_nonce(world) == before + 1


def test_crash_after_recording_before_the_receipt_sends_nothing_twice(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = world.ledger
    new_lot(world, "EWR-L-4", "lots-scale-4")
    action_id = _complete_without_submitting(world, "EWR-L-4", "verify", {"quantity": 10_000, "assay": ASSAY}, "warehouse", "enterprise")

    class Crash(BaseException):
        pass

    def crash(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise Crash  # the process dies between the broadcast and the receipt

    monkeypatch.setattr(ledger.collateral, "outcome", crash)
    before = _relayer_nonce(world)
    with pytest.raises(Crash):
        submission.submit_complete(ledger.db, ledger.collateral, action_id)
    monkeypatch.undo()
    state = ledger.action(world.orgs["warehouse"], action_id)
    assert state["status"] == "submitted" and state["tx_hash"] is not None
    assert ledger.reconcile_actions() == 1  # found mined: its own transaction
    state = ledger.action(world.orgs["warehouse"], action_id)
    assert state["status"] == "confirmed" and _relayer_nonce(world) == before + 1
    assert ledger.collateral.lot(identifier_hash("EWR-L-4")).status == Status.VERIFIED


def test_crash_between_recording_and_broadcast_sends_the_same_transaction(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = world.ledger
    new_lot(world, "EWR-L-5", "lots-scale-5")
    action_id = _complete_without_submitting(world, "EWR-L-5", "verify", {"quantity": 10_000, "assay": ASSAY}, "warehouse", "enterprise")
    client = ledger.chain.client

    class Crash(BaseException):
        pass

    def crash(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise Crash

    monkeypatch.setattr(client, "_broadcast", crash)
    with pytest.raises(Crash):
        submission.submit_complete(ledger.db, ledger.collateral, action_id)
    monkeypatch.undo()
    client.resync_nonce()
    recorded = ledger.action(world.orgs["warehouse"], action_id)["tx_hash"]
    assert client.transaction_status(recorded) == "unknown"
    ledger.reconcile_actions()  # broadcasts the recorded raw transaction
    for _ in range(3):
        ledger.reconcile_actions()
    state = ledger.action(world.orgs["warehouse"], action_id)
    assert state["status"] == "confirmed" and state["tx_hash"] == recorded


def test_claimed_but_never_sent_is_sent_after_the_lease(world: World) -> None:
    ledger = world.ledger
    new_lot(world, "EWR-L-6", "lots-scale-6")
    action_id = _complete_without_submitting(world, "EWR-L-6", "verify", {"quantity": 10_000, "assay": ASSAY}, "warehouse", "enterprise")
    assert submission._claim(ledger.db, action_id, "collecting", None) is not None  # then the process died
    assert submission.reconcile(ledger.db, ledger.collateral) == 0  # another sender may be at work: wait
    later = datetime.now(timezone.utc) + submission.CLAIM_LEASE + timedelta(seconds=1)
    assert submission.reconcile(ledger.db, ledger.collateral, now=later) == 1
    assert ledger.action(world.orgs["warehouse"], action_id)["status"] == "confirmed"


def test_a_stale_second_proposal_fails_with_the_contracts_reason(world: World) -> None:
    ledger = world.ledger
    new_lot(world, "EWR-L-7", "lots-scale-7")
    first = ledger.propose_action(world.orgs["enterprise"], "EWR-L-7", {"type": "verify", "params": {"quantity": 10_000, "assay": ASSAY}})
    second = ledger.propose_action(world.orgs["enterprise"], "EWR-L-7", {"type": "verify", "params": {"quantity": 9_999, "assay": ASSAY}})
    assert first["typed_data"]["message"]["warehouseNonce"] == second["typed_data"]["message"]["warehouseNonce"]
    assert world.sign(first, "warehouse", "enterprise")["status"] == "confirmed"
    before = _relayer_nonce(world)
    failed = world.sign(second, "warehouse", "enterprise")
    assert failed["status"] == "failed" and failed["error"]["code"] == "CollateralRegistryInvalidStatus"
    assert failed["tx_hash"] is None and _relayer_nonce(world) == before  # refused by the estimate: nothing sent


def test_expired_action_is_refused_and_marked(world: World) -> None:
    ledger = world.ledger
    new_lot(world, "EWR-L-8", "lots-scale-8")
    action = ledger.propose_action(world.orgs["enterprise"], "EWR-L-8", {"type": "verify", "params": {"quantity": 10_000, "assay": ASSAY}, "expires_in_s": 1})
    with ledger.db.session() as session:
        session.get(Action, action["id"]).deadline = datetime(2020, 1, 1)
    with pytest.raises(Conflict) as late:
        world.sign(action, "warehouse")
    assert late.value.code == "action_expired"
    assert ledger.action(world.orgs["warehouse"], action["id"])["status"] == "expired"


def test_affiliated_warehouse_cannot_register_the_enterprises_goods(world: World) -> None:
    ledger = world.ledger
    ledger.set_affiliation("warehouse", "enterprise", True)
    failed = new_lot(world, "EWR-L-9", "lots-scale-9")
    assert failed["status"] == "failed" and failed["error"]["code"] == "CollateralRegistryAffiliated"
    ledger.set_affiliation("warehouse", "enterprise", False)
    again = ledger.propose_action(world.orgs["warehouse"], "EWR-L-9", {"type": "register", "params": {}})
    assert world.sign(again, "warehouse")["status"] == "confirmed"


@pytest.mark.anvil
def test_restart_sends_the_recorded_transaction_the_dead_process_left_in_the_pool(tmp_path, ledger_factory, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A real restart on a managed anvil: the process recorded and broadcast the action's transaction, then
    died before it was mined (the node's pool died with it). The next start finds the recorded transaction
    unknown to the node, broadcasts the same raw bytes again, and confirms the action: one transaction."""
    from tests.ledger.chain.test_chain import need_anvil

    need_anvil()
    db_url, data_dir = f"sqlite:///{tmp_path / 'restart.sqlite3'}", tmp_path / "data"
    ledger = ledger_factory(db_url, chain="managed", data_dir=data_dir)
    world = make_world(ledger, names=("warehouse", "enterprise"))
    new_lot(world, "EWR-L-10", "lots-scale-10")
    action_id = _complete_without_submitting(world, "EWR-L-10", "verify", {"quantity": 10_000, "assay": ASSAY}, "warehouse", "enterprise")
    mined_before = _relayer_nonce(world)
    ledger.chain.w3.provider.make_request("evm_setAutomine", [False])

    class Crash(BaseException):
        pass

    def crash(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise Crash

    monkeypatch.setattr(ledger.collateral, "outcome", crash)
    with pytest.raises(Crash):
        submission.submit_complete(ledger.db, ledger.collateral, action_id)
    recorded = ledger.action(world.orgs["warehouse"], action_id)
    assert recorded["status"] == "submitted" and ledger.chain.client.transaction_status(recorded["tx_hash"]) == "pending"
    ledger.close()  # the process and its managed node are gone; the transaction was never mined

    restarted = ledger_factory(db_url, chain="managed", data_dir=data_dir, start_anchoring=True)
    assert restarted.chain.client.transaction_status(recorded["tx_hash"]) == "unknown"
    deadline = datetime.now(timezone.utc) + timedelta(seconds=30)
    while restarted.action(world.orgs["warehouse"], action_id)["status"] == "submitted":
        assert datetime.now(timezone.utc) < deadline, "the restarted service never finished the action"
        import time

        time.sleep(0.2)
    done = restarted.action(world.orgs["warehouse"], action_id)
    assert done["status"] == "confirmed" and done["tx_hash"] == recorded["tx_hash"]
    client = restarted.chain.client
    assert client.w3.eth.get_transaction_count(client.address) == mined_before + 1
    assert restarted.collateral.lot(identifier_hash("EWR-L-10")).status == Status.VERIFIED
