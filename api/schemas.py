"""Public request and response models (the OpenAPI document is built from these)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = ["DeviceCreate", "DevicePublic", "Health", "IngestResult", "ReadingPublic"]


class DeviceCreate(BaseModel):
    """SPEC §2: a device registration with its proof of possession."""

    id: str = Field(description="1-64 chars of [A-Za-z0-9._:-]", examples=["wh1-scale-03"])
    alg: Literal["ES256", "ES256K", "EdDSA"]
    public_key: str = Field(description="PEM SubjectPublicKeyInfo")
    kind: str = Field(description="thing model of the device, e.g. load_cell")
    lot: str | None = Field(None, max_length=128)
    certificate_chain: list[str] | None = Field(None, description="PEM certificates, device first (optional)")
    pop: str = Field(description='base64url signature over JCS({"device", "public_key", "purpose": "pledgeledger/register"})')


class DevicePublic(BaseModel):
    id: str
    kind: str
    lot: str | None
    organisation: str
    alg: str
    fingerprint: str = Field(description="0x SHA-256 of the DER SubjectPublicKeyInfo, as recorded on chain")
    valid_from: str
    tx_hash: str | None


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
