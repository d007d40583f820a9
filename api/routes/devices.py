from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import Auditor, CurrentOrg, LedgerDep, Operator
from api.schemas import DeviceCreate, DevicePublic, GapPublic, KeyRotation, Revocation

router = APIRouter(prefix="/v1/devices", tags=["devices"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DevicePublic, summary="Register a device (SPEC §2)")
def register_device(body: DeviceCreate, operator: Operator, ledger: LedgerDep) -> dict:
    """Checks the proof of possession, records the key fingerprint on chain, stores the device."""
    return ledger.register_device(operator, body.model_dump())


@router.get("/{device_id}", response_model=DevicePublic, summary="A device and its key history")
def get_device(device_id: str, org: CurrentOrg, ledger: LedgerDep) -> dict:
    """Visible to the operator that registered it, and to banks and auditors."""
    return ledger.device(org, device_id)


@router.post("/{device_id}/keys", response_model=DevicePublic, summary="Rotate the device's key from now on")
def rotate_key(device_id: str, body: KeyRotation, operator: Operator, ledger: LedgerDep) -> dict:
    """Readings stamped before the rotation keep verifying with the old key; later ones need the new key."""
    return ledger.rotate_device_key(operator, device_id, body.model_dump())


@router.post("/{device_id}/revoke", response_model=DevicePublic, summary="Revoke the device's key for good")
def revoke(device_id: str, body: Revocation, operator: Operator, ledger: LedgerDep) -> dict:
    """Readings stamped at or after ``at`` are refused from now on."""
    return ledger.revoke_device(operator, device_id, body.at)


@router.get("/{device_id}/gaps", response_model=list[GapPublic], summary="Breaks in the device's hash chain")
def gaps(device_id: str, org: CurrentOrg, ledger: LedgerDep) -> list[dict]:
    """Withheld or lost readings (``prev_mismatch``), one key in two places (``fork``), reboots (``restart``)."""
    return ledger.device_gaps(org, device_id)


@router.get("/{device_id}/history", summary="The device audited: readings, sequence gaps, prev links, keys on chain (auditors)")
def history(device_id: str, _: Auditor, ledger: LedgerDep) -> dict:
    """Every stored reading of the device re-verified (digest, signature with the key valid at its
    time, that key on chain, stored proof), its sequence gaps and recorded hash-chain gaps, and its
    key history next to ``keysOf`` on chain. Same shape as ``GET /v1/audit``, for one device."""
    return ledger.device_history(device_id)
