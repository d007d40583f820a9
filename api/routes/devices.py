from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import LedgerDep, Operator
from api.schemas import DeviceCreate, DevicePublic

router = APIRouter(prefix="/v1/devices", tags=["devices"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DevicePublic, summary="Register a device (SPEC §2)")
def register_device(body: DeviceCreate, operator: Operator, ledger: LedgerDep) -> dict:
    """Checks the proof of possession, records the key fingerprint on chain, stores the device."""
    return ledger.register_device(operator, body.model_dump())
