"""CollateralRegistry's public interface as a verifier needs it, without the ABI file or a node.

WARNING: these strings are the contract's. The EIP-712 type strings decide what every party
signed, the function signatures what a transaction carried, the event signatures what the chain
recorded; ``tests/attestation/test_collateral.py`` compares each with the compiled contract.

- :data:`LOT_ACTIONS`: each lot transition's EIP-712 type string and the function that performs it;
  :func:`check_typed_data` says whether a typed-data document is exactly such a transition on a given
  domain, :func:`recover_signer` who signed it, and :func:`encode_call` the calldata a transaction
  carrying it with its signatures must have had.
- :data:`LOT_EVENTS` and :func:`decode_lot_event`: the lot's events from raw logs (topics and data).
- :class:`LotState` and :func:`replay`: the state a lot's events imply, field for field what
  ``lotOf(lot)`` returns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from functools import cache
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import to_checksum_address
from sha3 import keccak_256

__all__ = [
    "DOMAIN_NAME",
    "DOMAIN_VERSION",
    "LOT_ACTIONS",
    "LOT_EVENTS",
    "STATUSES",
    "LotAction",
    "LotEvent",
    "LotState",
    "check_typed_data",
    "decode_call",
    "decode_lot_event",
    "encode_call",
    "expected_domain",
    "keccak",
    "recover_signer",
    "replay",
]

#: ``ICollateralRegistry.Status`` by value, as the ledger and the evidence name them.
STATUSES = ("none", "inbound", "verified", "pledged", "margin_call", "frozen", "defaulted", "enforcement", "released", "closed")
#: The contract's EIP-712 domain name and version.
DOMAIN_NAME = "CollateralRegistry"
DOMAIN_VERSION = "1"
_DOMAIN_FIELDS = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
_TRAILER = ("uint256", "uint256[]", "bytes[]")  # every transition ends (deadline, signerNonces, signatures)


def keccak(data: bytes) -> bytes:
    return keccak_256(data).digest()


def _hex(raw: bytes) -> str:
    return "0x" + bytes(raw).hex()


def _bytes(value: Any, what: str) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str) and value.startswith("0x"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            pass
    raise ValueError(f"{what} is not 0x hex: {value!r}")


# --- transitions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LotAction:
    """One lot transition: its EIP-712 type string and the contract function taking it.

    ``grouped``: the function takes the fields after ``lot`` as one struct (``registerLot``'s
    ``LotRecord``, ``pledge``'s ``PledgeTerms``, the substitutions' ``Substitution``).
    """

    type_string: str
    function: str
    grouped: bool = False

    @property
    def primary_type(self) -> str:
        return self.type_string.split("(", 1)[0]

    @property
    def fields(self) -> tuple[tuple[str, str], ...]:
        """``(name, type)`` of every field, in order."""
        inner = self.type_string[len(self.primary_type) + 1 : -1]
        return tuple((part.split(" ")[1], part.split(" ")[0]) for part in inner.split(","))

    @property
    def arguments(self) -> tuple[tuple[str, str], ...]:
        """The fields passed to the function before ``(deadline, signerNonces, signatures)``."""
        names = [name for name, _ in self.fields]
        first_nonce = next(i for i, n in enumerate(names) if n == "nonce" or n.endswith("Nonce"))
        return self.fields[:first_nonce]

    @property
    def nonce_fields(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.fields if name == "nonce" or name.endswith("Nonce"))

    def _argument_types(self) -> list[str]:
        types = [t for _, t in self.arguments]
        if self.grouped:
            types = [types[0], "(" + ",".join(types[1:]) + ")"]
        return [*types, *_TRAILER]

    @property
    def function_signature(self) -> str:
        return f"{self.function}({','.join(self._argument_types())})"

    @property
    def selector(self) -> bytes:
        return keccak(self.function_signature.encode())[:4]


_LOT_ACTION_LIST = (
    LotAction("RegisterLot(bytes32 lot,uint24 warehouse,uint24 enterprise,bytes32 goods,uint64 quantity,bytes8 unit,"
              "bytes32[] devices,uint256 warehouseNonce,uint256 deadline)", "registerLot", grouped=True),
    LotAction("VerifyLot(bytes32 lot,bytes32 assay,uint64 quantity,uint256 warehouseNonce,uint256 enterpriseNonce,"
              "uint256 deadline)", "verifyLot"),
    LotAction("Pledge(bytes32 lot,uint24 bank,bytes32 registration,bytes32 terms,uint64 quantity,uint64 minQuantity,"
              "uint256 enterpriseNonce,uint256 bankNonce,uint256 warehouseNonce,uint256 deadline)", "pledge", grouped=True),
    LotAction("PartialRelease(bytes32 lot,uint64 quantity,uint256 bankNonce,uint256 warehouseNonce,uint256 deadline)",
              "partialRelease"),
    LotAction("SubstituteIn(bytes32 lot,bytes32 goods,bytes32 assay,uint64 quantityIn,uint64 quantityOut,"
              "uint256 enterpriseNonce,uint256 warehouseNonce,uint256 deadline)", "substituteIn", grouped=True),
    LotAction("SubstituteOut(bytes32 lot,bytes32 goods,bytes32 assay,uint64 quantityIn,uint64 quantityOut,"
              "uint256 bankNonce,uint256 warehouseNonce,uint256 deadline)", "substituteOut", grouped=True),
    LotAction("MarginCall(bytes32 lot,bytes32 reason,uint40 cureBy,uint256 nonce,uint256 deadline)", "marginCall"),
    LotAction("CureWithGoods(bytes32 lot,bytes32 goods,bytes32 assay,uint64 quantityIn,uint256 warehouseNonce,"
              "uint256 deadline)", "cureWithGoods"),
    LotAction("CureWithCash(bytes32 lot,bytes32 payment,uint256 bankNonce,uint256 deadline)", "cureWithCash"),
    LotAction("Freeze(bytes32 lot,bytes32 reason,uint256 nonce,uint256 deadline)", "freeze"),
    LotAction("Unfreeze(bytes32 lot,uint256 bankNonce,uint256 warehouseNonce,uint256 deadline)", "unfreeze"),
    LotAction("Default(bytes32 lot,bytes32 reason,uint256 bankNonce,uint256 deadline)", "declareDefault"),
    LotAction("DefaultUncured(bytes32 lot,bytes32 reason,uint256 nonce,uint256 deadline)", "defaultUncured"),
    LotAction("Enforce(bytes32 lot,uint256 bankNonce,uint256 warehouseNonce,uint256 deadline)", "enforce"),
    LotAction("Release(bytes32 lot,uint64 quantity,uint256 bankNonce,uint256 warehouseNonce,uint256 deadline)",
              "release"),
    LotAction("Close(bytes32 lot,uint256 warehouseNonce,uint256 deadline)", "close"),
    LotAction("ClosePledged(bytes32 lot,uint256 bankNonce,uint256 warehouseNonce,uint256 deadline)", "close"),
)  # fmt: skip

#: Every lot transition, by EIP-712 primary type.
LOT_ACTIONS: dict[str, LotAction] = {a.primary_type: a for a in _LOT_ACTION_LIST}


def expected_domain(chain_id: int, contract: str) -> dict[str, Any]:
    """The EIP-712 domain of CollateralRegistry at ``contract`` on chain ``chain_id``."""
    return {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": chain_id, "verifyingContract": to_checksum_address(contract)}


def check_typed_data(typed: Any, *, chain_id: int, contract: str, lot: str) -> LotAction:
    """Is ``typed`` a lot transition of lot ``lot`` (``0x`` bytes32) signed for this contract on this chain?

    Checks the domain, that the types are exactly the contract's for the primary type (so the EIP-712
    digest is the one the contract computes) and that the message names the lot. Returns the
    transition; raises :class:`ValueError` naming what differs.
    """
    if not isinstance(typed, Mapping):
        raise ValueError("typed_data is not an object")
    primary = typed.get("primaryType")
    action = LOT_ACTIONS.get(primary) if isinstance(primary, str) else None
    if action is None:
        raise ValueError(f"primaryType {primary!r} is not a lot transition of CollateralRegistry")
    domain = typed.get("domain")
    wanted = expected_domain(chain_id, contract)
    if not isinstance(domain, Mapping) or set(domain) != set(wanted) or any(
        str(domain[k]).lower() != str(v).lower() for k, v in wanted.items()
    ):
        raise ValueError(f"the domain is {domain}, not CollateralRegistry's {wanted}")
    fields = [{"name": n, "type": t} for n, t in action.fields]
    if typed.get("types") != {"EIP712Domain": _DOMAIN_FIELDS, primary: fields}:
        raise ValueError(f"the types are not the contract's {action.type_string}")
    message = typed.get("message")
    if not isinstance(message, Mapping) or set(message) != {n for n, _ in action.fields}:
        raise ValueError(f"the message does not have exactly the fields of {action.type_string}")
    if str(message["lot"]).lower() != lot.lower():
        raise ValueError(f"the message is about lot {message['lot']}, not {lot}")
    return action


def recover_signer(typed: Mapping[str, Any], signature: str) -> str:
    """The address whose key made ``signature`` (``0x`` r||s||v) over the EIP-712 document ``typed``."""
    try:
        return str(Account.recover_message(encode_typed_data(full_message=dict(typed)), signature=_bytes(signature, "signature")))
    except Exception as exc:  # eth_keys / eth_account raise several types for malformed input
        raise ValueError(f"signature {signature[:20]}… does not recover: {exc}") from None


def _abi_value(value: Any, type_: str) -> Any:
    if type_.endswith("[]"):
        return [_abi_value(v, type_[:-2]) for v in value]
    if type_.startswith("bytes"):
        return _bytes(value, type_)
    if type_ == "address":
        return to_checksum_address(value)
    return value


def encode_call(typed: Mapping[str, Any], signatures: Sequence[str]) -> bytes:
    """The calldata of the transaction that submits the transition ``typed`` with ``signatures`` (in
    signature order), as the ledger and any wallet encode it."""
    action = LOT_ACTIONS[typed["primaryType"]]
    message = typed["message"]
    args = [_abi_value(message[name], type_) for name, type_ in action.arguments]
    if action.grouped:
        args = [args[0], tuple(args[1:])]
    nonces = [message[name] for name in action.nonce_fields]
    values = [*args, message["deadline"], nonces, [_bytes(s, "signature") for s in signatures]]
    return action.selector + abi_encode(action._argument_types(), values)


def decode_call(data: bytes, *, chain_id: int, contract: str) -> tuple[dict[str, Any], list[str]]:
    """The transition a transaction to CollateralRegistry carried: the typed data its parties signed (on
    chain ``chain_id``, contract ``contract``) and the signatures, in signature order.

    The inverse of :func:`encode_call`. Raises :class:`ValueError` for calldata that is no lot transition.
    """
    data = bytes(data)
    for action in (a for a in LOT_ACTIONS.values() if a.selector == data[:4]):
        try:
            values = list(abi_decode(action._argument_types(), data[4:]))
        except Exception:  # eth_abi's DecodingError family: not this function's arguments
            continue
        *leading, deadline, nonces, signatures = values
        if action.grouped:
            leading = [leading[0], *leading[1]]
        if len(nonces) != len(action.nonce_fields):  # Close and ClosePledged share close(): told apart by their signers
            continue
        message: dict[str, Any] = {name: _json_value(v, t, False) for (name, t), v in zip(action.arguments, leading)}
        message.update(zip(action.nonce_fields, nonces), deadline=deadline)
        typed = {
            "types": {"EIP712Domain": _DOMAIN_FIELDS, action.primary_type: [{"name": n, "type": t} for n, t in action.fields]},
            "primaryType": action.primary_type,
            "domain": expected_domain(chain_id, contract),
            "message": message,
        }
        return typed, [_hex(s) for s in signatures]
    raise ValueError(f"calldata with selector {_hex(data[:4])} is no lot transition of CollateralRegistry")


# --- events ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LotEvent:
    """One lot event: its name and arguments (bytes as ``0x`` hex, statuses by name)."""

    name: str
    args: dict[str, Any]


_LOT_EVENT_LIST = (
    "LotRegistered(bytes32 indexed lot,uint24 indexed warehouse,uint24 indexed enterprise,bytes32 goods,"
    "uint64 quantity,bytes8 unit,bytes32[] devices)",
    "LotVerified(bytes32 indexed lot,bytes32 assay,uint64 quantity)",
    "LotPledged(bytes32 indexed lot,uint24 indexed bank,bytes32 indexed registration,bytes32 terms,uint64 quantity,"
    "uint64 minQuantity,uint40 controlStart)",
    "LotPartiallyReleased(bytes32 indexed lot,uint64 quantity,uint64 remaining)",
    "SubstitutionGoodsVerified(bytes32 indexed lot,bytes32 goods,bytes32 assay,uint64 quantityIn,uint64 quantityOut)",
    "SubstitutionCompleted(bytes32 indexed lot,bytes32 goods,bytes32 assay,uint64 quantityOut,uint64 remaining)",
    "MarginCalled(bytes32 indexed lot,address indexed by,bytes32 reason,uint40 cureBy)",
    "MarginCallCuredWithGoods(bytes32 indexed lot,bytes32 goods,bytes32 assay,uint64 quantityIn)",
    "MarginCallCuredWithCash(bytes32 indexed lot,bytes32 payment)",
    "LotFrozen(bytes32 indexed lot,address indexed by,bytes32 reason)",
    "LotUnfrozen(bytes32 indexed lot,uint8 status)",
    "LotDefaulted(bytes32 indexed lot,bytes32 reason)",
    "LotEnforcementStarted(bytes32 indexed lot)",
    "LotReleased(bytes32 indexed lot,uint64 quantity)",
    "LotClosed(bytes32 indexed lot,uint8 from)",
)
_STATUS_ARGS = {("LotUnfrozen", "status"), ("LotClosed", "from")}  # uint8 in the ABI, ICollateralRegistry.Status


@dataclass(frozen=True)
class _EventSpec:
    name: str
    inputs: tuple[tuple[str, str, bool], ...]  # (name, type, indexed)

    @property
    def signature(self) -> str:
        return f"{self.name}({','.join(t for _, t, _ in self.inputs)})"


def _parse_event(text: str) -> _EventSpec:
    match = re.fullmatch(r"(\w+)\((.*)\)", text)
    assert match is not None
    inputs = []
    for part in match.group(2).split(","):
        words = part.split(" ")
        inputs.append((words[-1], words[0], "indexed" in words))
    return _EventSpec(match.group(1), tuple(inputs))


@cache
def _events_by_topic() -> dict[bytes, _EventSpec]:
    specs = map(_parse_event, _LOT_EVENT_LIST)
    return {keccak(spec.signature.encode()): spec for spec in specs}


#: Every lot event's canonical signature (``Name(type,...)``), by name.
LOT_EVENTS: dict[str, str] = {spec.name: spec.signature for spec in _events_by_topic().values()}


def _json_value(value: Any, type_: str, status: bool) -> Any:
    if status:
        return STATUSES[value] if 0 <= value < len(STATUSES) else value
    if isinstance(value, (bytes, bytearray)):
        return _hex(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(v, type_[:-2], False) for v in value]
    if type_ == "address":
        return to_checksum_address(value)
    return value


def decode_lot_event(topics: Sequence[str], data: str) -> LotEvent:
    """Decode a CollateralRegistry lot event from its log's ``topics`` and ``data`` (``0x`` hex).

    Raises :class:`ValueError` for a log that is no lot event or does not decode.
    """
    raw_topics = [_bytes(t, "topic") for t in topics]
    spec = _events_by_topic().get(raw_topics[0]) if raw_topics else None
    if spec is None:
        raise ValueError(f"topic {topics[0] if topics else None} is no CollateralRegistry lot event")
    indexed = [(n, t) for n, t, i in spec.inputs if i]
    plain = [(n, t) for n, t, i in spec.inputs if not i]
    if len(raw_topics) != 1 + len(indexed):
        raise ValueError(f"{spec.name} has {len(indexed)} indexed arguments, the log {len(raw_topics) - 1}")
    try:
        values = {n: abi_decode([t], topic)[0] for (n, t), topic in zip(indexed, raw_topics[1:])}
        values.update(zip((n for n, _ in plain), abi_decode([t for _, t in plain], _bytes(data, "data"))))
    except Exception as exc:  # eth_abi raises its own DecodingError family
        raise ValueError(f"{spec.name} does not decode: {exc}") from None
    args = {n: _json_value(values[n], t, (spec.name, n) in _STATUS_ARGS) for n, t, _ in spec.inputs}
    return LotEvent(spec.name, args)


# --- lot state --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LotState:
    """``lotOf(lot)``: parties by organisation id, statuses by name, bytes as ``0x`` hex, ``unit`` as text."""

    warehouse: int = 0
    enterprise: int = 0
    bank: int = 0
    status: str = "none"
    frozen_from: str = "none"
    control_start: int = 0
    quantity: int = 0
    min_quantity: int = 0
    unit: str = ""
    released: int = 0
    cure_by: int = 0  # Unix time the current (or last) margin call must be cured by
    goods: str = "0x" + "00" * 32
    assay: str = "0x" + "00" * 32

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LotState:
        names = set(cls.__dataclass_fields__)
        if set(data) != names:
            raise ValueError(f"a lot state has exactly the fields {sorted(names)}")
        return cls(**dict(data))


def _unit(code: str) -> str:
    return _bytes(code, "unit").rstrip(b"\0").decode("ascii", "replace")


def _apply(state: LotState, event: LotEvent) -> LotState:
    a = event.args
    match event.name:
        case "LotRegistered":
            return LotState(warehouse=a["warehouse"], enterprise=a["enterprise"], status="inbound", quantity=a["quantity"],
                            unit=_unit(a["unit"]), goods=a["goods"])  # fmt: skip
        case "LotVerified":
            return replace(state, status="verified", quantity=a["quantity"], assay=a["assay"])
        case "LotPledged":
            return replace(state, status="pledged", bank=a["bank"], min_quantity=a["minQuantity"], control_start=a["controlStart"])
        case "LotPartiallyReleased":
            return replace(state, quantity=a["remaining"], released=state.released + a["quantity"])
        case "SubstitutionGoodsVerified":
            return replace(state, quantity=state.quantity + a["quantityIn"])
        case "SubstitutionCompleted":
            return replace(state, quantity=a["remaining"], goods=a["goods"], assay=a["assay"])
        case "MarginCalled":
            return replace(state, status="margin_call", cure_by=a["cureBy"])
        case "MarginCallCuredWithGoods":
            return replace(state, status="pledged", quantity=state.quantity + a["quantityIn"], goods=a["goods"], assay=a["assay"])
        case "MarginCallCuredWithCash":
            return replace(state, status="pledged")
        case "LotFrozen":
            return replace(state, status="frozen", frozen_from=state.status)
        case "LotUnfrozen":
            return replace(state, status=a["status"], frozen_from="none")
        case "LotDefaulted":
            return replace(state, status="defaulted", frozen_from="none")
        case "LotEnforcementStarted":
            return replace(state, status="enforcement")
        case "LotReleased":
            return replace(state, status="released")
        case "LotClosed":
            return replace(state, status="closed")
    raise ValueError(f"unknown lot event {event.name}")  # pragma: no cover - decode_lot_event knows only these


def replay(events: Iterable[LotEvent], state: LotState | None = None) -> LotState:
    """The lot's state after ``events`` (oldest first), from ``state`` or from nothing.

    From nothing the first event must be ``LotRegistered``: a lot exists from its registration, and
    nothing happens to it before. Raises :class:`ValueError` otherwise.
    """
    current = state or LotState()
    for event in events:
        if current.status == "none" and event.name != "LotRegistered":
            raise ValueError(f"the lot's first event is {event.name}, not LotRegistered")
        if current.status != "none" and event.name == "LotRegistered":
            raise ValueError("the lot is registered twice")
        current = _apply(current, event)
    return current
