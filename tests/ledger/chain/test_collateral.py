"""CollateralRegistry from Python (ledger.chain.collateral).

Typed data is built from the module's type strings and signed with eth_account, as a party's wallet or HSM
would; the contract must accept those signatures, on the embedded py-evm chain and on anvil (reached by
URL, as the ``rpc`` backend), and refuse a missing, foreign, replayed or expired one with its decoded error,
leaving the chain unchanged.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from ledger.chain import ANVIL_DEV_KEY, COLLATERAL, ChainHandle, ChainRevert, decode_revert, load_artifact, open_chain
from ledger.chain.collateral import (
    ACTIONS,
    CollateralClient,
    Domain,
    Party,
    Role,
    Status,
    deploy_collateral_registry,
    identifier_hash,
    recover_signer,
    sign_typed_data,
    typed_data,
    typed_data_digest,
    unit_code,
    unit_text,
)
from tests.conftest import ROOT
from tests.ledger.chain.test_chain import start_anvil

TARGETS = {"registerLot": 150_000, "pledge": 100_000, "release": 60_000}


def h(tag: str) -> bytes:
    return keccak(text=f"test:{tag}")


def key(name: str) -> LocalAccount:
    return Account.from_key(keccak(text=f"pledgeledger test key {name}"))


@dataclass
class Registry:
    handle: ChainHandle
    client: CollateralClient
    keys: dict[str, LocalAccount]
    orgs: dict[str, int]

    def deadline(self, slack: int = 3600) -> int:
        chain = self.client.chain
        return chain.reader.block_timestamp(chain.block_number()) + slack

    def sign(self, typed: dict, *names: str) -> list[bytes]:
        return [sign_typed_data(self.keys[name].key, typed) for name in names]

    def run(self, action: str, *signers: str, approver: str | None = None, **fields: object) -> int:
        typed = self.client.prepare(action, deadline=self.deadline(), approver=approver, **fields)
        return self.client.submit(typed, self.sign(typed, *signers)).gas_used

    def new_lot(self, tag: str) -> bytes:
        """A verified lot with its own receipt and device."""
        lot = identifier_hash(f"e-receipt {tag}")
        self.run("RegisterLot", "warehouse", lot=lot, warehouse=self.orgs["warehouse"],
                 enterprise=self.orgs["enterprise"], goods=h(f"goods {tag}"), quantity=10_000,
                 unit=unit_code("kg"), devices=[identifier_hash(f"scale {tag}")])  # fmt: skip
        self.run("VerifyLot", "warehouse", "enterprise", lot=lot, assay=h(f"assay {tag}"), quantity=10_000)
        return lot

    def pledge_fields(self, lot: bytes, tag: str, bank: str = "bank") -> dict[str, object]:
        return {"lot": lot, "bank": self.orgs[bank], "registration": identifier_hash(f"registration {tag}"),
                "terms": h(f"terms {tag}"), "quantity": 10_000, "minQuantity": 6_000}  # fmt: skip


@pytest.fixture(scope="module", params=["embedded", pytest.param("anvil", marks=pytest.mark.anvil)])
def registry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    data_dir = tmp_path_factory.mktemp(request.param)
    proc = None
    if request.param == "embedded":
        handle = open_chain("embedded", data_dir)
    else:
        proc, url = start_anvil(data_dir)
        handle = open_chain(url, data_dir, relayer_key=ANVIL_DEV_KEY)
    try:
        keys = {name: key(name) for name in ("warehouse", "enterprise", "bank", "other_bank", "supervisor")}
        address = deploy_collateral_registry(handle.client, supervisor=keys["supervisor"].address)
        reg = Registry(handle, CollateralClient(handle.client, address), keys, {})
        roles = {"warehouse": Role.WAREHOUSE, "enterprise": Role.ENTERPRISE, "bank": Role.BANK, "other_bank": Role.BANK}
        for name, role in roles.items():
            reg.run("RegisterOrganisation", name, role=int(role), signer=keys[name].address, name=name)
            reg.orgs[name] = reg.client.organisation_of(keys[name].address)
        yield reg
    finally:
        handle.close()
        if proc is not None:
            proc.terminate()
            proc.wait(10)


# --- on chain, every backend ---------------------------------------------------------------------


def test_pledge_and_release_accept_python_signatures(registry: Registry) -> None:
    client, keys = registry.client, registry.keys
    domain = client.domain()
    assert domain == Domain(client.chain.chain_id, client.address)
    org = client.organisation(registry.orgs["bank"])
    assert org is not None and (org.signer, org.role, org.active) == (keys["bank"].address, Role.BANK, True)
    assert client.nonce(keys["bank"].address) == 1  # its proof of possession used nonce 0

    lot = identifier_hash("e-receipt WH1-0001")
    device = identifier_hash("wh1:scale-01")
    register_gas = registry.run(
        "RegisterLot", "warehouse", lot=lot, warehouse=registry.orgs["warehouse"],
        enterprise=registry.orgs["enterprise"], goods=h("goods"), quantity=10_000, unit=unit_code("kg"),
        devices=[device],
    )  # fmt: skip
    assert client.lot(lot).status == Status.INBOUND
    assert client.lot_of_device(device) == lot
    registry.run("VerifyLot", "warehouse", "enterprise", lot=lot, assay=h("assay"), quantity=10_000)

    fields = registry.pledge_fields(lot, "0001")
    typed = client.prepare("Pledge", deadline=registry.deadline(), **fields)
    assert [p.signer for p in client.required("Pledge", typed["message"])] == [
        keys["enterprise"].address, keys["bank"].address, keys["warehouse"].address
    ]
    assert typed["message"]["bankNonce"] == client.nonce(keys["bank"].address)
    json.dumps(typed)  # the same plain-JSON document every party signs
    signatures = registry.sign(typed, "enterprise", "bank", "warehouse")
    assert [recover_signer(typed, s) for s in signatures] == [
        keys["enterprise"].address, keys["bank"].address, keys["warehouse"].address
    ]
    pledged = client.submit(typed, signatures)
    lot_state = client.lot(lot)
    assert (lot_state.status, lot_state.bank, lot_state.min_quantity) == (Status.PLEDGED, registry.orgs["bank"], 6_000)
    assert lot_state.unit == "kg"
    block = client.chain.reader.block_timestamp(pledged.block_number)
    assert lot_state.control_start == block
    assert client.lot_of_registration(fields["registration"]) == lot  # type: ignore[arg-type]

    partial_gas = registry.run("PartialRelease", "bank", "warehouse", lot=lot, quantity=1_500)
    assert (client.lot(lot).quantity, client.lot(lot).released) == (8_500, 1_500)
    release_gas = registry.run("Release", "bank", "warehouse", lot=lot, quantity=8_500)
    assert client.lot(lot).status == Status.RELEASED
    assert client.lot_of_registration(fields["registration"]) is None  # type: ignore[arg-type]
    assert client.close_action(lot) == "ClosePledged"
    registry.run("ClosePledged", "bank", "warehouse", lot=lot)
    assert client.lot(lot).status == Status.CLOSED
    assert client.lot_of_device(device) is None

    assert register_gas <= TARGETS["registerLot"]
    assert pledged.gas_used <= TARGETS["pledge"]
    assert release_gas <= TARGETS["release"]
    assert partial_gas > 0


def test_missing_foreign_replayed_or_expired_signatures_are_refused(registry: Registry) -> None:
    client, keys = registry.client, registry.keys
    lot = registry.new_lot("refused")
    typed = client.prepare("Pledge", deadline=registry.deadline(), **registry.pledge_fields(lot, "refused"))
    signers = [keys[n].address for n in ("enterprise", "bank", "warehouse")]
    before = (client.lot(lot), [client.nonce(a) for a in signers], client.chain.block_number())

    cases = [
        (registry.sign(typed, "enterprise", "warehouse"), "CollateralRegistryApprovalCount",
         {"expected": 3, "nonces": 3, "signatures": 2}),
        (registry.sign(typed, "enterprise", "other_bank", "warehouse"), "CollateralRegistryInvalidApproval",
         {"index": 1, "signer": keys["bank"].address.lower()}),
        (registry.sign(typed, "enterprise", "enterprise", "warehouse"), "CollateralRegistryInvalidApproval",
         {"index": 1, "signer": keys["bank"].address.lower()}),
    ]  # fmt: skip
    for signatures, error, params in cases:
        with pytest.raises(ChainRevert) as refused:
            client.submit(typed, signatures)
        assert refused.value.error == error, str(refused.value)
        assert refused.value.params == params  # addresses decode in lower case

    # Typed data for another chain id (or another contract) does not verify here.
    foreign = typed_data("Pledge", Domain(client.chain.chain_id + 1, client.address), typed["message"])
    with pytest.raises(ChainRevert) as other_chain:
        client.submit(typed, registry.sign(foreign, "enterprise", "bank", "warehouse"))
    assert other_chain.value.error == "CollateralRegistryInvalidApproval"
    with pytest.raises(ValueError, match="domain"):
        client.submit(foreign, registry.sign(foreign, "enterprise", "bank", "warehouse"))

    # A nonce the bank already used.
    stale = typed_data("Pledge", client.domain(), {**typed["message"], "bankNonce": typed["message"]["bankNonce"] - 1})
    with pytest.raises(ChainRevert) as reused:
        client.submit(stale, registry.sign(stale, "enterprise", "bank", "warehouse"))
    assert reused.value.error == "CollateralRegistryInvalidNonce"
    assert reused.value.params == {
        "account": keys["bank"].address.lower(), "currentNonce": typed["message"]["bankNonce"]
    }

    # A deadline already past.
    expired = typed_data("Pledge", client.domain(), {**typed["message"], "deadline": registry.deadline(-1)})
    with pytest.raises(ChainRevert) as late:
        client.submit(expired, registry.sign(expired, "enterprise", "bank", "warehouse"))
    assert late.value.error == "CollateralRegistryExpiredDeadline"

    assert (client.lot(lot), [client.nonce(a) for a in signers], client.chain.block_number()) == before

    # The same typed data with every signature goes through once; replayed, its nonces are gone.
    signatures = registry.sign(typed, "enterprise", "bank", "warehouse")
    client.submit(typed, signatures)
    assert client.lot(lot).status == Status.PLEDGED
    with pytest.raises(ChainRevert) as replayed:
        client.submit(typed, signatures)
    assert replayed.value.error == "CollateralRegistryInvalidStatus"


def test_either_or_signers_and_rotation(registry: Registry) -> None:
    client, keys = registry.client, registry.keys
    lot = registry.new_lot("either")
    registry.run("Pledge", "enterprise", "bank", "warehouse", **registry.pledge_fields(lot, "either"))
    with pytest.raises(ValueError, match="approver"):
        client.prepare("Freeze", deadline=registry.deadline(), lot=lot, reason=h("x"))
    with pytest.raises(ValueError, match="none of"):
        client.prepare("Freeze", deadline=registry.deadline(), approver=keys["bank"].address, lot=lot, reason=h("x"))
    supervisor = keys["supervisor"].address
    typed = client.prepare("Freeze", deadline=registry.deadline(), approver=supervisor, lot=lot, reason=h("weight"))
    assert client.required("Freeze", typed["message"], approver=supervisor) == [Party("supervisor", 0, supervisor)]
    client.submit(typed, registry.sign(typed, "supervisor"))
    assert client.lot(lot).status == Status.FROZEN
    assert client.lot(lot).frozen_from == Status.PLEDGED
    with pytest.raises(ChainRevert) as alone:
        registry.run("Unfreeze", "warehouse", lot=lot)
    assert alone.value.error == "CollateralRegistryApprovalCount"
    registry.run("Unfreeze", "bank", "warehouse", lot=lot)
    assert client.lot(lot).status == Status.PLEDGED

    # A rotated bank key: the old one no longer signs for the bank, the new one does.
    new_bank = key("bank rotated")
    registry.keys["bank_new"] = new_bank
    typed = client.prepare("RotateSigner", deadline=registry.deadline(), org=registry.orgs["bank"],
                           newSigner=new_bank.address)  # fmt: skip
    assert [p.role for p in client.required("RotateSigner", typed["message"])] == ["current", "new"]
    client.submit(typed, registry.sign(typed, "bank", "bank_new"))
    assert client.organisation_of(new_bank.address) == registry.orgs["bank"]
    assert client.organisation_of(keys["bank"].address) == 0
    with pytest.raises(ChainRevert, match="CollateralRegistryInvalidApproval"):
        registry.run("PartialRelease", "bank", "warehouse", lot=lot, quantity=10)
    registry.run("PartialRelease", "bank_new", "warehouse", lot=lot, quantity=10)
    assert client.lot(lot).released == 10


def test_registrar_records_affiliations_and_inactive_organisations(registry: Registry) -> None:
    client, orgs = registry.client, registry.orgs
    client.set_affiliation(orgs["warehouse"], orgs["enterprise"], True)
    with pytest.raises(ChainRevert) as affiliated:
        registry.new_lot("affiliated")
    assert affiliated.value.error == "CollateralRegistryAffiliated"
    assert affiliated.value.params == {"warehouse": orgs["warehouse"], "enterprise": orgs["enterprise"]}
    client.set_affiliation(orgs["enterprise"], orgs["warehouse"], False)
    lot = registry.new_lot("independent again")
    client.set_organisation_active(orgs["other_bank"], False)
    with pytest.raises(ChainRevert, match="CollateralRegistryInactiveOrganisation"):
        registry.run("Pledge", "enterprise", "other_bank", "warehouse", **registry.pledge_fields(lot, "ia", "other_bank"))
    client.set_organisation_active(orgs["other_bank"], True)
    registry.run("Pledge", "enterprise", "other_bank", "warehouse", **registry.pledge_fields(lot, "ia", "other_bank"))
    assert client.lot(lot).bank == orgs["other_bank"]

    unpledged = registry.new_lot("closed unpledged")
    assert client.close_action(unpledged) == "Close"
    registry.run("Close", "warehouse", lot=unpledged)
    assert client.lot(unpledged).status == Status.CLOSED


# --- every transition, with the gas benchmark ----------------------------------------------------


@pytest.mark.slow
def test_bench_gas_runs_every_transition_within_the_targets() -> None:
    spec = importlib.util.spec_from_file_location("bench_gas", ROOT / "scripts" / "bench_gas.py")
    assert spec is not None and spec.loader is not None
    bench_gas = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench_gas  # its dataclasses look their module up
    try:
        spec.loader.exec_module(bench_gas)
    finally:
        del sys.modules[spec.name]
    bench = bench_gas.run("embedded", None, 1)
    result = bench_gas.summary(bench, 1)
    performed = {row["transition"].split(" ")[0] for row in result["transitions"]}
    assert {action.function for action in ACTIONS.values()} <= performed
    assert result["within_targets"], result
    assert result["pledge_gas"] <= 100_000 and result["release_gas"] <= 60_000
    assert result["register_lot_gas"] <= 150_000
    assert result["tradetrust"] == {"mint": 282_071, "pledge": 78_023, "release": 58_693}
    table = bench_gas.markdown(bench, 1)
    assert "| pledge | enterprise + bank + warehouse |" in table and "78,023 (pledge)" in table


# --- typed data, off chain ------------------------------------------------------------------------


def _solidity_type_strings(path: Path) -> set[str]:
    source = path.read_text()
    return {m for m in re.findall(r'keccak256\(\s*"([A-Za-z]+\([^"]*\))"\s*\)', source) if "EIP712Domain" not in m}


def test_type_strings_are_the_contracts() -> None:
    python = {action.type_string for action in ACTIONS.values()}
    assert _solidity_type_strings(ROOT / "contracts" / "CollateralRegistry.sol") == python
    assert _solidity_type_strings(ROOT / "tests" / "contracts" / "utils" / "CollateralTypedData.sol") == python


def test_actions_match_the_abi() -> None:
    functions = {i["name"]: i for i in load_artifact(COLLATERAL)["abi"] if i["type"] == "function"}
    for name, action in ACTIONS.items():
        inputs = functions[action.function]["inputs"]
        assert [i["name"] for i in inputs[-3:]] == ["deadline", "signerNonces", "signatures"], name
        flat: list[str] = []
        for item in inputs[:-3]:
            flat += [c["name"] for c in item["components"]] if item["type"] == "tuple" else [item["name"]]
        assert tuple(flat) == action.arguments, name
        assert action.fields[-1] == ("deadline", "uint256")
        assert len(action.signers) == len(action.nonce_fields) >= 1
    assert ACTIONS["Pledge"].signers == ("enterprise", "bank", "warehouse")
    assert ACTIONS["MarginCall"].signers == ("bank|supervisor",)
    assert ACTIONS["Freeze"].signers == ("warehouse|supervisor",)
    assert ACTIONS["DefaultUncured"].signers == ("supervisor",)


def test_typed_data_is_validated_and_matches_eth_account() -> None:
    domain = Domain(31337, "0x" + "11" * 20)
    message = {"lot": h("lot"), "quantity": 5, "bankNonce": 3, "warehouseNonce": 9, "deadline": 10**10}
    typed = typed_data("Release", domain, message)
    assert typed["primaryType"] == "Release"
    assert typed["message"]["lot"] == "0x" + h("lot").hex()
    assert typed["domain"] == {"name": "CollateralRegistry", "version": "1", "chainId": 31337,
                               "verifyingContract": "0x" + "11" * 20}  # fmt: skip
    signable = encode_typed_data(full_message=typed)
    assert typed_data_digest(typed) == keccak(b"\x19" + signable.version + signable.header + signable.body)
    struct = keccak(
        keccak(text=ACTIONS["Release"].type_string) + h("lot") + (5).to_bytes(32, "big") + (3).to_bytes(32, "big")
        + (9).to_bytes(32, "big") + (10**10).to_bytes(32, "big")
    )  # fmt: skip
    assert signable.body == struct  # the EIP-712 struct hash, written out by hand
    signer = key("offline")
    assert recover_signer(typed, sign_typed_data(signer.key, typed)) == signer.address

    bad = [
        ("Nope", message, "unknown action"),
        ("Release", {k: v for k, v in message.items() if k != "quantity"}, "missing field 'quantity'"),
        ("Release", {**message, "extra": 1}, "unknown field"),
        ("Release", {**message, "lot": b"short"}, "must be 32 bytes"),
        ("Release", {**message, "lot": "0x" + "ab" * 31}, "must be 32 bytes"),
        ("Release", {**message, "lot": "ab" * 32}, "0x-prefixed"),
        ("Release", {**message, "quantity": 2**64}, "must be an integer"),
        ("Release", {**message, "quantity": -1}, "must be an integer"),
        ("Release", {**message, "quantity": True}, "must be an integer"),
        ("RotateSigner", {"org": 1, "newSigner": "0x1234", "currentNonce": 0, "newNonce": 0, "deadline": 1}, "address"),
        ("RegisterLot", {"lot": h("l"), "warehouse": 1, "enterprise": 2, "goods": h("g"), "quantity": 1,
                         "unit": unit_code("kg"), "devices": h("d"), "warehouseNonce": 0, "deadline": 1}, "list"),
    ]  # fmt: skip
    for action, msg, error in bad:
        with pytest.raises(ValueError, match=error):
            typed_data(action, domain, msg)
    with pytest.raises(ValueError):
        recover_signer(typed, b"\x01" * 10)


def test_identifiers_and_units() -> None:
    assert identifier_hash("wh1:scale-01") == keccak(b"wh1:scale-01")
    assert unit_code("kg") == b"kg" + bytes(6)
    assert unit_text(unit_code("[lb_av]")) == "[lb_av]"
    for bad in ("", "123456789", "k g", "千克"):
        with pytest.raises(ValueError):
            unit_code(bad)
    with pytest.raises(ValueError):
        identifier_hash("")


def test_collateral_errors_are_decoded() -> None:
    data = keccak(text="CollateralRegistryInvalidNonce(address,uint256)")[:4] + bytes(12) + b"\x11" * 20 + (7).to_bytes(32, "big")
    assert decode_revert(data) == (
        "CollateralRegistryInvalidNonce",
        {"account": "0x1111111111111111111111111111111111111111", "currentNonce": 7},
    )
