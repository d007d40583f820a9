"""Lot transitions as actions (ledger.actions): signatures checked on arrival, submitted once complete,
the contract's refusal recorded with its reason, the system's own freeze signed by the supervision key."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from ledger import actions
from ledger.chain.collateral import Role, Status, identifier_hash, sign_typed_data, unit_code
from ledger.errors import Conflict, Invalid
from ledger.store.models import Lot, Organisation


def key(name: str) -> LocalAccount:
    return Account.from_key(keccak(text=f"pledgeledger actions test {name}"))


@dataclass
class World:
    ledger: object
    keys: dict[str, LocalAccount]
    orgs: dict[str, Organisation]


@pytest.fixture
def world(db_url, ledger_factory) -> World:  # type: ignore[no-untyped-def]
    ledger = ledger_factory(db_url)
    collateral = ledger.collateral
    keys = {name: key(name) for name in ("warehouse", "enterprise", "bank")}
    roles = {"warehouse": ("operator", Role.WAREHOUSE), "enterprise": ("enterprise", Role.ENTERPRISE), "bank": ("bank", Role.BANK)}
    deadline = int((datetime.now(timezone.utc) + timedelta(hours=1)).timestamp())
    orgs = {}
    for name, (role, chain_role) in roles.items():
        typed = collateral.prepare("RegisterOrganisation", deadline=deadline, role=int(chain_role), signer=keys[name].address, name=name)
        collateral.submit(typed, [sign_typed_data(keys[name].key, typed)])
        new = ledger.create_organisation(name=name, role=role, signer=keys[name].address)
        with ledger.db.session() as session:
            org = session.get(Organisation, new.id)
            org.chain_org = collateral.organisation_of(keys[name].address)
            orgs[name] = org
    return World(ledger, keys, orgs)


def _run(world: World, session, lot: Lot, type_: str, primary: str, *signers: str, **fields) -> object:  # type: ignore[no-untyped-def]
    action = actions.create_action(
        session, world.ledger.collateral, lot=lot, type=type_, primary_type=primary, fields={"lot": bytes.fromhex(lot.chain_lot[2:]), **fields},
        deadline=datetime.now(timezone.utc) + timedelta(hours=1), proposed_by=None,
    )  # fmt: skip
    typed = json.loads(action.typed_data)
    for name in signers:
        actions.add_signature(session, action, sign_typed_data(world.keys[name].key, typed))
    return actions.submit(session, world.ledger.collateral, action, lot)


def test_pledge_by_three_signatures_then_system_freeze(world: World) -> None:
    ledger, orgs = world.ledger, world.orgs
    with ledger.db.session() as session:
        lot = Lot(id="EWR-T-1", chain_lot="0x" + identifier_hash("EWR-T-1").hex(), warehouse_id=orgs["warehouse"].id,
                  enterprise_id=orgs["enterprise"].id, quantity=10_000, unit="kg", goods="{}", goods_hash="0x" + "11" * 32)  # fmt: skip
        session.add(lot)
        session.flush()
        done = _run(world, session, lot, "register", "RegisterLot", "warehouse", warehouse=orgs["warehouse"].chain_org,
                    enterprise=orgs["enterprise"].chain_org, goods=b"\x11" * 32, quantity=10_000, unit=unit_code("kg"),
                    devices=[identifier_hash("scale-T-1")])  # fmt: skip
        assert done.status == "confirmed" and lot.status == "inbound"
        _run(world, session, lot, "verify", "VerifyLot", "warehouse", "enterprise", assay=b"\x22" * 32, quantity=10_000)

        pledge = actions.create_action(
            session, ledger.collateral, lot=lot, type="pledge", primary_type="Pledge", proposed_by=orgs["enterprise"],
            deadline=datetime.now(timezone.utc) + timedelta(hours=1),
            fields={"lot": identifier_hash("EWR-T-1"), "bank": orgs["bank"].chain_org, "registration": identifier_hash("REG-1"),
                    "terms": b"\x33" * 32, "quantity": 10_000, "minQuantity": 6_000},
        )  # fmt: skip
        required = json.loads(pledge.required)
        assert [(p["role"], p["org"]) for p in required] == [
            ("enterprise", orgs["enterprise"].id), ("bank", orgs["bank"].id), ("warehouse", orgs["warehouse"].id)
        ]
        typed = json.loads(pledge.typed_data)
        with pytest.raises(Invalid) as stranger:
            actions.add_signature(session, pledge, sign_typed_data(key("stranger").key, typed))
        assert stranger.value.code == "signer_not_required"
        actions.add_signature(session, pledge, sign_typed_data(world.keys["bank"].key, typed))
        with pytest.raises(Conflict) as twice:
            actions.add_signature(session, pledge, sign_typed_data(world.keys["bank"].key, typed))
        assert twice.value.code == "already_signed"
        with pytest.raises(Conflict):
            actions.submit(session, ledger.collateral, pledge, lot)  # two signatures missing: nothing sent
        assert ledger.collateral.lot(identifier_hash("EWR-T-1")).status == Status.VERIFIED
        for name in ("warehouse", "enterprise"):
            actions.add_signature(session, pledge, sign_typed_data(world.keys[name].key, typed))
        assert actions.submit(session, ledger.collateral, pledge, lot).status == "confirmed"
        assert (lot.status, lot.bank_id) == ("pledged", orgs["bank"].id)

        freeze = actions.system_action(session, ledger.collateral, ledger.chain.client.account, lot=lot, type="freeze",
                                       primary_type="Freeze", fields={"lot": identifier_hash("EWR-T-1"), "reason": b"\x44" * 32})  # fmt: skip
        assert freeze.status == "confirmed" and freeze.proposed_by is None and lot.status == "frozen"
        again = actions.system_action(session, ledger.collateral, ledger.chain.client.account, lot=lot, type="freeze",
                                      primary_type="Freeze", fields={"lot": identifier_hash("EWR-T-1"), "reason": b"\x45" * 32})  # fmt: skip
        assert again.status == "failed" and again.error_code == "CollateralRegistryInvalidStatus"
        assert again.tx_hash is None  # refused by the gas estimate: nothing sent


def test_expired_action_takes_no_signature(world: World) -> None:
    ledger, orgs = world.ledger, world.orgs
    with ledger.db.session() as session:
        lot = Lot(id="EWR-T-2", chain_lot="0x" + identifier_hash("EWR-T-2").hex(), warehouse_id=orgs["warehouse"].id,
                  enterprise_id=orgs["enterprise"].id, quantity=5, unit="kg", goods="{}", goods_hash="0x" + "11" * 32)  # fmt: skip
        session.add(lot)
        session.flush()
        action = actions.create_action(
            session, ledger.collateral, lot=lot, type="register", primary_type="RegisterLot", proposed_by=orgs["warehouse"],
            deadline=datetime.now(timezone.utc) + timedelta(seconds=60),
            fields={"lot": identifier_hash("EWR-T-2"), "warehouse": orgs["warehouse"].chain_org, "enterprise": orgs["enterprise"].chain_org,
                    "goods": b"\x11" * 32, "quantity": 5, "unit": unit_code("kg"), "devices": [identifier_hash("scale-T-2")]},
        )  # fmt: skip
        signature = sign_typed_data(world.keys["warehouse"].key, json.loads(action.typed_data))
        with pytest.raises(Conflict) as late:
            actions.add_signature(session, action, signature, now=datetime.now(timezone.utc) + timedelta(seconds=61))
        assert late.value.code == "action_expired" and action.status == "expired"
