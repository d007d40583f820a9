"""attestation.collateral against the compiled CollateralRegistry and ledger.chain.collateral: the same
type strings, function signatures and events; calldata as the ledger's client encodes it; the lot state
machine as the events drive it."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from attestation.collateral import LOT_ACTIONS, LOT_EVENTS, LotEvent, LotState, check_typed_data, decode_lot_event, replay
from ledger.chain.artifacts import load_artifact
from ledger.chain.collateral import ACTIONS, Domain, typed_data

ABI = load_artifact("CollateralRegistry")["abi"]


def _canonical(item: dict) -> str:
    def kind(i: dict) -> str:
        return "(" + ",".join(kind(c) for c in i["components"]) + ")" + i["type"][5:] if i["type"].startswith("tuple") else i["type"]

    return f"{item['name']}({','.join(kind(i) for i in item['inputs'])})"


def test_the_ledger_signs_these_transitions() -> None:
    """ledger.chain.collateral builds its table from these (tests/ledger/chain/test_collateral.py checks the
    type strings against the Solidity source)."""
    for name, action in LOT_ACTIONS.items():
        assert (ACTIONS[name].type_string, ACTIONS[name].function) == (action.type_string, action.function)
    assert ACTIONS["Freeze"].signers == ("warehouse|supervisor",) and ACTIONS["MarginCall"].signers == ("bank|supervisor",)
    assert set(ACTIONS) - set(LOT_ACTIONS) == {"RegisterOrganisation", "RotateSigner"}  # not about a lot


def test_function_signatures_are_the_contracts() -> None:
    functions = {_canonical(i) for i in ABI if i["type"] == "function"}
    for action in LOT_ACTIONS.values():
        assert action.function_signature in functions, action.function_signature
        assert action.selector == keccak(text=action.function_signature)[:4]


def test_events_are_the_contracts() -> None:
    events = {i["name"]: i for i in ABI if i["type"] == "event"}
    for name, signature in LOT_EVENTS.items():
        assert _canonical(events[name]) == signature
        indexed = [i["name"] for i in events[name]["inputs"] if i["indexed"]]
        assert indexed[0] == "lot"
    lot_events = {n for n, e in events.items() if e["inputs"] and e["inputs"][0]["name"] == "lot"}
    assert lot_events == set(LOT_EVENTS)


def test_decode_and_replay() -> None:
    lot = "0x" + keccak(text="EWR-1").hex()
    topic = lambda sig: "0x" + keccak(text=sig).hex()  # noqa: E731
    word = lambda n: n.to_bytes(32, "big").hex()  # noqa: E731
    registered = decode_lot_event(
        [topic(LOT_EVENTS["LotRegistered"]), lot, "0x" + word(1), "0x" + word(2)],
        "0x" + "11" * 32 + word(500) + b"kg".ljust(32, b"\0").hex() + word(128) + word(0),
    )
    assert registered == LotEvent("LotRegistered", {"lot": lot, "warehouse": 1, "enterprise": 2, "goods": "0x" + "11" * 32,
                                                    "quantity": 500, "unit": "0x6b67000000000000", "devices": []})  # fmt: skip
    frozen = decode_lot_event([topic(LOT_EVENTS["LotFrozen"]), lot, "0x" + word(0xAB)], "0x" + "22" * 32)
    unfrozen = decode_lot_event([topic(LOT_EVENTS["LotUnfrozen"]), lot], "0x" + word(3))
    assert unfrozen.args["status"] == "pledged"
    state = replay([registered])
    assert state == LotState(warehouse=1, enterprise=2, status="inbound", quantity=500, unit="kg", goods="0x" + "11" * 32)
    pledged = LotEvent("LotPledged", {"bank": 3, "minQuantity": 100, "controlStart": 7})
    assert replay([frozen], replay([pledged], state)).frozen_from == "pledged"
    with pytest.raises(ValueError, match="first event is LotFrozen"):
        replay([frozen])
    with pytest.raises(ValueError, match="registered twice"):
        replay([registered, registered])
    with pytest.raises(ValueError, match="no CollateralRegistry lot event"):
        decode_lot_event(["0x" + "00" * 32], "0x")


def test_typed_data_must_be_the_contracts_transition() -> None:
    lot = keccak(text="EWR-2")
    contract = "0x" + "12" * 20
    typed = typed_data("Release", Domain(5, contract), {"lot": lot, "quantity": 9, "bankNonce": 1, "warehouseNonce": 2, "deadline": 3})
    assert check_typed_data(typed, chain_id=5, contract=contract, lot="0x" + lot.hex()).function == "release"
    with pytest.raises(ValueError, match="domain"):
        check_typed_data(typed, chain_id=6, contract=contract, lot="0x" + lot.hex())
    with pytest.raises(ValueError, match="domain"):
        check_typed_data(typed, chain_id=5, contract="0x" + "13" * 20, lot="0x" + lot.hex())
    with pytest.raises(ValueError, match="about lot"):
        check_typed_data(typed, chain_id=5, contract=contract, lot="0x" + "00" * 32)
    renamed = {**typed, "types": {**typed["types"], "Release": [{"name": "lot", "type": "bytes32"}]}}
    with pytest.raises(ValueError, match="types"):
        check_typed_data(renamed, chain_id=5, contract=contract, lot="0x" + lot.hex())


@pytest.mark.parametrize("primary", sorted(LOT_ACTIONS))
def test_decode_call_inverts_encode_call(primary: str) -> None:
    """Every transition's calldata decodes back to its typed data and signatures (Close and ClosePledged,
    which share close(), by their number of signers)."""
    from attestation.collateral import decode_call, encode_call

    action = LOT_ACTIONS[primary]
    samples = {"bytes32": b"\x07" * 32, "bytes32[]": [b"\x01" * 32, b"\x02" * 32], "uint24": 3, "uint64": 4, "bytes8": b"kg".ljust(8, b"\0"),
               "uint40": 6, "uint256": 5}  # fmt: skip
    message = {name: samples[t] for name, t in action.fields}
    typed = typed_data(primary, Domain(9, "0x" + "ab" * 20), message)
    signatures = ["0x" + bytes([i]) .hex() * 65 for i in range(1, len(action.nonce_fields) + 1)]
    decoded, sigs = decode_call(encode_call(typed, signatures), chain_id=9, contract="0x" + "ab" * 20)
    assert (decoded, sigs) == (typed, signatures)
    with pytest.raises(ValueError, match="no lot transition"):
        decode_call(b"\x00\x00\x00\x00", chain_id=9, contract="0x" + "ab" * 20)
