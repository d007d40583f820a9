"""Valuation and margin calls (ledger.valuation) on a real chain and both databases: a price drop opens a
margin call on chain within one pass, cures by goods and by cash close it, an uncured call ends in default
on chain, and stale, unsigned, wrongly signed or replayed prices are refused (fraud case 8)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from sqlalchemy import select

from attestation.encoding import b64url_encode, canonical_json
from attestation.errors import AttestationError
from attestation.documents import document_hash
from ledger import actions, valuation, webhooks
from ledger.chain.collateral import Role, Status, identifier_hash, sign_typed_data, unit_code
from ledger.errors import Conflict, Invalid
from ledger.store.models import Action, Lot, MarginCall, Organisation, WebhookDelivery

TERMS = {"loan_value": "20000.00", "currency": "CNY", "commodity": "steel_hrc", "haircut": "0.70",
         "warning_ltv": "0.80", "disposal_ltv": "0.90", "min_quantity": 6000, "cure_period_s": 86400}  # fmt: skip
FEED_KEY = ed25519.Ed25519PrivateKey.from_private_bytes(keccak(text="pledgeledger test price feed"))
FEED_PEM = FEED_KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _key(name: str) -> LocalAccount:
    return Account.from_key(keccak(text=f"pledgeledger valuation test {name}"))


def price_point(price: str, *, ts: datetime | None = None, key: ed25519.Ed25519PrivateKey = FEED_KEY,
                feed: str = "mysteel-hrc", unit: str = "t") -> dict[str, Any]:  # fmt: skip
    ts = ts or datetime.now(timezone.utc)
    payload = {"feed": feed, "commodity": "steel_hrc", "price": price, "currency": "CNY", "unit": unit,
               "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"}  # fmt: skip
    return {"payload": payload, "alg": "EdDSA", "sig": b64url_encode(key.sign(canonical_json(payload)))}


@dataclass
class Pledged:
    """A lot of 10,000 kg of steel pledged to a bank with :data:`TERMS`, and a configured price feed."""

    ledger: Any
    keys: dict[str, LocalAccount]
    orgs: dict[str, Any]  # name -> NewOrganisation (with api_key)
    lot: str = "EWR-VAL-1"

    @property
    def chain_lot(self) -> bytes:
        return identifier_hash(self.lot)

    def price(self, price: str, **kw: Any) -> dict[str, Any]:
        view, _ = self.ledger.submit_price(price_point(price, **kw))
        return view

    def run(self, session, type_: str, primary: str, *signers: str, params: dict | None = None, approver: str | None = None,
            **fields: Any):  # type: ignore[no-untyped-def]
        lot = session.get(Lot, self.lot)
        action = actions.create_action(
            session, self.ledger.collateral, lot=lot, type=type_, primary_type=primary, proposed_by=None, params=params,
            approver=approver,
            fields={"lot": self.chain_lot, **fields}, deadline=datetime.now(timezone.utc) + timedelta(hours=1),
        )  # fmt: skip
        typed = json.loads(action.typed_data)
        for name in signers:
            actions.add_signature(session, action, sign_typed_data(self.keys[name].key, typed))
        done = actions.submit(session, self.ledger.collateral, action, lot)
        assert done.status == "confirmed", done.error_message
        return done

    def call(self) -> MarginCall | None:
        with self.ledger.db.session() as session:
            return session.scalars(select(MarginCall).where(MarginCall.lot_id == self.lot).order_by(MarginCall.opened_at.desc())).first()

    def events(self, org: str) -> list[tuple[str, dict]]:
        with self.ledger.db.session() as session:
            rows = session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.created_at))
            hooks = {h["id"] for h in webhooks.list_webhooks(session, session.get(Organisation, self.orgs[org].id))}
            return [(d.event, json.loads(d.body)["data"]) for d in rows if d.webhook_id in hooks]


def pledge_world(ledger: Any, *, hook_url: str = "http://127.0.0.1:9/hooks") -> Pledged:
    """Organisations on chain, the lot registered, verified and pledged with :data:`TERMS`, the feed configured,
    and every party subscribed to the margin call events."""
    collateral = ledger.collateral
    keys = {name: _key(name) for name in ("warehouse", "enterprise", "bank")}
    roles = {"warehouse": ("operator", Role.WAREHOUSE), "enterprise": ("enterprise", Role.ENTERPRISE), "bank": ("bank", Role.BANK)}
    deadline = int((datetime.now(timezone.utc) + timedelta(hours=1)).timestamp())
    orgs = {}
    for name, (role, chain_role) in roles.items():
        typed = collateral.prepare("RegisterOrganisation", deadline=deadline, role=int(chain_role), signer=keys[name].address, name=name)
        collateral.submit(typed, [sign_typed_data(keys[name].key, typed)])
        orgs[name] = ledger.create_organisation(name=name, role=role, signer=keys[name].address)
        with ledger.db.session() as session:
            session.get(Organisation, orgs[name].id).chain_org = collateral.organisation_of(keys[name].address)
            webhooks.create_webhook(session, session.get(Organisation, orgs[name].id), url=hook_url,
                                    events=["margin_call.opened", "margin_call.cured", "lot.defaulted"])  # fmt: skip
    world = Pledged(ledger, keys, orgs)
    chain_org = {name: collateral.organisation_of(keys[name].address) for name in keys}
    with ledger.db.session() as session:
        session.add(Lot(id=world.lot, chain_lot="0x" + world.chain_lot.hex(), warehouse_id=orgs["warehouse"].id,
                        enterprise_id=orgs["enterprise"].id, quantity=10_000, unit="kg", goods="{}", goods_hash="0x" + "11" * 32,
                        terms=json.dumps(TERMS), terms_hash="0x" + document_hash(TERMS).hex()))  # fmt: skip
        session.flush()
        world.run(session, "register", "RegisterLot", "warehouse", warehouse=chain_org["warehouse"], enterprise=chain_org["enterprise"],
                  goods=b"\x11" * 32, quantity=10_000, unit=unit_code("kg"), devices=[identifier_hash("scale-VAL-1")])  # fmt: skip
        world.run(session, "verify", "VerifyLot", "warehouse", "enterprise", assay=b"\x22" * 32, quantity=10_000)
        world.run(session, "pledge", "Pledge", "enterprise", "bank", "warehouse", bank=chain_org["bank"],
                  registration=identifier_hash("REG-VAL-1"), terms=document_hash(TERMS), quantity=10_000, minQuantity=6_000)  # fmt: skip
        valuation.add_feed(session, name="mysteel-hrc", alg="EdDSA", public_key=FEED_PEM, commodities=["steel_hrc"])
    return world


@pytest.fixture
def world(db_url, ledger_factory) -> Pledged:  # type: ignore[no-untyped-def]
    return pledge_world(ledger_factory(db_url))


def advance_chain(ledger: Any, seconds: int) -> int:
    """Move the embedded chain's clock on by ``seconds``; returns the new time."""
    client = ledger.chain.client
    target = client.reader.block_timestamp(client.block_number()) + seconds
    client.reader.w3.provider.make_request("testing_timeTravel", [target])
    client.reader.w3.provider.make_request("evm_mine", [])
    return target


