from __future__ import annotations

from fastapi import APIRouter

from api.deps import LedgerDep
from api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Ready when the database and chain are")
def healthz(ledger: LedgerDep) -> dict:
    return ledger.health()
