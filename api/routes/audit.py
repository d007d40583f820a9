from __future__ import annotations

from fastapi import APIRouter

from api.deps import Auditor, LedgerDep

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("", summary="Audit the whole ledger against the chain (auditors)")
def get_audit(_: Auditor, ledger: LedgerDep) -> dict:
    """Every stored reading re-verified, every batch root recomputed and compared with `rootOf`,
    checkpoints and batches matched one to one with their links walked, per-device sequence gaps,
    `prev` links and key histories against the chain. `ok` is false when any error was found;
    each finding names its kind, batch, reading and device. Runs synchronously: on a large ledger
    prefer `pledgeledger audit`."""
    return ledger.audit()
