"""A warehouse, an enterprise, a bank and an insurer on a real chain, and lots driven through their
lifecycle with real EIP-712 signatures (``ledger.actions``), without the HTTP lots API."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from ledger import actions
from ledger.chain.collateral import Role, identifier_hash, sign_typed_data, unit_code
from ledger.simulator import SimulatedDevice
from ledger.store.models import Lot, LotDevice, Organisation

ROLES = {"warehouse": ("operator", Role.WAREHOUSE), "enterprise": ("enterprise", Role.ENTERPRISE), "bank": ("bank", Role.BANK)}


def key(name: str) -> LocalAccount:
    return Account.from_key(keccak(text=f"pledgeledger supervision test {name}"))


@dataclass
class World:
    ledger: Any
    keys: dict[str, LocalAccount]
    orgs: dict[str, Organisation]
    api_keys: dict[str, str]
    devices: dict[str, SimulatedDevice] = field(default_factory=dict)

    def org(self, name: str) -> Organisation:
        return self.orgs[name]

    def device(self, device_id: str, kind: str, lot: str | None) -> SimulatedDevice:
        """A simulated device registered by the warehouse (on chain too)."""
        device = SimulatedDevice(device_id, kind, lot=lot)
        self.ledger.register_device(self.orgs["warehouse"], device.registration())
        self.devices[device_id] = device
        return device

    def send(self, device: SimulatedDevice, data: dict[str, Any], **kw: Any) -> str:
        """Sign and ingest the device's next reading; returns its id."""
        result = self.ledger.ingest(device.reading(data, **kw))
        assert result.status == "accepted", result
        return result.id

    def act(self, lot_id: str, type_: str, primary: str, *signers: str, **fields: Any) -> Any:
        """Propose, sign by ``signers`` and submit one transition of the lot; returns the action."""
        with self.ledger.db.session() as session:
            lot = session.get(Lot, lot_id)
            action = actions.create_action(
                session, self.ledger.collateral, lot=lot, type=type_, primary_type=primary,
                fields={"lot": identifier_hash(lot_id), **fields},
                deadline=datetime.now(timezone.utc) + timedelta(hours=1), proposed_by=None,
            )  # fmt: skip
            typed = json.loads(action.typed_data)
            for name in signers:
                actions.add_signature(session, action, sign_typed_data(self.keys[name].key, typed))
            done = actions.submit(session, self.ledger.collateral, action, lot)
            assert done.status == "confirmed", (done.error_code, done.error_message)
            return done

    def lot(self, lot_id: str, *, quantity: int = 10_000, unit: str = "kg", devices: list[str] = (), insured: bool = False) -> None:
        """Register and verify a lot (inbound → verified) with its devices."""
        with self.ledger.db.session() as session:
            session.add(Lot(id=lot_id, chain_lot="0x" + identifier_hash(lot_id).hex(), warehouse_id=self.orgs["warehouse"].id,
                            enterprise_id=self.orgs["enterprise"].id, insurer_id=self.orgs["insurer"].id if insured else None,
                            quantity=quantity, unit=unit, goods="{}", goods_hash="0x" + "11" * 32))  # fmt: skip
            session.flush()
            for position, device_id in enumerate(devices):
                session.add(LotDevice(lot_id=lot_id, device_id=device_id, position=position))
        w, e = self.orgs["warehouse"], self.orgs["enterprise"]
        self.act(lot_id, "register", "RegisterLot", "warehouse", warehouse=w.chain_org, enterprise=e.chain_org, goods=b"\x11" * 32,
                 quantity=quantity, unit=unit_code(unit), devices=[identifier_hash(d) for d in devices])  # fmt: skip
        self.act(lot_id, "verify", "VerifyLot", "warehouse", "enterprise", assay=b"\x22" * 32, quantity=quantity)

    def pledge(self, lot_id: str, *, quantity: int = 10_000, min_quantity: int = 6_000) -> Any:
        return self.act(lot_id, "pledge", "Pledge", "enterprise", "bank", "warehouse", bank=self.orgs["bank"].chain_org,
                        registration=identifier_hash("REG-" + lot_id), terms=b"\x33" * 32, quantity=quantity,
                        minQuantity=min_quantity)  # fmt: skip

    def partial_release(self, lot_id: str, quantity: int) -> Any:
        return self.act(lot_id, "partial_release", "PartialRelease", "bank", "warehouse", quantity=quantity)

    def unfreeze(self, lot_id: str) -> Any:
        return self.act(lot_id, "unfreeze", "Unfreeze", "bank", "warehouse")


def fast_chain() -> str:
    """A managed anvil where npm installed one (five times faster than py-evm here), else py-evm."""
    from ledger.chain import find_anvil

    return "managed" if find_anvil() is not None else "embedded"


def make_world(ledger: Any) -> World:
    collateral = ledger.collateral
    keys = {name: key(name) for name in ROLES}
    deadline = int((datetime.now(timezone.utc) + timedelta(hours=1)).timestamp())
    orgs, api_keys = {}, {}
    for name, (role, chain_role) in ROLES.items():
        typed = collateral.prepare("RegisterOrganisation", deadline=deadline, role=int(chain_role), signer=keys[name].address, name=name)
        collateral.submit(typed, [sign_typed_data(keys[name].key, typed)])
        new = ledger.create_organisation(name=name, role=role, signer=keys[name].address)
        api_keys[name] = new.api_key
        with ledger.db.session() as session:
            org = session.get(Organisation, new.id)
            org.chain_org = collateral.organisation_of(keys[name].address)
            orgs[name] = org
    insurer = ledger.create_organisation(name="insurer", role="insurer")
    api_keys["insurer"] = insurer.api_key
    orgs["insurer"] = ledger.authenticate(insurer.api_key)
    auditor = ledger.create_organisation(name="auditor", role="auditor")
    api_keys["auditor"] = auditor.api_key
    orgs["auditor"] = ledger.authenticate(auditor.api_key)
    return World(ledger, keys, orgs, api_keys)
