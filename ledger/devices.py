"""Device registration (SPEC §2): proof of possession off chain, key fingerprint on chain."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy.orm import Session

from attestation.devices import verify_pop
from attestation.thing_models import THING_MODELS
from ledger.chain.base import ChainError
from ledger.errors import Conflict, Forbidden, Invalid, Unavailable
from ledger.store.models import Device, DeviceKeyRecord, Organisation, naive_utc

__all__ = ["OPEN_UNTIL", "register_device"]

OPEN_UNTIL = 2**64 - 1  # DeviceRegistry.OPEN


def register_device(
    session: Session,
    chain: Any,
    *,
    operator: Organisation,
    body: dict[str, Any],
    clock_skew_s: float,
    now: datetime | None = None,
) -> Device:
    """Register a device of ``operator``'s warehouse after checking its proof of possession.

    The key is valid on chain from ``now - clock_skew_s`` (so a device whose clock runs a
    little behind is not refused) until rotated or revoked.
    """
    if operator.role != "operator":
        raise Forbidden("only a warehouse operator's key can register devices", code="role_forbidden")
    device_id, alg, pem, kind = body["id"], body["alg"], body["public_key"], body["kind"]
    if kind not in THING_MODELS:
        raise Invalid(f"kind must be a known thing model: {', '.join(THING_MODELS)}", code="unknown_kind")
    fingerprint = verify_pop(device_id, alg, pem, body["pop"])
    if session.get(Device, device_id) is not None:
        raise Conflict(f"device {device_id} is registered already; rotate its key instead", code="device_exists")

    now = now or datetime.now(timezone.utc)
    valid_from = now - timedelta(seconds=clock_skew_s)
    try:
        tx_hash = chain.register_device(device_id, fingerprint, alg, math.floor(valid_from.timestamp()), OPEN_UNTIL)
    except ChainError as exc:
        if "DeviceRegistryAlreadyRegistered" in str(exc):
            raise Conflict(f"device {device_id} is registered on chain already", code="device_exists") from exc
        raise Unavailable(f"could not record the device on chain: {exc}", code="chain_unavailable") from exc
    device = Device(id=device_id, organisation_id=operator.id, kind=kind, lot=body.get("lot"))
    device.keys.append(
        DeviceKeyRecord(
            alg=alg,
            public_key=pem,
            fingerprint=fingerprint.hex(),
            valid_from=naive_utc(datetime.fromtimestamp(math.floor(valid_from.timestamp()), timezone.utc)),
            tx_hash=tx_hash,
        )
    )
    session.add(device)
    session.flush()
    return device
