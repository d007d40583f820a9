"""CollateralRegistry from Python: the EIP-712 typed data of every lot transition, and a client.

This is the one place that knows how a transition is signed (DOMAIN.md lifecycle; SPEC §8):

- :data:`ACTIONS` maps each typed-data primary type to its EIP-712 type string (verbatim from
  ``contracts/CollateralRegistry.sol``; a test compares them), the contract function that performs it,
  and the parties that sign it, in signature order. The parties are read off the type string: a field
  ``bankNonce`` means "the bank signs"; a bare ``nonce`` means one signature from either of the
  action's ``alternatives`` (``MarginCall``: the bank or the supervision key; ``DefaultUncured``: the
  supervision key alone).
- :func:`typed_data` validates a message against its type and returns the full EIP-712 typed data
  (``types``, ``primaryType``, ``domain``, ``message``) as plain JSON: the same document for every
  signer, for a wallet's ``eth_signTypedData_v4`` or an HSM. :func:`sign_typed_data`,
  :func:`recover_signer` and :func:`typed_data_digest` work on that document.
- :class:`CollateralClient` reads the chain (domain, nonces, organisations, lots), fills in the nonces
  of the parties that must sign (:meth:`~CollateralClient.prepare`), and submits a fully signed
  transition through :meth:`ledger.chain.client.ChainClient.transact` (relayer key, decoded reverts).

Transition functions all take ``(<fields>, deadline, nonces, signatures)``; the fields are the typed
data's fields before the nonces, matched by name to the function's ABI inputs (structs by their
components), so the contract's ABI is the only argument table.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from functools import cache
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak, to_checksum_address
from eth_utils.address import is_address
from web3 import Web3
from web3.contract import Contract

from attestation.collateral import LOT_ACTIONS
from ledger.chain.artifacts import load_artifact
from ledger.chain.base import COLLATERAL, ChainError, SignedTx
from ledger.chain.client import COLLATERAL_ADMIN_DELAY_S, ChainClient

__all__ = [
    "ACTIONS",
    "Action",
    "CollateralClient",
    "Domain",
    "Event",
    "Lot",
    "Organisation",
    "Party",
    "Role",
    "Status",
    "Transition",
    "deploy_collateral_registry",
    "identifier_hash",
    "recover_signer",
    "sign_typed_data",
    "typed_data",
    "typed_data_digest",
    "unit_code",
    "unit_text",
]


class Role(IntEnum):
    """``ICollateralRegistry.Role``."""

    NONE = 0
    WAREHOUSE = 1
    ENTERPRISE = 2
    BANK = 3
    INSURER = 4
    AUDITOR = 5


class Status(IntEnum):
    """``ICollateralRegistry.Status``."""

    NONE = 0
    INBOUND = 1
    VERIFIED = 2
    PLEDGED = 3
    MARGIN_CALL = 4
    FROZEN = 5
    DEFAULTED = 6
    ENFORCEMENT = 7
    RELEASED = 8
    CLOSED = 9


#: The signing party named by the ``SUPERVISOR_ROLE`` key (not an organisation).
SUPERVISOR = "supervisor"

_FIELD = re.compile(r"([A-Za-z0-9\[\]]+) ([A-Za-z0-9_]+)")
_TYPE_STRING = re.compile(r"^([A-Za-z0-9]+)\((.*)\)$")


@dataclass(frozen=True)
class Action:
    """One EIP-712 primary type of the contract."""

    type_string: str
    function: str  # the contract function that performs it
    alternatives: tuple[str, ...] = ()  # who may give the single ``nonce`` signature

    @property
    def primary_type(self) -> str:
        return _parse_type_string(self.type_string)[0]

    @property
    def fields(self) -> tuple[tuple[str, str], ...]:
        """``(name, type)`` of every field, in order."""
        return _parse_type_string(self.type_string)[1]

    @property
    def nonce_fields(self) -> tuple[str, ...]:
        """The nonce fields, in signature order."""
        return tuple(name for name, _ in self.fields if name == "nonce" or name.endswith("Nonce"))

    @property
    def signers(self) -> tuple[str, ...]:
        """The signing parties in signature order (``"bank"``, ``"warehouse"``, ...; ``"bank|supervisor"``
        for a single signature from either)."""
        return tuple(
            "|".join(self.alternatives) if name == "nonce" else name.removesuffix("Nonce") for name in self.nonce_fields
        )

    @property
    def arguments(self) -> tuple[str, ...]:
        """The fields passed to the function (those before the nonces)."""
        names = [name for name, _ in self.fields]
        return tuple(names[: names.index(self.nonce_fields[0])])


@cache
def _parse_type_string(type_string: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    match = _TYPE_STRING.match(type_string)
    if match is None:
        raise ValueError(f"not an EIP-712 type string: {type_string!r}")
    fields = tuple((m.group(2), m.group(1)) for m in map(_FIELD.fullmatch, match.group(2).split(",")) if m)
    if len(fields) != len(match.group(2).split(",")):
        raise ValueError(f"malformed field in {type_string!r}")
    return match.group(1), fields


#: Who gives the single ``nonce`` signature of an either/or transition.
_ALTERNATIVES = {"MarginCall": ("bank", SUPERVISOR), "Freeze": ("warehouse", SUPERVISOR), "DefaultUncured": (SUPERVISOR,)}

_ACTION_LIST = (
    Action("RegisterOrganisation(uint8 role,address signer,string name,uint256 nonce,uint256 deadline)",
           "registerOrganisation", ("signer",)),
    Action("RotateSigner(uint24 org,address newSigner,uint256 currentNonce,uint256 newNonce,uint256 deadline)",
           "rotateSigner"),
    # the lot transitions, as the evidence verifier knows them too
    *(Action(lot.type_string, lot.function, _ALTERNATIVES.get(name, ())) for name, lot in LOT_ACTIONS.items()),
)  # fmt: skip

#: Every typed-data primary type of CollateralRegistry, by name.
ACTIONS: dict[str, Action] = {action.primary_type: action for action in _ACTION_LIST}

#: EIP-712 domain name and version of the contract (``EIP712("CollateralRegistry", "1")``).
DOMAIN_NAME = "CollateralRegistry"
DOMAIN_VERSION = "1"

_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]


# --- identifiers ------------------------------------------------------------------------------


def identifier_hash(identifier: str) -> bytes:
    """``keccak256(bytes(identifier))``: how a receipt code (the lot id), a registration number or a
    device id (as in ``DeviceRegistry``) goes on chain. Deterministic, so not a secret for guessable ids."""
    if not identifier:
        raise ValueError("empty identifier")
    return keccak(text=identifier)


def unit_code(unit: str) -> bytes:
    """The ``bytes8`` of a unit code (``"kg"`` -> ``b"kg\\0\\0\\0\\0\\0\\0"``): 1-8 printable ASCII characters."""
    raw = unit.encode("ascii", "strict") if unit.isascii() else b""
    if not 1 <= len(raw) <= 8 or not all(0x21 <= c <= 0x7E for c in raw):
        raise ValueError(f"a unit is 1-8 printable ASCII characters, got {unit!r}")
    return raw.ljust(8, b"\0")


def unit_text(code: bytes) -> str:
    return bytes(code).rstrip(b"\0").decode("ascii", "replace")


# --- typed data ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Domain:
    """The contract's EIP-712 domain: signatures are bound to this chain and this contract."""

    chain_id: int
    verifying_contract: str
    name: str = DOMAIN_NAME
    version: str = DOMAIN_VERSION

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "chainId": self.chain_id,
            "verifyingContract": to_checksum_address(self.verifying_contract),
        }


