"""``GET /v1/lots/{lot_id}/evidence``: the lot's evidence package for a court (:mod:`ledger.evidence`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool

from api.deps import CurrentOrg, LedgerDep

router = APIRouter(prefix="/v1/lots", tags=["lots"])

_CHUNK = 1 << 16


def _chunks(package: IO[bytes]) -> Iterator[bytes]:
    try:
        while chunk := package.read(_CHUNK):
            yield chunk
    finally:
        package.close()


@router.get(
    "/{lot_id}/evidence",
    summary="The lot's evidence package: a zip a court can check against the chain (the lot's parties, auditors)",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
                     "description": "a pledgeledger.evidence/1 zip"}},  # fmt: skip
)
def get_evidence(lot_id: str, org: CurrentOrg, ledger: LedgerDep) -> StreamingResponse:
    """Everything needed to prove the lot's history without trusting this service: `manifest.json`
    (the lot, chain, contracts, the block it was made at, what it claims, the SHA-256 of every file),
    the lot's CollateralRegistry events with their transactions and receipts, every action with its
    EIP-712 typed data and each party's signature, the supervising devices' keys, and the lot's
    anchored readings as multiproof bundles. Check it with `pledgeledger verify-evidence FILE --rpc URL`.
    For the lot's warehouse, enterprise, bank and insurer, and auditors; 404 `lot_not_found` for others."""
    name, package = ledger.evidence(org, lot_id)
    return StreamingResponse(
        iterate_in_threadpool(_chunks(package)),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
