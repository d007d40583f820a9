"""Request and response models of organisations on chain, lots and actions (SPEC §8)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from ledger.lots import ACTION_TYPES, MAX_EXPIRY
from ledger.store.models import ACTION_STATES

__all__ = [
    "ActionCreate",
    "ActionPublic",
    "LotCreate",
    "LotCreated",
    "LotPublic",
    "LotStatus",
    "OrganisationPublic",
    "SignatureCreate",
    "SignerUpdate",
    "TimelinePublic",
]

ActionType = Literal[ACTION_TYPES]  # type: ignore[valid-type]
LotStatus = Literal["proposed", "inbound", "verified", "pledged", "margin_call", "frozen", "defaulted", "enforcement", "released", "closed"]
_EXPIRES = Field(None, ge=1, le=int(MAX_EXPIRY.total_seconds()), description="seconds the action collects signatures (default 86,400)")


class PartyPublic(BaseModel):
    role: str = Field(description="warehouse, enterprise, bank, signer (an organisation's own key) or supervisor")
    org: str | None = Field(description="the organisation's id; null for the supervision key or a key not yet registered")
    signer: str = Field(description="the address whose EIP-712 signature is required")
    signed: bool


class SignaturePublic(BaseModel):
    role: str
    org: str | None
    signer: str
    signature: str
    received_at: str | None


class ActionError(BaseModel):
    code: str = Field(description="the contract's custom error (e.g. CollateralRegistryInvalidNonce), or reverted")
    message: str


class ActionPublic(BaseModel):
    """A proposed transition. ``typed_data`` is the EIP-712 document every required party signs
    (``eth_signTypedData_v4``); ``required`` lists them in signature order."""

    id: str
    lot: str | None = Field(description="the lot's receipt code; null for an organisation's registration")
    type: str = Field(description="register, verify, pledge, ..., or register_organisation")
    primary_type: str = Field(description="the EIP-712 primary type (Pledge, Release, ...)")
    status: Literal[ACTION_STATES]  # type: ignore[valid-type]
    params: dict[str, Any] = Field(description="the human values proposed, with the hashes that go on chain")
    required: list[PartyPublic]
    signatures: list[SignaturePublic]
    typed_data: dict[str, Any]
    proposed_by: str | None = Field(description="the proposing organisation; null for the system's own actions")
    deadline: str | None
    tx_hash: str | None = Field(description="the relayer's transaction, once sent")
    block_number: int | None
    gas_used: int | None
    error: ActionError | None = Field(description="why the contract refused it (status failed)")
    created_at: str | None
    submitted_at: str | None
    confirmed_at: str | None


class ActionCreate(BaseModel):
    type: ActionType = Field(description="the transition to propose")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="human values: quantities (integers in the lot's unit), JSON documents (assay, goods, terms, "
        "reason, payment) whose keccak256(RFC 8785) goes on chain, the registration number as text, bank as an "
        "organisation id or name; see the README",
    )
    expires_in_s: int | None = _EXPIRES


class SignatureCreate(BaseModel):
    signature: str = Field(description="0x and 65 bytes r||s||v: eth_signTypedData_v4 of the action's typed_data", max_length=200)


class LotCreate(BaseModel):
    id: str = Field(description="the electronic warehouse receipt code: 1-128 of A-Z a-z 0-9 . _ : - (the readings' lot)", examples=["EWR-2026-0001"])
    enterprise: str = Field(description="the owner of the goods: organisation id or name")
    goods: Any = Field(description="JSON description of the goods; keccak256 of its RFC 8785 bytes goes on chain")
    quantity: int = Field(ge=1, lt=2**64, description="integer quantity in unit")
    unit: str = Field(description="1-8 printable ASCII characters, e.g. kg", examples=["kg"])
    devices: list[str] = Field(description="ids of the devices your warehouse operates that supervise the lot (1-32)")
    insurer: str | None = Field(None, description="the insurer's organisation id or name, if insured")
    expires_in_s: int | None = _EXPIRES


class OrgRef(BaseModel):
    id: str
    name: str
    chain_org: int | None


class LotChainState(BaseModel):
    """``lotOf(chain_lot)`` read from the chain now."""

    status: str
    frozen_from: str | None
    warehouse: str | None
    enterprise: str | None
    bank: str | None
    quantity: int
    min_quantity: int
    released: int
    unit: str
    control_start: str | None
    goods: str
    assay: str | None
    documents_match: dict[str, bool] = Field(description="whether the stored goods and assay documents hash to what the chain holds")


class LotPublic(BaseModel):
    id: str
    chain_lot: str = Field(description="keccak256 of the receipt code: the lot's id on chain")
    status: str = Field(description="the chain's status (proposed: its registration is not mined yet)")
    warehouse: OrgRef | None
    enterprise: OrgRef | None
    bank: OrgRef | None
    insurer: OrgRef | None
    quantity: int
    unit: str
    goods: Any
    goods_hash: str
    assay: Any
    assay_hash: str | None
    registration: str | None
    terms: Any
    terms_hash: str | None
    devices: list[str]
    created_at: str | None
    updated_at: str | None
    chain: LotChainState | None = Field(None, description="the lot as the chain has it (single-lot reads only)")


class LotCreated(BaseModel):
    lot: LotPublic
    action: ActionPublic = Field(description="the register action: the warehouse signs its typed_data")


class TimelinePublic(BaseModel):
    lot: str
    chain_lot: str
    entries: list[dict[str, Any]] = Field(
        description="oldest first; kind chain_event (event, args, tx_hash, block_number, log_index), action (id, type, "
        "status, tx_hash) or reading (id, device, seq, reading_kind, batch)"
    )
    readings_truncated: bool


class OrganisationPublic(BaseModel):
    id: str
    name: str
    role: str
    signer: str | None = Field(description="the address that signs this organisation's approvals")
    chain_org: int | None = Field(description="its id in CollateralRegistry once its signer is registered")
    chain_tx: str | None
    registration: ActionPublic | None = Field(description="while not on chain: the RegisterOrganisation action its signer signs")


class SignerUpdate(BaseModel):
    signer: str = Field(description="0x address of the key that will sign for the organisation", max_length=42)