def test_price_drop_opens_a_margin_call_cured_by_goods_then_by_cash(world: Pledged) -> None:
    ledger, valuer = world.ledger, world.ledger.valuer
    world.price("3650.00")  # 10 t × 3,650 × 0.70 = 25,550; LTV 0.783: within terms
    assert valuer.run_once()["opened"] == 0
    assert ledger.collateral.lot(world.chain_lot).status == Status.PLEDGED

    drop = world.price("3500.00")  # 24,500; LTV 0.816 > 0.80: a margin call, on chain, in this one pass
    before = datetime.now(timezone.utc)
    assert valuer.run_once()["opened"] == 1
    on_chain = ledger.collateral.lot(world.chain_lot)
    assert on_chain.status == Status.MARGIN_CALL
    assert on_chain.cure_by >= int(before.timestamp()) + TERMS["cure_period_s"]
    call = world.call()
    assert (call.status, call.level, call.ltv, call.reason) == ("open", "warning", "0.816327", "0x" + drop["id"])
    assert int(call.cure_by.replace(tzinfo=timezone.utc).timestamp()) == on_chain.cure_by
    [(event, data)] = world.events("bank")
    assert event == "margin_call.opened" and data["lot"] == world.lot and data["ltv"] == "0.816327"
    assert data["price"]["id"] == drop["id"] and data["tx_hash"].startswith("0x")
    assert [e for e, _ in world.events("enterprise")] == ["margin_call.opened"]
    assert valuer.run_once()["opened"] == 0  # one call at a time

    with ledger.db.session() as session:  # the warehouse confirms 2,000 kg more goods
        world.run(session, "cure_with_goods", "CureWithGoods", "warehouse", goods=b"\x33" * 32, assay=b"\x44" * 32, quantityIn=2_000)
    assert valuer.run_once()["cured"] == 1  # 12 t at 3,500: LTV 0.680
    call = world.call()
    assert (call.status, call.cured_by) == ("cured", "goods")
    assert world.events("bank")[-1][0] == "margin_call.cured"

    world.price("2300.00")  # 12 t × 2,300 × 0.70 = 19,320 < 20,000: above the disposal line
    assert valuer.run_once()["opened"] == 1
    call = world.call()
    assert (call.level, call.disposal) == ("disposal", True)
    with ledger.db.session() as session:  # a Default waits for the bank's signature
        proposal = session.get(Action, call.default_proposal_id)
        assert (proposal.primary_type, proposal.status) == ("Default", "collecting")
        assert json.loads(proposal.required)[0]["role"] == "bank"
    document, payment = valuation.cash_payment(amount="8000.00", currency="CNY", reference="transfer 2026-118")
    with ledger.db.session() as session:  # the bank confirms 8,000 CNY repaid
        world.run(session, "cure_with_cash", "CureWithCash", "bank", params=document, payment=payment)
    assert valuer.run_once()["cured"] == 1
    call = world.call()
    assert (call.status, call.cured_by, call.paid_in) == ("cured", "cash", "8000.00")
    with ledger.db.session() as session:  # the bank's default proposal is withdrawn with the call
        assert session.get(Action, call.default_proposal_id).status == "expired"
    # 12,000 outstanding / 19,320: LTV 0.621, so no new call at the same price
    assert valuer.run_once()["opened"] == 0
    with ledger.db.session() as session:
        view = valuation.lot_valuation(session, session.get(Organisation, world.orgs["bank"].id), world.lot,
                                       now=datetime.now(timezone.utc), max_age_s=86400)  # fmt: skip
    assert view["valuation"]["outstanding"] == "12000.00" and view["valuation"]["level"] == "ok"