def _normalise(value: Any, type_: str, name: str) -> Any:
    """Check ``value`` against a Solidity type and return its JSON form (hex strings for bytes)."""
    if type_.endswith("[]"):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ValueError(f"{name} must be a list of {type_[:-2]}")
        return [_normalise(v, type_[:-2], f"{name}[{i}]") for i, v in enumerate(value)]
    if type_.startswith("uint"):
        bits = int(type_[4:])
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**bits:
            raise ValueError(f"{name} must be an integer in [0, 2**{bits}), got {value!r}")
        return value
    if type_.startswith("bytes"):
        size = int(type_[5:])
        raw = _as_bytes(value, name)
        if len(raw) != size:
            raise ValueError(f"{name} must be {size} bytes, got {len(raw)}")
        return "0x" + raw.hex()
    if type_ == "address":
        if not isinstance(value, str) or not is_address(value):
            raise ValueError(f"{name} must be an address, got {value!r}")
        return to_checksum_address(value)
    if type_ == "string":
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string")
        return value
    raise ValueError(f"unsupported type {type_} of {name}")  # pragma: no cover - not in ACTIONS


def _as_bytes(value: Any, name: str) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str) and value.startswith("0x"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            pass
    raise ValueError(f"{name} must be bytes or a 0x-prefixed hex string, got {value!r}")


def typed_data(action: str, domain: Domain, message: Mapping[str, Any]) -> dict[str, Any]:
    """The full EIP-712 typed data of ``action`` (a key of :data:`ACTIONS`) for ``message``.

    **Parameters**

    - ``action``: the primary type, e.g. ``"Pledge"``.
    - ``domain``: the contract's domain (:meth:`CollateralClient.domain`).
    - ``message``: every field of the type, nonces and deadline included; bytes as ``bytes`` or
      ``0x`` hex, integers as ``int``.

    Raises :class:`ValueError` for an unknown action, a missing or extra field, or a value that does
    not fit its type. The result is plain JSON (bytes as ``0x`` hex), the same for every signer.
    """
    spec = _action(action)
    extra = set(message) - {name for name, _ in spec.fields}
    if extra:
        raise ValueError(f"{action}: unknown field(s) {sorted(extra)}")
    normalised = {}
    for name, type_ in spec.fields:
        if name not in message:
            raise ValueError(f"{action}: missing field {name!r}")
        normalised[name] = _normalise(message[name], type_, f"{action}.{name}")
    return {
        "types": {
            "EIP712Domain": list(_DOMAIN_TYPE),
            action: [{"name": name, "type": type_} for name, type_ in spec.fields],
        },
        "primaryType": action,
        "domain": domain.as_dict(),
        "message": normalised,
    }


def _action(name: str) -> Action:
    try:
        return ACTIONS[name]
    except KeyError:
        raise ValueError(f"unknown action {name!r}; expected one of {sorted(ACTIONS)}") from None


def typed_data_digest(typed: Mapping[str, Any]) -> bytes:
    """The 32-byte EIP-712 digest every party signs."""
    message = encode_typed_data(full_message=dict(typed))
    return keccak(b"\x19" + message.version + message.header + message.body)


def sign_typed_data(private_key: bytes | str, typed: Mapping[str, Any]) -> bytes:
    """A 65-byte ``r || s || v`` signature of ``typed`` (what a wallet's ``eth_signTypedData_v4`` returns)."""
    return bytes(Account.sign_message(encode_typed_data(full_message=dict(typed)), private_key).signature)


def recover_signer(typed: Mapping[str, Any], signature: bytes) -> str:
    """The address whose key made ``signature`` over ``typed`` (ECDSA). Raises :class:`ValueError` if malformed."""
    try:
        return str(Account.recover_message(encode_typed_data(full_message=dict(typed)), signature=bytes(signature)))
    except Exception as exc:  # eth_keys raises several types for a malformed signature
        raise ValueError(f"not a valid signature: {exc}") from None


# --- chain state -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Organisation:
    id: int
    signer: str
    role: Role
    active: bool
    nonce: int  # the signer's next nonce


@dataclass(frozen=True)
class Lot:
    """``ICollateralRegistry.Lot`` as the chain has it; ``status`` is ``Status.NONE`` for an unknown lot."""

    id: bytes
    warehouse: int
    enterprise: int
    bank: int
    status: Status
    frozen_from: Status
    quantity: int
    min_quantity: int
    control_start: int
    unit: str
    released: int
    goods: bytes
    assay: bytes
    cure_by: int = 0  # Unix time by which the current (or last) margin call must be cured


@dataclass(frozen=True)
class Party:
    """One required signature: the role (``"bank"``, ``"supervisor"``...), its organisation (0 for the
    supervision key) and the address that must sign."""

    role: str
    org: int
    signer: str


@dataclass(frozen=True)
class Event:
    """One decoded CollateralRegistry event and where it is on chain."""

    name: str
    args: dict[str, Any]
    tx_hash: str
    block_number: int
    log_index: int


@dataclass(frozen=True)
class Transition:
    """A mined transition."""

    action: str
    tx_hash: str
    block_number: int
    gas_used: int
    logs: list[Any] = field(default_factory=list, repr=False)


def deploy_collateral_registry(
    chain: ChainClient,
    *,
    admin: str | None = None,
    registrar: str | None = None,
    supervisor: str | None = None,
    admin_delay: int = COLLATERAL_ADMIN_DELAY_S,
) -> str:
    """Deploy CollateralRegistry from the relayer; returns its address.

    ``admin`` (the delayed default admin), ``registrar`` and ``supervisor`` default to the relayer.
    """
    accounts = [to_checksum_address(a or chain.address) for a in (admin, registrar, supervisor)]
    receipt = chain.deploy_contract(COLLATERAL, [admin_delay, *accounts])
    return to_checksum_address(receipt["contractAddress"])


class CollateralClient:
    """Reads and transitions of one CollateralRegistry deployment, sent by ``chain``'s relayer."""

    def __init__(self, chain: ChainClient, address: str) -> None:
        self.chain = chain
        self.address = to_checksum_address(address)
        self._domain: Domain | None = None

    @property
    def contract(self) -> Contract:
        return self.chain.reader.contract(COLLATERAL, self.address)

    def _call(self, what: str, fn: Any) -> Any:
        return self.chain.reader._call(what, fn)

    # reads

    def domain(self) -> Domain:
        """The EIP-712 domain, read from the contract (``eip712Domain()``, ERC-5267)."""
        if self._domain is None:
            _, name, version, chain_id, contract, _, _ = self._call("eip712Domain()", self.contract.functions.eip712Domain())
            self._domain = Domain(int(chain_id), to_checksum_address(contract), name, version)
        return self._domain

    def nonce(self, signer: str) -> int:
        """The next nonce ``signer`` must sign with."""
        return int(self._call(f"nonces({signer})", self.contract.functions.nonces(to_checksum_address(signer))))

    def organisation(self, org: int) -> Organisation | None:
        signer, role, active, nonce = self._call(f"organisation({org})", self.contract.functions.organisation(org))
        if role == Role.NONE:
            return None
        return Organisation(org, to_checksum_address(signer), Role(role), bool(active), int(nonce))

    def organisation_of(self, signer: str) -> int:
        """The organisation ``signer`` currently signs for, 0 if none."""
        return int(self._call(f"organisationOf({signer})", self.contract.functions.organisationOf(signer)))

    def supervisor_role(self) -> bytes:
        return bytes(self._call("SUPERVISOR_ROLE()", self.contract.functions.SUPERVISOR_ROLE()))

    def lot(self, lot_id: bytes) -> Lot:
        raw = self._call(f"lotOf(0x{bytes(lot_id).hex()})", self.contract.functions.lotOf(bytes(lot_id)))
        (warehouse, enterprise, bank, status, frozen_from, control_start, quantity, min_quantity, unit, released,
         cure_by, goods, assay) = raw  # fmt: skip
        return Lot(
            bytes(lot_id), warehouse, enterprise, bank, Status(status), Status(frozen_from), quantity, min_quantity,
            control_start, unit_text(unit), released, bytes(goods), bytes(assay), cure_by,
        )  # fmt: skip

    def pending_substitution(self, lot_id: bytes) -> bytes | None:
        """``keccak256(abi.encode(substitution))`` of the substitution waiting for the bank, if any."""
        value = bytes(self._call("pendingSubstitution", self.contract.functions.pendingSubstitution(bytes(lot_id))))
        return None if value == bytes(32) else value

    def lot_of_registration(self, registration: bytes) -> bytes | None:
        """The lot whose live pledge uses ``registration`` (hashed), if any."""
        value = bytes(self._call("lotOfRegistration", self.contract.functions.lotOfRegistration(bytes(registration))))
        return None if value == bytes(32) else value

    def lot_of_device(self, device: bytes) -> bytes | None:
        """The unclosed lot the device (``identifier_hash(device_id)``) supervises, if any."""
        value = bytes(self._call("lotOfDevice", self.contract.functions.lotOfDevice(bytes(device))))
        return None if value == bytes(32) else value

    def close_action(self, lot_id: bytes) -> str:
        """``"ClosePledged"`` (bank and warehouse sign) for a lot that was pledged, else ``"Close"`` (warehouse)."""
        return "ClosePledged" if self.lot(lot_id).status in (Status.RELEASED, Status.ENFORCEMENT) else "Close"

    # preparing

    def required(self, action: str, message: Mapping[str, Any], *, approver: str | None = None) -> list[Party]:
        """The parties that must sign ``action`` for ``message``, in signature order, as the chain has them.

        ``approver`` picks who gives a single either/or signature (``MarginCall``, ``Freeze``): an
        address of the lot's party or of a supervision key (``DefaultUncured``: a supervision key). Fields of ``message`` that name parties
        (``lot``, ``warehouse``, ``bank``, ``org``, ``newSigner``, ``signer``) must be present.
        """
        spec = _action(action)
        lot = self.lot(_as_bytes(message["lot"], "lot")) if "lot" in message else None
        parties = []
        for role in spec.signers:
            if "|" in role or role == SUPERVISOR:
                parties.append(self._either(role.split("|"), lot, message, approver))
            else:
                parties.append(self._party(role, lot, message))
        return parties

    def _either(self, roles: list[str], lot: Lot | None, message: Mapping[str, Any], approver: str | None) -> Party:
        if approver is None:
            raise ValueError(f"one of {roles} signs this action: pass approver=<address>")
        signer = to_checksum_address(approver)
        for role in roles:
            if role == SUPERVISOR:
                role_id = self.supervisor_role()
                if self._call("hasRole", self.contract.functions.hasRole(role_id, signer)):
                    return Party(SUPERVISOR, 0, signer)
                continue
            party = self._party(role, lot, message)
            if party.signer == signer:
                return party
        raise ValueError(f"{signer} is none of {roles} for this action")

    def _party(self, role: str, lot: Lot | None, message: Mapping[str, Any]) -> Party:
        if role == "signer":  # RegisterOrganisation: the new organisation's own key
            return Party(role, 0, to_checksum_address(message["signer"]))
        if role == "new":  # RotateSigner
            return Party(role, int(message["org"]), to_checksum_address(message["newSigner"]))
        if role == "current":
            org = self._require_org(int(message["org"]))
            return Party(role, org.id, org.signer)
        org_id = int(message[role]) if role in message else getattr(lot, role, 0)
        org = self._require_org(org_id, role)
        return Party(role, org.id, org.signer)

    def _require_org(self, org_id: int, role: str = "organisation") -> Organisation:
        org = self.organisation(org_id) if org_id else None
        if org is None:
            raise ValueError(f"no {role} organisation {org_id} on chain")
        return org

    def prepare(self, action: str, *, deadline: int, approver: str | None = None, **fields: Any) -> dict[str, Any]:
        """Typed data for ``action`` with ``fields``, the deadline, and the required parties' current nonces.

        Example: ``prepare("Release", lot=lot_id, quantity=900, deadline=t)`` reads the lot's bank and
        warehouse, their signers' nonces, and returns the typed data both must sign. ``approver`` is the
        address giving an either/or signature (:meth:`required`).
        """
        spec = _action(action)
        message = dict(fields, deadline=deadline)
        for nonce_field, party in zip(spec.nonce_fields, self.required(action, message, approver=approver), strict=True):
            message[nonce_field] = self.nonce(party.signer)
        return typed_data(action, self.domain(), message)

    # submitting

    def submit(self, typed: Mapping[str, Any], signatures: Sequence[bytes]) -> Transition:
        """Send the transition ``typed`` describes with ``signatures`` (in :attr:`Action.signers` order).

        The typed data is checked again (:func:`typed_data`) and must name this contract's domain.
        Raises :class:`~ledger.chain.base.ChainRevert` with the contract's error if it is refused.
        """
        action, what, data = self._encode(typed, signatures)
        return self._transact(action, what, data)

    def send(
        self, typed: Mapping[str, Any], signatures: Sequence[bytes], *, record: Callable[[SignedTx], None] | None = None
    ) -> SignedTx:
        """The sending half of :meth:`submit`, for a caller that keeps track of the transaction across crashes:
        the gas estimate runs the transition first (a refusal raises :class:`~ledger.chain.base.ChainRevert`,
        nothing is sent), then ``record(signed)`` runs before the broadcast (write-ahead). Does not wait:
        :meth:`outcome` tells what became of it."""
        _, what, data = self._encode(typed, signatures)
        return self.chain.send_transaction(what, self.address, data, record=record)

    def outcome(self, action: str, tx_hash: str, *, timeout: float = 0) -> Transition | None:
        """The mined transition of a sent transaction, ``None`` if not mined within ``timeout`` seconds.
        Raises :class:`~ledger.chain.base.ChainRevert` with the contract's error if it reverted."""
        receipt = self.chain.receipt(action, tx_hash, timeout=timeout)
        if receipt is None:
            return None
        return Transition(
            action, Web3.to_hex(receipt["transactionHash"]), int(receipt["blockNumber"]), int(receipt["gasUsed"]),
            list(receipt["logs"]),
        )  # fmt: skip

    def _encode(self, typed: Mapping[str, Any], signatures: Sequence[bytes]) -> tuple[str, str, str]:
        """``(primary type, what, calldata)`` of a signed transition, its typed data checked again."""
        action = str(typed.get("primaryType"))
        spec = _action(action)
        checked = typed_data(action, self.domain(), typed["message"])
        if dict(typed.get("domain", {})) != checked["domain"]:
            raise ValueError(f"typed data is for domain {typed.get('domain')}, not {checked['domain']}")
        message = checked["message"]
        args = self._arguments(spec, message)
        nonces = [message[name] for name in spec.nonce_fields]
        data = self.contract.encode_abi(
            spec.function, [*args, message["deadline"], nonces, [bytes(s) for s in signatures]]
        )
        return action, f"{spec.function} ({action})", data

    def events(self, *, lot: bytes | None = None, from_block: int = 0) -> list[Event]:
        """The contract's events, oldest first: those of ``lot`` (every lot event indexes the lot first), or all.

        Each is decoded with the ABI (``bytes`` as ``0x`` hex, ``Status``/``Role`` as their names)."""
        topics: list[Any] = [None, "0x" + bytes(lot).hex()] if lot is not None else []
        logs = self.chain.reader.get_logs(self.address, topics=topics, from_block=from_block)
        return [event for event in map(self._decode_event, logs) if event is not None]

    def _decode_event(self, log: Any) -> Event | None:
        topic0 = bytes(log["topics"][0]) if log["topics"] else b""
        abi = _event_abis().get(topic0)
        if abi is None:
            return None
        decoded = self.contract.events[abi["name"]]().process_log(log)
        args = {item["name"]: _event_value(item, decoded["args"][item["name"]]) for item in abi["inputs"]}
        return Event(
            abi["name"], args, Web3.to_hex(log["transactionHash"]), int(log["blockNumber"]), int(log["logIndex"])
        )

    def _arguments(self, spec: Action, message: Mapping[str, Any]) -> list[Any]:
        """The function's leading ABI inputs, filled from the message by name."""
        inputs = _function_inputs(spec.function)[:-3]  # (..., deadline, nonces, signatures)
        return [_abi_value(item, message) for item in inputs]

    # organisations (REGISTRAR_ROLE: the relayer must hold it)

    def set_affiliation(self, org_a: int, org_b: int, affiliated: bool) -> Transition:
        """Record whether two organisations are affiliated (a warehouse may not supervise an affiliate's goods)."""
        data = self.contract.encode_abi("setAffiliation", [org_a, org_b, affiliated])
        return self._transact("setAffiliation", "setAffiliation", data)

    def set_organisation_active(self, org: int, active: bool) -> Transition:
        """Allow or stop naming ``org`` in new lots and pledges (its existing lots are unaffected)."""
        data = self.contract.encode_abi("setOrganisationActive", [org, active])
        return self._transact("setOrganisationActive", "setOrganisationActive", data)

    def _transact(self, action: str, what: str, data: str) -> Transition:
        receipt = self.chain.transact(what, self.address, data)
        return Transition(
            action, Web3.to_hex(receipt["transactionHash"]), int(receipt["blockNumber"]), int(receipt["gasUsed"]),
            list(receipt["logs"]),
        )  # fmt: skip


@cache
def _function_inputs(function: str) -> list[dict[str, Any]]:
    for item in load_artifact(COLLATERAL)["abi"]:
        if item["type"] == "function" and item["name"] == function:
            return list(item["inputs"])
    raise ChainError(f"{COLLATERAL} has no function {function}")  # pragma: no cover - artifact mismatch


@cache
def _event_abis() -> dict[bytes, dict[str, Any]]:
    """topic0 -> event ABI of every CollateralRegistry event."""
    table = {}
    for item in load_artifact(COLLATERAL)["abi"]:
        if item["type"] == "event":
            signature = f"{item['name']}({','.join(i['type'] for i in item['inputs'])})"
            table[keccak(text=signature)] = item
    return table


_ENUMS = {"Status": Status, "Role": Role}


def _event_value(item: Mapping[str, Any], value: Any) -> Any:
    enum = _ENUMS.get(str(item.get("internalType", "")).rsplit(".", 1)[-1].removeprefix("enum "))
    if enum is not None:
        return enum(value).name.lower()
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [_event_value({"type": item["type"][:-2]}, v) for v in value]
    return value


def _abi_value(item: Mapping[str, Any], message: Mapping[str, Any]) -> Any:
    if item["type"] == "tuple":
        return tuple(_abi_value(component, message) for component in item["components"])
    value = message[item["name"]]
    if item["type"].startswith("bytes") and item["type"] != "bytes":
        if isinstance(value, list):
            return [bytes.fromhex(v[2:]) for v in value]
        return bytes.fromhex(value[2:])
    return value
