"""Device lifecycle (SPEC §2): registration with proof of possession, key rotation, revocation.

Every key change is recorded on chain in ``DeviceRegistry`` first and mirrored in the
database, so a reading is always checked against the key that was valid at its timestamp:

- **register**: the key is valid from ``now - clock_skew_s`` (a device whose clock runs a
  little behind is not refused) until rotated or revoked;
- **rotate**: forward-only, at ``now``: readings stamped before still verify with the old key;
- **revoke**: at ``now`` or earlier (a compromise discovered late); readings stamped from
  then on are refused, and the device can never be used again.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from attestation.certificates import load_certificates, verify_device_certificate
from attestation.devices import DEVICE_ID, verify_pop
from attestation.readings import parse_timestamp
from attestation.thing_models import THING_MODELS
from ledger.chain.base import ChainError, ChainRevert
from ledger.errors import Conflict, Forbidden, Invalid, NotFound, Unavailable
from ledger.store.db import storable_text
from ledger.store.models import Device, DeviceGap, DeviceKeyRecord, Organisation, naive_utc, utc

__all__ = ["OPEN_UNTIL", "describe_device", "device_gaps", "get_device", "register_device", "revoke_device", "rotate_key"]

OPEN_UNTIL = 2**64 - 1  # DeviceRegistry.OPEN
READER_ROLES = ("bank", "auditor")


def _seconds(moment: datetime) -> datetime:
    """Whole seconds, as the chain records them."""
    return datetime.fromtimestamp(math.floor(moment.timestamp()), timezone.utc)


def _on_chain(what: str, device_id: str, call: Any, *args: Any) -> str:
    try:
        return call(*args)
    except ChainRevert as exc:
        if exc.error == "DeviceRegistryAlreadyRegistered":
            raise Conflict(f"device {device_id} is registered on chain already", code="device_exists") from exc
        if exc.error == "DeviceRegistryRevoked":
            raise Conflict(f"device {device_id} is revoked on chain", code="device_revoked") from exc
        if exc.error == "DeviceRegistryInvalidTime":
            raise Invalid(f"the {what} time is outside the device's current key validity", code="invalid_time") from exc
        raise Unavailable(f"could not record the {what} of {device_id} on chain: {exc}", code="chain_unavailable") from exc
    except ChainError as exc:
        raise Unavailable(f"could not record the {what} of {device_id} on chain: {exc}", code="chain_unavailable") from exc


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else utc(moment).isoformat().replace("+00:00", "Z")


def register_device(
    session: Session,
    chain: Any,
    *,
    operator: Organisation,
    body: dict[str, Any],
    clock_skew_s: float,
    now: datetime | None = None,
) -> Device:
    """Register a device of ``operator``'s warehouse after checking its proof of possession."""
    if operator.role != "operator":
        raise Forbidden("only a warehouse operator's key can register devices", code="role_forbidden")
    device_id, alg, pem, kind = body["id"], body["alg"], body["public_key"], body["kind"]
    if kind not in THING_MODELS:
        raise Invalid(f"kind must be a known thing model: {', '.join(THING_MODELS)}", code="unknown_kind")
    lot = body.get("lot")
    if lot is not None and not (len(lot) <= 128 and storable_text(lot)):  # checked before anything goes on chain
        raise Invalid("lot must be null or at most 128 characters, none of them NUL (U+0000)", code="invalid_lot")
    fingerprint = verify_pop(device_id, alg, pem, body["pop"])
    _check_provisioning(operator, pem, body, now)
    if session.get(Device, device_id) is not None:
        raise Conflict(f"device {device_id} is registered already; rotate its key instead", code="device_exists")

    valid_from = _seconds(now or datetime.now(timezone.utc)) - timedelta(seconds=math.ceil(clock_skew_s))
    tx_hash = _on_chain(
        "registration", device_id, chain.register_device, device_id, fingerprint, alg, math.floor(valid_from.timestamp()), OPEN_UNTIL
    )
    device = Device(id=device_id, organisation_id=operator.id, kind=kind, lot=lot)
    device.keys.append(
        DeviceKeyRecord(alg=alg, public_key=pem, fingerprint=fingerprint.hex(), valid_from=naive_utc(valid_from), tx_hash=tx_hash)
    )
    session.add(device)
    session.flush()
    return device


def _check_provisioning(operator: Organisation, pem: str, body: dict[str, Any], now: datetime | None) -> None:
    """Where the warehouse trusts device CAs, the key must come with a certificate chaining to one."""
    if operator.device_ca:
        verify_device_certificate(pem, body.get("certificate_chain") or [], load_certificates(operator.device_ca),
                                  at=now or datetime.now(timezone.utc))