def test_uncured_margin_call_moves_the_lot_to_default_on_chain(world: Pledged) -> None:
    """Fraud case 8: a margin call not cured by its deadline ends in default on chain (no bank signature)."""
    ledger, valuer = world.ledger, world.ledger.valuer
    world.price("3500.00")
    assert valuer.run_once()["opened"] == 1
    call = world.call()
    cure_by = call.cure_by.replace(tzinfo=timezone.utc)

    assert valuer.run_once(now=cure_by - timedelta(seconds=5))["defaulted"] == 0  # still inside the cure period
    assert ledger.collateral.lot(world.chain_lot).status == Status.MARGIN_CALL

    advance_chain(ledger, int((cure_by - datetime.now(timezone.utc)).total_seconds()) + 60)
    assert valuer.run_once(now=cure_by + timedelta(seconds=60))["defaulted"] == 1
    assert ledger.collateral.lot(world.chain_lot).status == Status.DEFAULTED
    call = world.call()
    assert call.status == "defaulted" and call.default_action_id is not None
    with ledger.db.session() as session:
        default = session.get(Action, call.default_action_id)
        assert (default.primary_type, default.status, default.proposed_by) == ("DefaultUncured", "confirmed", None)
        assert session.get(Lot, world.lot).status == "defaulted"
    event, data = world.events("bank")[-1]
    assert event == "lot.defaulted" and data["reason"] == "margin_call_uncured" and data["tx_hash"] == default.tx_hash


