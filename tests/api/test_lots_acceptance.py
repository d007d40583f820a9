"""Issue 5 acceptance, from outside: organisations whose signer keys only this test holds (signing typed data
with eth_account, never through the service) take a lot through its life over real HTTP, and every step is
read back from the chain with the contract's ABI alone. Refusals (a second pledge, a release signed by
another bank or by the enterprise alone, a reused nonce, an expired deadline) leave the chain unchanged and
name the contract's reason; the same forged signatures sent around the service are refused by the contract.

Runs on SQLite and PostgreSQL, on the embedded py-evm chain and on a managed anvil node.
"""

from __future__ import annotations

import ast
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3
from web3.exceptions import ContractCustomError

from api.main import create_app
from ledger.chain import COLLATERAL, load_artifact
from ledger.simulator import SimulatedDevice
from tests.conftest import LiveServer

pytestmark = pytest.mark.slow

TERMS = {"loan_value": "6000000.00", "currency": "CNY", "commodity": "copper_cathode", "haircut": "0.30",
         "warning_ltv": "0.70", "disposal_ltv": "0.85", "min_quantity": 6_000, "cure_period_s": 86_400}  # fmt: skip
ROLES = {"warehouse": "operator", "enterprise": "enterprise", "bank_a": "bank", "bank_b": "bank", "auditor": "auditor"}
STATUS = ["none", "inbound", "verified", "pledged", "margin_call", "frozen", "defaulted", "enforcement", "released", "closed"]


def sign(account: LocalAccount, typed: dict[str, Any]) -> str:
    """What the party's wallet does: eth_signTypedData_v4, here with eth_account."""
    return "0x" + bytes(Account.sign_message(encode_typed_data(full_message=typed), account.key).signature).hex()


def selector(error: str) -> str:
    return "0x" + keccak(text=error)[:4].hex()


@dataclass
class Party:
    name: str
    account: LocalAccount
    api_key: str
    chain_org: int | None = None

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


class Outside:
    """The parties' own client: HTTP to the service, their keys, and their own view of the chain."""

    def __init__(self, http: httpx.Client, w3: Web3, contract_address: str, parties: dict[str, Party]) -> None:
        self.http, self.w3, self.parties = http, w3, parties
        self.contract = w3.eth.contract(address=contract_address, abi=load_artifact(COLLATERAL)["abi"])

    def lot(self, receipt: str) -> dict[str, Any]:
        raw = self.contract.functions.lotOf(keccak(text=receipt)).call()
        names = ["warehouse", "enterprise", "bank", "status", "frozen_from", "control_start", "quantity", "min_quantity",
                 "unit", "released", "goods", "assay"]  # fmt: skip
        state = dict(zip(names, raw))
        state["status"] = STATUS[state["status"]]
        return state

    def propose(self, who: str, receipt: str, type_: str, params: dict[str, Any], **extra: Any) -> dict[str, Any]:
        r = self.http.post(f"/v1/lots/{receipt}/actions", json={"type": type_, "params": params, **extra}, headers=self.parties[who].auth)
        assert r.status_code == 201, r.text
        return r.json()

    def sign(self, action: dict[str, Any], *names: str, poster: str | None = None) -> httpx.Response:
        response = None
        for name in names:
            signature = sign(self.parties[name].account, action["typed_data"])
            response = self.http.post(f"/v1/actions/{action['id']}/signatures", json={"signature": signature},
                                      headers=self.parties[poster or name].auth)  # fmt: skip
            if response.status_code != 200:
                return response
        assert response is not None
        return response

    def run(self, who: str, receipt: str, type_: str, params: dict[str, Any], *signers: str) -> dict[str, Any]:
        response = self.sign(self.propose(who, receipt, type_, params), *signers)
        assert response.status_code == 200, response.text
        return response.json()

    def call_around_the_service(self, action: dict[str, Any], signatures: list[str], block: str = "latest") -> str:
        """Send the transition straight to the contract (eth_call) with these signatures; the error selector."""
        typed, message = action["typed_data"], action["typed_data"]["message"]
        fields = [f["name"] for f in typed["types"][typed["primaryType"]]]
        nonces = [message[f] for f in fields if f.endswith("Nonce") or f == "nonce"]
        lot = bytes.fromhex(message["lot"][2:])
        function = {"Release": "release", "PartialRelease": "partialRelease"}[typed["primaryType"]]
        call = getattr(self.contract.functions, function)(lot, message["quantity"], message["deadline"], nonces,
                                                          [bytes.fromhex(s[2:]) for s in signatures])  # fmt: skip
        try:
            call.call(block_identifier=block)
        except ContractCustomError as refused:
            return str(refused.data)[:10]
        except Exception as refused:  # eth-tester's provider: "execution reverted: b'<revert data>'"
            text = str(refused)
            return "0x" + ast.literal_eval(text[text.index("b'"):]).hex()[:8]
        raise AssertionError("the contract accepted the transition")


