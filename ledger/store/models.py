"""SQLAlchemy 2 models: organisations, API keys, devices and keys, readings, batches.

Timestamps are stored as naive UTC ``DateTime`` (portable across SQLite and PostgreSQL);
:func:`utc` turns them back into aware datetimes.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "ANCHORED_STATES",
    "ApiKey",
    "Base",
    "Batch",
    "Device",
    "DeviceGap",
    "DeviceKeyRecord",
    "Organisation",
    "Reading",
    "Webhook",
    "WebhookDelivery",
    "naive_utc",
    "utc",
]

ROLES = ("operator", "bank", "auditor", "insurer", "enterprise")


def naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc)


def _now() -> datetime:
    return naive_utc(datetime.now(timezone.utc))


def _uuid() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    pass


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    signer: Mapped[str | None] = mapped_column(String(42))
    # operators only: PEM roots their device keys must chain to (None: no certificate required)
    device_ca: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)

    api_keys: Mapped[list[ApiKey]] = relationship(back_populates="organisation")


class ApiKey(Base):
    """An API key is shown once at creation; only its SHA-256 is stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)

    organisation: Mapped[Organisation] = relationship(back_populates="api_keys")


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    kind: Mapped[str] = mapped_column(String(64))
    lot: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    # sequencing state: the last accepted reading
    last_seq: Mapped[int | None] = mapped_column(BigInteger)
    last_digest: Mapped[str | None] = mapped_column(String(64))
    last_ts: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)

    keys: Mapped[list[DeviceKeyRecord]] = relationship(back_populates="device", order_by="DeviceKeyRecord.id")


class DeviceKeyRecord(Base):
    """A device key as registered on chain; valid over ``[valid_from, valid_until)``."""

    __tablename__ = "device_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    alg: Mapped[str] = mapped_column(String(8))
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(64))
    valid_from: Mapped[datetime] = mapped_column(DateTime)
    valid_until: Mapped[datetime | None] = mapped_column(DateTime)
    tx_hash: Mapped[str | None] = mapped_column(String(66))

    device: Mapped[Device] = relationship(back_populates="keys")


#: Batch states in which its checkpoint is on chain (proofs are served; "final" is past reorgs).
ANCHORED_STATES = ("included", "final")


class Batch(Base):
    """One Merkle tree, anchored as checkpoint ``index``.

    ``status``: ``sealed`` → ``submitted`` (the latest transaction sent for it: hash, nonce, raw
    bytes, fees, time) → ``included`` (its block) → ``final``; see :mod:`ledger.anchoring`.
    """

    __tablename__ = "batches"

    index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    status: Mapped[str] = mapped_column(String(16), default="sealed", index=True)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    count: Mapped[int] = mapped_column(Integer)
    sealed_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    chain_id: Mapped[int | None] = mapped_column(BigInteger)
    contract: Mapped[str | None] = mapped_column(String(42))
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    nonce: Mapped[int | None] = mapped_column(BigInteger)
    raw_tx: Mapped[bytes | None] = mapped_column(LargeBinary)  # the signed transaction, to send it again
    fee_cap: Mapped[int | None] = mapped_column(BigInteger)  # wei: maxFeePerGas, or gasPrice (legacy)
    tip: Mapped[int | None] = mapped_column(BigInteger)  # wei: maxPriorityFeePerGas; null for legacy
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    replacements: Mapped[int] = mapped_column(Integer, default=0)  # replacement transactions signed
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    block_hash: Mapped[str | None] = mapped_column(String(66))
    anchored_at: Mapped[datetime | None] = mapped_column(DateTime)  # first included
    final_at: Mapped[datetime | None] = mapped_column(DateTime)


class Reading(Base):
    __tablename__ = "readings"
    __table_args__ = (
        UniqueConstraint("device_id", "seq", name="uq_readings_device_seq"),
        Index("ix_readings_lot_ts", "lot", "ts"),
        Index("ix_readings_unbatched", "batch_index", "pk"),
    )

    pk: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)  # digest, lowercase hex
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    key_id: Mapped[int] = mapped_column(ForeignKey("device_keys.id"))
    seq: Mapped[int] = mapped_column(BigInteger)
    ts: Mapped[datetime] = mapped_column(DateTime)
    kind: Mapped[str] = mapped_column(String(64))
    lot: Mapped[str | None] = mapped_column(String(128))
    envelope: Mapped[str] = mapped_column(Text)  # the signed reading as received, JSON
    salt: Mapped[bytes] = mapped_column(LargeBinary(32))
    prev_mismatch: Mapped[bool] = mapped_column(Boolean, default=False)
    received_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    batch_index: Mapped[int | None] = mapped_column(ForeignKey("batches.index"))
    leaf_index: Mapped[int | None] = mapped_column(Integer)
    proof: Mapped[bytes | None] = mapped_column(LargeBinary)  # concatenated 32-byte siblings


class DeviceGap(Base):
    """A break in a device's hash chain, kept for auditors and supervision.

    ``kind``: ``prev_mismatch`` (``prev`` is not the last stored digest: readings withheld or
    lost), ``fork`` (``prev`` names a reading that already has a successor: one key reporting
    from two places), ``restart`` (``prev`` is null after earlier readings: the device rebooted).
    """

    __tablename__ = "device_gaps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    reading_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    seq: Mapped[int] = mapped_column(BigInteger)
    previous_seq: Mapped[int | None] = mapped_column(BigInteger)
    expected_prev: Mapped[str | None] = mapped_column(String(64))
    claimed_prev: Mapped[str | None] = mapped_column(String(64))
    detected_at: Mapped[datetime] = mapped_column(DateTime, default=_now)


class Webhook(Base):
    """A subscriber's endpoint for SPEC §9 events; ``secret`` keys the HMAC of every delivery."""

    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[str] = mapped_column(Text)  # space-separated event names
    secret: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)


class WebhookDelivery(Base):
    """One event for one subscriber; ``id`` is the stable delivery id sent with every attempt.

    ``status``: ``pending`` (due at ``next_attempt_at``) → ``delivered`` (a 2xx answer) or
    ``failed`` (every attempt used up).
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id"), index=True)
    event: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)  # the exact JSON bytes sent (and signed), as text
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime)