def test_stale_unsigned_wrongly_signed_and_replayed_prices_are_refused(world: Pledged) -> None:
    """Fraud case 8: no decision on a stale price, and no price from anyone but the configured feed."""
    ledger, valuer = world.ledger, world.ledger.valuer
    now = datetime.now(timezone.utc)

    def refused(envelope: dict) -> str:
        with pytest.raises((AttestationError, Invalid, Conflict)) as exc:
            ledger.submit_price(envelope)
        return exc.value.code

    assert refused(price_point("3000.00", ts=now - timedelta(days=2))) == "price_stale"
    unsigned = price_point("3000.00")
    del unsigned["sig"]
    assert refused(unsigned) == "price_signature_invalid"
    forger = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x09" * 32)
    assert refused(price_point("3000.00", key=forger)) == "price_signature_invalid"
    assert refused(price_point("3000.00", feed="someone-else")) == "unknown_feed"
    assert refused(price_point("3000.00", ts=now + timedelta(hours=1))) == "price_from_future"
    world.price("3650.00", ts=now - timedelta(minutes=10))
    # replaying an older (higher) price cannot lift the lot: points must move forward in time
    assert refused(price_point("3900.00", ts=now - timedelta(minutes=20))) == "price_regressed"
    assert valuer.run_once()["opened"] == 0 and world.call() is None

    # the only price turns stale: the lot is not valued and no call is made on it, however low it is
    world.price("1000.00", ts=now - timedelta(minutes=5))
    later = now + timedelta(days=1)
    counts = valuer.run_once(now=later)
    assert (counts["opened"], counts["valued"]) == (0, 0)
    assert ledger.collateral.lot(world.chain_lot).status == Status.PLEDGED
    with ledger.db.session() as session:
        view = valuation.lot_valuation(session, session.get(Organisation, world.orgs["bank"].id), world.lot, now=later, max_age_s=86400)
    assert view["state"] == "price_stale" and view["valuation"] is None


def test_a_margin_call_the_bank_raises_is_followed_too(world: Pledged) -> None:
    ledger, valuer = world.ledger, world.ledger.valuer
    world.price("3650.00")
    cure_by = int(datetime.now(timezone.utc).timestamp()) + 7200
    with ledger.db.session() as session:
        bank_call = world.run(session, "margin_call", "MarginCall", "bank", approver=world.keys["bank"].address,
                              reason=b"\x55" * 32, cureBy=cure_by)  # fmt: skip
    assert valuer.run_once()["opened"] == 1  # adopted from the chain: LTV alone would not have called it
    call = world.call()
    assert (call.status, call.level, call.action_id, call.reason) == ("open", "bank", bank_call.id, "0x" + "55" * 32)
    assert int(call.cure_by.replace(tzinfo=timezone.utc).timestamp()) == cure_by
    assert world.events("bank")[-1][0] == "margin_call.opened"
    with ledger.db.session() as session:  # a payment document without an amount: cured, nothing deducted
        world.run(session, "cure_with_cash", "CureWithCash", "bank", payment=b"\x66" * 32)
    assert valuer.run_once()["cured"] == 1
    assert (world.call().status, world.call().cured_by, world.call().paid_in) == ("cured", "cash", None)