@pytest.fixture(params=["embedded", pytest.param("managed", marks=pytest.mark.anvil)])
def outside(request: pytest.FixtureRequest, db_url: str, ledger_factory, tmp_path) -> Outside:  # type: ignore[no-untyped-def]
    if request.param == "managed":
        from tests.ledger.chain.test_chain import need_anvil

        need_anvil()
    ledger = ledger_factory(db_url, chain=request.param, data_dir=tmp_path / f"data-{request.param}")
    parties = {}
    for name, role in ROLES.items():
        account = Account.from_key(keccak(text=f"acceptance key {name}"))
        new = ledger.create_organisation(name=name, role=role, signer=account.address)  # `org create --signer`
        parties[name] = Party(name, account, new.api_key)
    with LiveServer(create_app(ledger=ledger)) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        health = http.get("/healthz").json()
        rpc = health["chain"]["rpc_url"]
        w3 = Web3(Web3.HTTPProvider(rpc)) if rpc else ledger.chain.w3  # the embedded chain has no URL: its own provider
        yield Outside(http, w3, health["chain"]["contracts"][COLLATERAL], parties)


def test_lot_lifecycle_from_outside(outside: Outside) -> None:
    http, parties = outside.http, outside.parties

    # each organisation proves its key: it signs its own RegisterOrganisation, the relayer records it
    for party in parties.values():
        me = http.get("/v1/organisation", headers=party.auth).json()
        assert me["chain_org"] is None and me["registration"]["required"][0]["signer"] == party.account.address
        r = outside.sign(me["registration"], party.name)
        assert r.status_code == 200 and r.json()["status"] == "confirmed", r.text
        party.chain_org = http.get("/v1/organisation", headers=party.auth).json()["chain_org"]
        organisation = outside.contract.functions.organisation(party.chain_org).call()
        assert organisation[0] == party.account.address  # the signer on chain, with the role
    assert outside.contract.functions.organisation(parties["bank_a"].chain_org).call()[1] == 3  # Role.Bank

    device = SimulatedDevice("acc-scale-01", "load_cell", lot="EWR-ACC-1")
    assert http.post("/v1/devices", json=device.registration(), headers=parties["warehouse"].auth).status_code == 201
    assert http.post("/v1/readings", json=[device.reading({"weight_kg": 10_000.0}) for _ in range(2)]).status_code == 200

    r = http.post("/v1/lots", headers=parties["warehouse"].auth, json={
        "id": "EWR-ACC-1", "enterprise": "enterprise", "goods": {"commodity": "copper cathode", "bundles": 40},
        "quantity": 10_000, "unit": "kg", "devices": ["acc-scale-01"]})  # fmt: skip
    assert r.status_code == 201, r.text
    assert [p["role"] for p in r.json()["action"]["required"]] == ["warehouse"]
    assert outside.sign(r.json()["action"], "warehouse").json()["status"] == "confirmed"
    assert outside.lot("EWR-ACC-1")["status"] == "inbound"

    assay = {"lab": "SGS", "cu_pct": 99.99}
    assert outside.run("warehouse", "EWR-ACC-1", "verify", {"quantity": 10_000, "assay": assay}, "warehouse", "enterprise")["status"] == "confirmed"
    assert outside.lot("EWR-ACC-1")["status"] == "verified"

    pledge = outside.propose("enterprise", "EWR-ACC-1", "pledge",
                             {"bank": "bank_a", "registration": "PBOC-ACC-1", "terms": TERMS, "min_quantity": 6_000})  # fmt: skip
    assert [(p["role"], p["signer"]) for p in pledge["required"]] == [
        ("enterprise", parties["enterprise"].account.address), ("bank", parties["bank_a"].account.address),
        ("warehouse", parties["warehouse"].account.address)]  # fmt: skip
    pledged = outside.sign(pledge, "enterprise", "bank_a", "warehouse").json()
    assert pledged["status"] == "confirmed" and pledged["tx_hash"]
    state = outside.lot("EWR-ACC-1")
    assert (state["status"], state["bank"], state["quantity"]) == ("pledged", parties["bank_a"].chain_org, 10_000)

    # a second pledge of the same lot, to another bank: signed by all three, refused by the contract
    before, block = outside.lot("EWR-ACC-1"), outside.w3.eth.block_number
    second = outside.run("enterprise", "EWR-ACC-1", "pledge",
                         {"bank": "bank_b", "registration": "PBOC-ACC-2", "terms": TERMS, "min_quantity": 6_000},
                         "enterprise", "bank_b", "warehouse")  # fmt: skip
    assert second["status"] == "failed" and second["error"]["code"] == "CollateralRegistryInvalidStatus", second
    assert second["tx_hash"] is None and outside.lot("EWR-ACC-1") == before and outside.w3.eth.block_number == block

    # a release signed by a different bank, and by the enterprise alone: refused before the chain, and by the contract
    release = outside.propose("bank_a", "EWR-ACC-1", "release", {})
    foreign = outside.sign(release, "bank_b", poster="bank_a")
    assert foreign.status_code == 422 and foreign.json()["error"]["code"] == "signer_not_required"
    only_enterprise = outside.sign(release, "enterprise")
    assert only_enterprise.status_code == 422 and only_enterprise.json()["error"]["code"] == "signer_not_required"
    approval = selector("CollateralRegistryInvalidApproval(uint256,address)")
    typed = release["typed_data"]
    assert outside.call_around_the_service(release, [sign(parties["bank_b"].account, typed), sign(parties["warehouse"].account, typed)]) == approval
    assert outside.call_around_the_service(release, [sign(parties["enterprise"].account, typed)] * 2) == approval
    assert outside.lot("EWR-ACC-1") == before and outside.w3.eth.block_number == block

    # partial release, bank's instruction, warehouse executes; a second one reusing the same nonces is refused
    first = outside.propose("bank_a", "EWR-ACC-1", "partial_release", {"quantity": 2_000})
    replay = outside.propose("bank_a", "EWR-ACC-1", "partial_release", {"quantity": 1_000})
    assert replay["typed_data"]["message"]["bankNonce"] == first["typed_data"]["message"]["bankNonce"]
    assert outside.sign(first, "bank_a", "warehouse").json()["status"] == "confirmed"
    assert outside.lot("EWR-ACC-1")["quantity"] == 8_000
    reused = outside.sign(replay, "bank_a", "warehouse").json()
    assert reused["status"] == "failed" and reused["error"]["code"] == "CollateralRegistryInvalidNonce", reused
    block = outside.w3.eth.block_number
    assert outside.lot("EWR-ACC-1")["quantity"] == 8_000
    again = http.post(f"/v1/actions/{first['id']}/signatures", json={"signature": sign(parties["bank_a"].account, first["typed_data"])},
                      headers=parties["bank_a"].auth)  # fmt: skip
    assert again.status_code == 409 and again.json()["error"]["code"] == "action_not_collecting"

    # an expired deadline: the last signature comes too late
    late = outside.propose("bank_a", "EWR-ACC-1", "release", {}, expires_in_s=2)
    assert outside.sign(late, "bank_a").status_code == 200
    time.sleep(3)
    too_late = outside.sign(late, "warehouse")
    assert too_late.status_code == 409 and too_late.json()["error"]["code"] == "action_expired"
    assert http.get(f"/v1/actions/{late['id']}", headers=parties["bank_a"].auth).json()["status"] == "expired"
    if outside.w3.provider.__class__.__name__ == "HTTPProvider":
        # a block stamped now, past the deadline (anvil's pending block may still carry the time of
        # the last block mined, before the sleep)
        outside.w3.provider.make_request("evm_mine", [])
        block += 1  # that empty block: nothing else may be mined
        expired = [sign(parties["bank_a"].account, late["typed_data"]), sign(parties["warehouse"].account, late["typed_data"])]
        assert outside.call_around_the_service(late, expired, "latest") == selector("CollateralRegistryExpiredDeadline(uint256)")
    assert outside.lot("EWR-ACC-1")["status"] == "pledged" and outside.lot("EWR-ACC-1")["quantity"] == 8_000
    assert outside.w3.eth.block_number == block  # nothing was sent for the refused ones

    # another bank's key cannot read this lot
    for path in ("/v1/lots/EWR-ACC-1", "/v1/lots/EWR-ACC-1/timeline", "/v1/lots/EWR-ACC-1/actions"):
        r = http.get(path, headers=parties["bank_b"].auth)
        assert r.status_code == 404 and r.json()["error"]["code"] == "lot_not_found", path
        assert http.get(path, headers=parties["bank_a"].auth).status_code == 200
    assert http.get("/v1/lots", headers=parties["bank_b"].auth).json() == []
    assert http.get(f"/v1/actions/{pledged['id']}", headers=parties["bank_b"].auth).status_code == 404

    released = outside.run("bank_a", "EWR-ACC-1", "release", {}, "bank_a", "warehouse")
    assert released["status"] == "confirmed" and outside.lot("EWR-ACC-1")["status"] == "released"
    closed = outside.run("warehouse", "EWR-ACC-1", "close", {}, "bank_a", "warehouse")
    assert closed["primary_type"] == "ClosePledged" and outside.lot("EWR-ACC-1")["status"] == "closed"

    lot = http.get("/v1/lots/EWR-ACC-1", headers=parties["bank_a"].auth).json()
    assert lot["status"] == "closed" and lot["terms"] == TERMS and lot["registration"] == "PBOC-ACC-1"
    timeline = http.get("/v1/lots/EWR-ACC-1/timeline", headers=parties["auditor"].auth).json()["entries"]
    events = [(e["event"], e["tx_hash"]) for e in timeline if e["kind"] == "chain_event"]
    assert [name for name, _ in events] == ["LotRegistered", "LotVerified", "LotPledged", "LotPartiallyReleased", "LotReleased", "LotClosed"]
    for name, tx_hash in events:  # each step is a mined transaction of the contract
        receipt = outside.w3.eth.get_transaction_receipt(tx_hash)
        assert receipt["status"] == 1 and receipt["to"] == outside.contract.address
    assert {e["status"] for e in timeline if e["kind"] == "action"} == {"confirmed", "failed", "expired", "collecting"}
    assert len([e for e in timeline if e["kind"] == "reading"]) == 2
