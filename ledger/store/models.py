"""SQLAlchemy 2 models: organisations, API keys, devices and keys, readings, batches, lots and actions.

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
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "ACTION_STATES",
    "ANCHORED_STATES",
    "Action",
    "ActionSignature",
    "Alert",
    "ApiKey",
    "Base",
    "Batch",
    "Device",
    "DeviceGap",
    "DeviceKeyRecord",
    "Lot",
    "LotDevice",
    "LotValuation",
    "MarginCall",
    "Organisation",
    "PriceFeed",
    "PricePoint",
    "Reading",
    "SupervisionCheck",
    "SupervisionCursor",
    "SupervisionRules",
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
    __table_args__ = (UniqueConstraint("chain_org", name="uq_organisations_chain_org"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    signer: Mapped[str | None] = mapped_column(String(42))
    # operators only: PEM roots their device keys must chain to (None: no certificate required)
    device_ca: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    # its id in CollateralRegistry (uint24) once ``signer`` is registered there, and that transaction
    chain_org: Mapped[int | None] = mapped_column(Integer)
    chain_tx: Mapped[str | None] = mapped_column(String(66))

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
    """A stored reading: the envelope as received, its salt, and where it sits in a batch.

    ``device_id`` and ``key_id`` name a device and one of its keys, but carry no foreign key:
    the table takes every reading, and PostgreSQL checks a foreign key row by row (two of them
    cost about 9 µs per reading in ``COPY``, a third of the database's share of ingestion).
    :mod:`ledger.ingest` inserts only ids it has just read under the device's row lock, and
    devices and keys are never deleted.
    """

    __tablename__ = "readings"
    __table_args__ = (
        UniqueConstraint("device_id", "seq", name="uq_readings_device_seq"),
        Index("ix_readings_lot_ts", "lot", "ts"),
        Index("ix_readings_unbatched", "batch_index", "pk"),
    )

    pk: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)  # digest, lowercase hex
    device_id: Mapped[str] = mapped_column(String(64))  # a devices.id (no foreign key: see above)
    key_id: Mapped[int] = mapped_column(Integer)  # a device_keys.id
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


class Lot(Base):
    """A goods lot. ``id`` is its electronic warehouse receipt code (one receipt, one lot), the ``lot`` of
    its readings; on chain the lot is ``chain_lot`` = ``keccak256(id)``.

    The chain is the record of the lot's state and parties; these columns are the off-chain metadata
    (the documents whose hashes the chain holds) and a cache of the last state seen on chain
    (``status``, ``bank_id``, ``quantity``), updated whenever one of its actions is mined, so that
    reads can be scoped by party without a chain call per lot.
    """

    __tablename__ = "lots"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    chain_lot: Mapped[str] = mapped_column(String(66), unique=True)  # 0x keccak256(id)
    warehouse_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    enterprise_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    bank_id: Mapped[str | None] = mapped_column(ForeignKey("organisations.id"), index=True)  # once pledged
    insurer_id: Mapped[str | None] = mapped_column(ForeignKey("organisations.id"), index=True)  # who insures it
    status: Mapped[str] = mapped_column(String(16), default="inbound")  # lower-case ICollateralRegistry.Status
    quantity: Mapped[int] = mapped_column(BigInteger)  # in ``unit``, as on chain
    unit: Mapped[str] = mapped_column(String(8))
    goods: Mapped[str] = mapped_column(Text)  # JSON description; its hash is on chain
    goods_hash: Mapped[str] = mapped_column(String(66))
    assay: Mapped[str | None] = mapped_column(Text)  # JSON quality/assay record; hash on chain
    assay_hash: Mapped[str | None] = mapped_column(String(66))
    registration: Mapped[str | None] = mapped_column(String(128))  # movable-property registration number
    terms: Mapped[str | None] = mapped_column(Text)  # JSON loan terms agreed at pledge; hash on chain
    terms_hash: Mapped[str | None] = mapped_column(String(66))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_now, onupdate=_now)

    devices: Mapped[list[LotDevice]] = relationship(back_populates="lot", order_by="LotDevice.position")


class LotDevice(Base):
    """A device supervising a lot (on chain in the lot's record and ``lotOfDevice``)."""

    __tablename__ = "lot_devices"

    lot_id: Mapped[str] = mapped_column(ForeignKey("lots.id"), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), primary_key=True, index=True)
    position: Mapped[int] = mapped_column(Integer)

    lot: Mapped[Lot] = relationship(back_populates="devices")


#: An action's states (SPEC §8): collecting signatures → submitted (``tx_hash``) → confirmed (mined) or
#: failed (``error_code``/``error_message``: the contract's reason); ``expired`` when its deadline passed
#: before every signature came in.
ACTION_STATES = ("collecting", "submitted", "confirmed", "failed", "expired")


class Action(Base):
    """A proposed lot transition (SPEC §8): the EIP-712 typed data every required party signs.

    ``type`` is the API's name (``pledge``, ``partial_release``...), ``primary_type`` the contract's
    (``Pledge``, ``PartialRelease``...). ``required`` is the JSON list of ``{"role", "org", "signer"}``
    in signature order. ``proposed_by`` is null for actions the system raises itself (a freeze by the
    supervision key, a margin call).
    """

    __tablename__ = "actions"
    __table_args__ = (Index("ix_actions_lot_created", "lot_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    lot_id: Mapped[str | None] = mapped_column(ForeignKey("lots.id"))
    type: Mapped[str] = mapped_column(String(32))
    primary_type: Mapped[str] = mapped_column(String(32))
    params: Mapped[str] = mapped_column(Text)  # JSON, as proposed
    typed_data: Mapped[str] = mapped_column(Text)  # JSON, the EIP-712 document every party signs
    required: Mapped[str] = mapped_column(Text)  # JSON list of parties
    status: Mapped[str] = mapped_column(String(16), default="collecting", index=True)
    proposed_by: Mapped[str | None] = mapped_column(ForeignKey("organisations.id"))
    deadline: Mapped[datetime] = mapped_column(DateTime)
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    raw_tx: Mapped[bytes | None] = mapped_column(LargeBinary)  # the signed transaction, recorded before it is sent
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    gas_used: Mapped[int | None] = mapped_column(BigInteger)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime)

    signatures: Mapped[list[ActionSignature]] = relationship(
        back_populates="action", order_by="ActionSignature.position", cascade="all, delete-orphan"
    )


class ActionSignature(Base):
    """One party's EIP-712 signature of an action's typed data, at its ``position`` in ``required``."""

    __tablename__ = "action_signatures"
    __table_args__ = (UniqueConstraint("action_id", "position", name="uq_action_signatures_position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    action_id: Mapped[str] = mapped_column(ForeignKey("actions.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    organisation_id: Mapped[str | None] = mapped_column(ForeignKey("organisations.id"))  # null: supervision key
    signer: Mapped[str] = mapped_column(String(42))
    signature: Mapped[str] = mapped_column(String(132))  # 0x r||s||v
    received_at: Mapped[datetime] = mapped_column(DateTime, default=_now)

    action: Mapped[Action] = relationship(back_populates="signatures")


class PriceFeed(Base):
    """A price feed the ledger trusts (``pledgeledger feed add``): its points must verify with ``public_key``.

    ``commodities`` (space-separated) limits what it may price; null: any commodity.
    """

    __tablename__ = "price_feeds"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the ``feed`` its points name
    alg: Mapped[str] = mapped_column(String(8))
    public_key: Mapped[str] = mapped_column(Text)  # PEM SubjectPublicKeyInfo
    commodities: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)


class PricePoint(Base):
    """A signed price point as received (``envelope``), kept so every valuation can be re-done and re-verified.
    ``id`` is the hex SHA-256 of its payload's RFC 8785 bytes; ``price`` the decimal string signed."""

    __tablename__ = "price_points"
    __table_args__ = (Index("ix_price_points_latest", "commodity", "currency", "ts"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    feed_id: Mapped[str] = mapped_column(ForeignKey("price_feeds.id"), index=True)
    commodity: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    unit: Mapped[str] = mapped_column(String(8))
    price: Mapped[str] = mapped_column(String(40))
    ts: Mapped[datetime] = mapped_column(DateTime)
    envelope: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime, default=_now)


class LotValuation(Base):
    """A lot valued at a price point: the inputs (price point, quantity, cash paid in) and the results.
    A row is written when an input changed since the lot's previous one."""

    __tablename__ = "lot_valuations"
    __table_args__ = (Index("ix_lot_valuations_lot_at", "lot_id", "valued_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lot_id: Mapped[str] = mapped_column(ForeignKey("lots.id"))
    price_id: Mapped[str] = mapped_column(ForeignKey("price_points.id"), index=True)
    quantity: Mapped[int] = mapped_column(BigInteger)
    unit: Mapped[str] = mapped_column(String(8))
    paid_in: Mapped[str] = mapped_column(String(40))
    collateral_value: Mapped[str] = mapped_column(String(48))
    ltv: Mapped[str | None] = mapped_column(String(48))
    level: Mapped[str] = mapped_column(String(16))  # ok | warning | disposal
    valued_at: Mapped[datetime] = mapped_column(DateTime, default=_now)


#: A margin call's states: ``open`` (the lot is in MarginCall on chain) → ``cured`` (goods or cash, back to
#: Pledged), ``defaulted`` (uncured past ``cure_by``, or the bank declared default) or ``closed`` (the pledge
#: ended another way: released, enforced, closed).
MARGIN_CALL_STATES = ("open", "cured", "defaulted", "closed")


class MarginCall(Base):
    """A margin call on a lot, as the chain recorded it (``cure_by`` is the lot's on-chain ``cureBy``).

    ``valuation_id`` is the valuation that raised it (null when the bank raised it itself); ``disposal`` is set
    once a valuation during the call is above the disposal line, and ``default_proposal_id`` is then the
    ``Default`` action proposed for the bank to sign. At most one open call per lot.
    """

    __tablename__ = "margin_calls"
    __table_args__ = (
        Index("uq_margin_calls_open_lot", "lot_id", unique=True,
              sqlite_where=text("status = 'open'"), postgresql_where=text("status = 'open'")),  # fmt: skip
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    lot_id: Mapped[str] = mapped_column(ForeignKey("lots.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="open")
    level: Mapped[str] = mapped_column(String(16))  # warning | disposal (at opening); "bank" if the bank called it
    disposal: Mapped[bool] = mapped_column(Boolean, default=False)
    ltv: Mapped[str | None] = mapped_column(String(48))
    valuation_id: Mapped[int | None] = mapped_column(ForeignKey("lot_valuations.id"))
    reason: Mapped[str] = mapped_column(String(66))  # the on-chain reason (0x bytes32): the price point's id
    cure_by: Mapped[datetime] = mapped_column(DateTime)
    opened_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    action_id: Mapped[str | None] = mapped_column(ForeignKey("actions.id"))  # the MarginCall action, if ours
    default_proposal_id: Mapped[str | None] = mapped_column(ForeignKey("actions.id"))
    cured_by: Mapped[str | None] = mapped_column(String(8))  # goods | cash
    cure_action_id: Mapped[str | None] = mapped_column(ForeignKey("actions.id"))
    paid_in: Mapped[str | None] = mapped_column(String(40))  # cash amount of a cash cure
    default_action_id: Mapped[str | None] = mapped_column(ForeignKey("actions.id"))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime)
class Alert(Base):
    """A supervision rule's finding about a lot (:mod:`ledger.supervision`), with the readings that
    triggered it.

    ``status``: ``open`` → ``cleared`` (``cleared_by``: ``unfreeze`` when the chain shows the lot
    unfrozen, ``acknowledged`` for a warning a party dismissed). ``readings`` is the JSON list of the
    evidence readings' ids; ``reason`` the 0x commitment to them
    (:func:`attestation.documents.evidence_reason`), which a freeze carries on chain. ``freeze_status``
    (critical alerts only): ``pending`` → ``confirmed`` (``freeze_action_id``), ``failed`` (the
    action says why), ``already_frozen`` or ``not_freezable`` (the lot was not pledged).
    """

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_lot_status", "lot_id", "status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    lot_id: Mapped[str] = mapped_column(ForeignKey("lots.id"))
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id"))
    rule: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))  # critical (freezes) | warning
    status: Mapped[str] = mapped_column(String(16), default="open")
    readings: Mapped[str] = mapped_column(Text)  # JSON list of reading ids
    reason: Mapped[str] = mapped_column(String(66))
    detail: Mapped[str] = mapped_column(Text)  # JSON: the measured values and the thresholds applied
    trigger_pk: Mapped[int | None] = mapped_column(BigInteger)  # the reading whose arrival raised it
    raised_at: Mapped[datetime] = mapped_column(DateTime, default=_now, index=True)
    cleared_at: Mapped[datetime | None] = mapped_column(DateTime)
    cleared_by: Mapped[str | None] = mapped_column(String(36))
    freeze_status: Mapped[str | None] = mapped_column(String(16), index=True)
    freeze_action_id: Mapped[str | None] = mapped_column(ForeignKey("actions.id"))


class SupervisionRules(Base):
    """A warehouse's rule thresholds (``lot_id`` empty), or its override for one lot: JSON of the fields
    of :class:`ledger.supervision.config.RulesConfig` that differ from the layer below."""

    __tablename__ = "supervision_rules"

    warehouse_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    lot_id: Mapped[str] = mapped_column(String(128), primary_key=True, default="")
    config: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_now, onupdate=_now)


class SupervisionCursor(Base):
    """How far the supervision loop has read the readings table: every ``pk`` up to ``position`` except
    ``holes`` (JSON ``[[first, last, seen_at], …]``: ranges not visible yet, e.g. a transaction still
    open, retried until they appear or are old enough to be rolled back)."""

    __tablename__ = "supervision_cursor"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger, default=0)
    holes: Mapped[str] = mapped_column(Text, default="[]")
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_now, onupdate=_now)


class SupervisionCheck(Base):
    """A rule waiting for later readings before it decides (a weight change looks for a vehicle or video
    event in the window after it too): evaluated once ``due_at`` has passed."""

    __tablename__ = "supervision_checks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(String(32))
    lot_id: Mapped[str] = mapped_column(String(128))
    device_id: Mapped[str] = mapped_column(String(64))
    reading_id: Mapped[str] = mapped_column(String(64))
    due_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    detail: Mapped[str] = mapped_column(Text)
