"""Actions (SPEC §8): read one, add a party's EIP-712 signature."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentOrg, LedgerDep
from api.schemas_lots import ActionPublic, SignatureCreate

router = APIRouter(prefix="/v1/actions", tags=["actions"])


@router.get("/{action_id}", response_model=ActionPublic, summary="An action: collecting, submitted, confirmed, failed or expired")
def get_action(action_id: str, org: CurrentOrg, ledger: LedgerDep) -> dict:
    """Visible to its proposer, to the organisations whose signature it requires, and to whoever sees its lot."""
    return ledger.action(org, action_id)


@router.post("/{action_id}/signatures", response_model=ActionPublic, summary="Add a party's signature")
def add_signature(action_id: str, body: SignatureCreate, org: CurrentOrg, ledger: LedgerDep) -> dict:
    """The signature must recover to a required signer who has not signed yet, before the deadline (422
    `signer_not_required` / `invalid_signature`, 409 `already_signed` / `action_expired` /
    `action_not_collecting`). With the last one the relayer submits the transition and the answer shows
    `confirmed` or `failed` (the contract's error), or `submitted` if the chain is slow (poll `GET`)."""
    return ledger.add_action_signature(org, action_id, body.signature)