def get_device(session: Session, device_id: str, org: Organisation, *, write: bool = False) -> Device:
    """The device as ``org`` may see it: its own operator always; banks and auditors to read."""
    # an id no device can have is looked up nowhere (PostgreSQL would refuse a NUL in it)
    device = session.get(Device, device_id, with_for_update=write) if DEVICE_ID.fullmatch(device_id) else None
    visible = device is not None and (
        device.organisation_id == org.id or (not write and org.role in READER_ROLES)
    )
    if not visible:
        raise NotFound(f"no device {device_id} that your organisation may {'manage' if write else 'see'}", code="device_not_found")
    return device


def _current_key(device: Device) -> DeviceKeyRecord:
    if device.revoked_at is not None:
        raise Conflict(f"device {device.id} was revoked at {_iso(device.revoked_at)}; register a new device id", code="device_revoked")
    return device.keys[-1]


def rotate_key(session: Session, chain: Any, *, org: Organisation, device_id: str, body: dict[str, Any],
               now: datetime | None = None) -> DeviceKeyRecord:
    """Replace the device's key from now on; the new key proves possession like a registration."""
    device = get_device(session, device_id, org, write=True)
    current = _current_key(device)
    alg, pem = body["alg"], body["public_key"]
    fingerprint = verify_pop(device_id, alg, pem, body["pop"])
    _check_provisioning(org, pem, body, now)
    if fingerprint.hex() == current.fingerprint:
        raise Conflict("the new key is the current key; rotate to a fresh key", code="same_key")
    at = _seconds(now or datetime.now(timezone.utc))
    if naive_utc(at) <= current.valid_from:
        raise Invalid("the current key became valid less than a second ago; rotate a moment later", code="invalid_time")
    tx_hash = _on_chain("rotation", device_id, chain.rotate_device, device_id, fingerprint, alg, math.floor(at.timestamp()), OPEN_UNTIL)
    current.valid_until = naive_utc(at)
    key = DeviceKeyRecord(alg=alg, public_key=pem, fingerprint=fingerprint.hex(), valid_from=naive_utc(at), tx_hash=tx_hash)
    device.keys.append(key)
    session.flush()
    return key


def revoke_device(session: Session, chain: Any, *, org: Organisation, device_id: str, at: str | None,
                  now: datetime | None = None) -> str:
    """Revoke the device's key from ``at`` (RFC 3339, default now; may be in the past, never the
    future); returns the revocation's transaction hash."""
    device = get_device(session, device_id, org, write=True)
    current = _current_key(device)
    now = now or datetime.now(timezone.utc)
    moment = _seconds(parse_timestamp(at) if at else now)
    if moment > now:
        raise Invalid("at must not be in the future: revoke when the key is to stop", code="invalid_time")
    if naive_utc(moment) <= current.valid_from:
        raise Invalid(f"at must be after the current key became valid ({_iso(current.valid_from)})", code="invalid_time")
    tx_hash = _on_chain("revocation", device_id, chain.revoke_device, device_id, math.floor(moment.timestamp()))
    current.valid_until = device.revoked_at = naive_utc(moment)
    session.flush()
    return tx_hash


def describe_device(device: Device) -> dict[str, Any]:
    return {
        "id": device.id,
        "kind": device.kind,
        "lot": device.lot,
        "organisation": device.organisation_id,
        "revoked_at": _iso(device.revoked_at),
        "last_seq": device.last_seq,
        "last_reading": device.last_digest,
        "keys": [
            {
                "alg": k.alg,
                "fingerprint": "0x" + k.fingerprint,
                "public_key": k.public_key,
                "valid_from": _iso(k.valid_from),
                "valid_until": _iso(k.valid_until),
                "tx_hash": k.tx_hash,
            }
            for k in device.keys
        ],
    }


def device_gaps(session: Session, device: Device, *, limit: int | None = None) -> list[dict[str, Any]]:
    """The device's recorded hash-chain gaps, oldest first (the first ``limit`` of them)."""
    rows = session.scalars(select(DeviceGap).where(DeviceGap.device_id == device.id).order_by(DeviceGap.id).limit(limit))
    return [
        {
            "kind": g.kind,
            "reading": g.reading_id,
            "seq": g.seq,
            "previous_seq": g.previous_seq,
            "expected_prev": g.expected_prev,
            "claimed_prev": g.claimed_prev,
            "detected_at": _iso(g.detected_at),
        }
        for g in rows
    ]
