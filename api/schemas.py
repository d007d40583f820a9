"""Public request and response models (the OpenAPI document is built from these)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "ERROR_RESPONSES",
    "AlertPublic",
    "DeviceCreate",
    "DevicePublic",
    "ErrorBody",
    "GapPublic",
    "Health",
    "IngestResult",
    "InsurerEvent",
    "KeyRotation",
    "LotValuationPublic",
    "MarginCallPublic",
    "PricePublic",
    "PriceResult",
    "ReadingPublic",
    "Revocation",
    "RulesView",
]


class ErrorDetail(BaseModel):
    code: str = Field(description="snake_case, stable: what went wrong", examples=["device_not_found"])
    message: str = Field(description="what to fix")


class ErrorBody(BaseModel):
    """SPEC §6: the one body of every error answer."""

    error: ErrorDetail


#: Declared on every route: any 4xx or 5xx answer carries :class:`ErrorBody`.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorBody, "description": "the request was refused: `error.code` says why, `error.message` what to fix"},
    "5XX": {"model": ErrorBody, "description": "the ledger or a dependency (database, chain) failed; retry later"},
}


class DeviceCreate(BaseModel):
    """SPEC §2: a device registration with its proof of possession."""

    id: str = Field(description="1-64 chars of [A-Za-z0-9._:-]", examples=["wh1-scale-03"])
    alg: Literal["ES256", "ES256K", "EdDSA"]
    public_key: str = Field(description="PEM SubjectPublicKeyInfo")
    kind: str = Field(description="thing model of the device, e.g. load_cell")
    lot: str | None = Field(None, max_length=128)
    certificate_chain: list[str] | None = Field(None, description="PEM certificates, device first (optional)")
    pop: str = Field(description='base64url signature over JCS({"device", "public_key", "purpose": "pledgeledger/register"})')


class DeviceKeyPublic(BaseModel):
    alg: str
    fingerprint: str = Field(description="0x SHA-256 of the DER SubjectPublicKeyInfo, as recorded on chain")
    public_key: str
    valid_from: str
    valid_until: str | None = Field(description="null while the key is current")
    tx_hash: str | None = Field(description="the transaction that recorded this key on chain")


class DevicePublic(BaseModel):
    id: str
    kind: str
    lot: str | None
    organisation: str
    revoked_at: str | None
    last_seq: int | None
    last_reading: str | None = Field(description="id of the device's last accepted reading")
    keys: list[DeviceKeyPublic] = Field(description="every key the device has had, oldest first")
    alg: str = Field(description="the current (last) key's algorithm")
    fingerprint: str = Field(description="the current (last) key's fingerprint")
    valid_from: str
    tx_hash: str | None = Field(description="the transaction of the change this answer reports, if any")


class KeyRotation(BaseModel):
    """A new key for a registered device, with its proof of possession (same rules as registration)."""

    alg: Literal["ES256", "ES256K", "EdDSA"]
    public_key: str
    certificate_chain: list[str] | None = None
    pop: str


class Revocation(BaseModel):
    at: str | None = Field(None, description="RFC 3339 UTC; default now. May be in the past (a compromise found late)")
    reason: str | None = Field(None, max_length=500)


class GapPublic(BaseModel):
    kind: Literal["prev_mismatch", "fork", "restart"]
    reading: str
    seq: int
    previous_seq: int | None
    expected_prev: str | None
    claimed_prev: str | None
    detected_at: str


class IngestResult(BaseModel):
    id: str | None = Field(description="the reading's digest (lowercase hex), when it could be computed")
    status: Literal["accepted", "duplicate", "rejected"]
    code: str | None = None
    message: str | None = None


class ReadingPublic(BaseModel):
    id: str
    reading: dict[str, Any] = Field(description="the signed reading as received")
    received_at: str
    batch: int | None = Field(description="index of the batch (and checkpoint) it was sealed into")
    prev_mismatch: bool = Field(description="prev did not match the device's previous stored reading: a gap")


class ChainInfo(BaseModel):
    id: int
    rpc_url: str | None
    contracts: dict[str, str]


class Health(BaseModel):
    status: Literal["ok"]
    chain: ChainInfo
    db: str
    anchoring: dict[str, Any]


class WebhookCreate(BaseModel):
    url: str = Field(description="http(s):// URL of your receiver", examples=["https://bank.example/pledgeledger/events"])
    events: list[str] = Field(description="event names, e.g. alert.raised, lot.frozen, margin_call.opened", examples=[["alert.raised", "lot.frozen"]])


class WebhookPublic(BaseModel):
    id: str
    url: str
    events: list[str]
    active: bool
    created_at: str


class WebhookCreated(WebhookPublic):
    secret: str = Field(description="the HMAC-SHA256 key of X-Pledgeledger-Signature; shown only now")


class WebhookDeliveryPublic(BaseModel):
    id: str = Field(description="X-Pledgeledger-Delivery: the same on every retry")
    event: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status: int | None
    last_error: str | None
    next_attempt_at: str | None
    created_at: str
    delivered_at: str | None
    body: dict[str, Any]


# --- valuation and margin calls (ledger.valuation) ---------------------------------------------


class PricePublic(BaseModel):
    id: str = Field(description="hex SHA-256 of the payload's RFC 8785 bytes")
    feed: str
    commodity: str
    price: str = Field(description="decimal string, exactly as signed, per one `unit`")
    currency: str
    unit: Literal["kg", "t"]
    ts: str = Field(description="when the feed observed the price")
    received_at: str
    price_point: dict[str, Any] = Field(description="the signed price point as received (payload, alg, sig)")


class PriceResult(BaseModel):
    id: str | None
    status: Literal["accepted", "duplicate", "rejected"]
    code: str | None = Field(None, description="why it was rejected")
    message: str | None = None


class ValuationFigures(BaseModel):
    quantity: int
    unit: str
    price: str
    price_unit: str
    currency: str
    haircut: str
    market_value: str = Field(description="quantity × price")
    collateral_value: str = Field(description="market value × haircut")
    outstanding: str = Field(description="loan value − cash paid in to cure margin calls")
    paid_in: str
    ltv: str | None = Field(description="outstanding / collateral value (6 decimals); null when nothing is left to value")
    level: Literal["ok", "warning", "disposal"]


class MarginCallPublic(BaseModel):
    id: str
    lot: str
    status: Literal["open", "cured", "defaulted", "closed"]
    level: str = Field(description="warning or disposal (the valuation that opened it), bank (raised by the bank)")
    disposal: bool = Field(description="a valuation during the call was above the disposal line")
    ltv: str | None
    reason: str = Field(description="the on-chain reason: the price point's id as bytes32")
    cure_by: str = Field(description="the cure deadline recorded on chain")
    opened_at: str
    action: str | None = Field(description="the MarginCall action")
    default_proposal: str | None = Field(description="the Default action proposed for the bank to sign (disposal line)")
    cured_by: Literal["goods", "cash"] | None
    cure_action: str | None
    paid_in: str | None = Field(description="cash amount of a cash cure")
    default_action: str | None = Field(description="the DefaultUncured action, when the call was not cured in time")
    closed_at: str | None


class LotValuationPublic(BaseModel):
    lot: str
    status: str = Field(description="the lot's status as last seen on chain")
    state: Literal["valued", "no_terms", "invalid_terms", "no_price", "price_stale", "unit_unknown"]
    valued_at: str
    terms: dict[str, Any] | None = Field(description="the loan terms agreed at pledge")
    price: PricePublic | None = Field(description="the latest price of the terms' commodity and currency")
    valuation: ValuationFigures | None
    margin_call: MarginCallPublic | None = Field(description="the open margin call, if any")
class AlertReading(BaseModel):
    """An evidence reading of an alert, with where to get its proof bundle."""

    id: str = Field(description="the reading's digest (lowercase hex)")
    device: str | None = None
    kind: str | None = None
    lot: str | None = None
    ts: str | None = Field(None, description="the time the device signed")
    received_at: str | None = None
    data: dict[str, Any] | None = Field(None, description="the reading's data as the device signed it")
    batch: int | None = Field(None, description="the batch (checkpoint) it was anchored in, once sealed")
    proof: str = Field(description="GET this for the SPEC §4 proof bundle (409 proof_pending until anchored)")


class AlertFreeze(BaseModel):
    status: Literal["pending", "confirmed", "failed", "already_frozen", "not_freezable"]
    action: str | None = Field(description="the Freeze action (GET /v1/actions/{id}), signed by the supervision key")
    tx_hash: str | None
    block_number: int | None


class AlertPublic(BaseModel):
    id: str
    lot: str
    device: str | None
    rule: str = Field(description="the rule that raised it (README: Supervision)")
    severity: Literal["critical", "warning"] = Field(description="critical alerts freeze the lot on chain")
    status: Literal["open", "cleared"]
    reason: str = Field(description="0x keccak256 of the evidence readings' sorted 32-byte digests: the Freeze's reason on chain")
    detail: dict[str, Any] = Field(description="what the rule measured and the thresholds it applied")
    readings: list[AlertReading] = Field(description="the evidence, as committed in reason")
    raised_at: str
    cleared_at: str | None
    cleared_by: str | None = Field(description="unfreeze (bank and warehouse unfroze the lot on chain) or the acknowledging organisation")
    freeze: AlertFreeze | None = Field(description="null for a warning")


class InsurerEvent(AlertPublic):
    event: Literal["fire", "water", "temperature"]


class RulesView(BaseModel):
    lot: str | None
    defaults: dict[str, Any] = Field(description="every threshold's default")
    warehouse_overrides: dict[str, Any] = Field(description="what the warehouse set (PUT /v1/rules)")
    lot_overrides: dict[str, Any] | None = Field(description="what the warehouse set for this lot (PUT /v1/lots/{id}/rules)")
    effective: dict[str, Any] = Field(description="the thresholds in force")
