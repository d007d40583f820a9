"""Goods lots (SPEC §8): registration by the warehouse, scoped reads, proposed transitions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from api.deps import CurrentOrg, LedgerDep, Operator, Party
from api.schemas_lots import ActionCreate, ActionPublic, LotCreate, LotCreated, LotPublic, LotStatus, TimelinePublic

router = APIRouter(prefix="/v1/lots", tags=["lots"])

LotId = Annotated[str, Path(description="the lot's e-receipt code", examples=["EWR-2026-0001"])]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=LotCreated, summary="Register a lot (warehouse)")
def register_lot(body: LotCreate, operator: Operator, ledger: LedgerDep) -> dict:
    """Stores the lot (status `proposed`) and proposes its `register` action: the warehouse signs the
    returned `typed_data` (`RegisterLot`) and posts it to `/v1/actions/{id}/signatures`; once mined the
    lot is `inbound` on chain."""
    return ledger.register_lot(operator, body.model_dump())


@router.get("", response_model=list[LotPublic], summary="The lots your organisation may see")
def list_lots(
    org: CurrentOrg,
    ledger: LedgerDep,
    status_: Annotated[LotStatus | None, Query(alias="status", description="only lots in this (cached) status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> list[dict]:
    """A warehouse sees the lots it holds, an enterprise its own, a bank those pledged to it, an insurer
    those it insures, an auditor every lot. Status is the cache of the last mined action; `GET
    /v1/lots/{id}` reads the chain."""
    return ledger.lots(org, status=status_, limit=limit, offset=offset)


@router.get("/{lot_id}", response_model=LotPublic, summary="A lot: its state on chain and its documents")
def get_lot(lot_id: LotId, org: CurrentOrg, ledger: LedgerDep) -> dict:
    """`chain` is `lotOf` read now; the documents (goods, assay, terms) are the plain values whose hashes the
    chain holds (`chain.documents_match`). 404 `lot_not_found` for a lot outside your scope."""
    return ledger.lot(org, lot_id)


@router.get("/{lot_id}/timeline", response_model=TimelinePublic, summary="The lot's history: chain events, actions, readings")
def timeline(lot_id: LotId, org: CurrentOrg, ledger: LedgerDep) -> dict:
    """Every CollateralRegistry event of the lot with its transaction and block, every action, and the
    readings of its devices (the newest 1,000), oldest first."""
    return ledger.lot_timeline(org, lot_id)


@router.post("/{lot_id}/actions", status_code=status.HTTP_201_CREATED, response_model=ActionPublic, summary="Propose a transition")
def propose(lot_id: LotId, body: ActionCreate, org: Party, ledger: LedgerDep) -> dict:
    """Any party of the lot (its warehouse, enterprise or bank) proposes; the answer's `required` lists who
    must sign `typed_data`, in order. The contract's rules (status, quantities, nonces, deadline) are
    checked when the last signature arrives: a refusal is `failed` with the contract's error."""
    return ledger.propose_action(org, lot_id, body.model_dump())


@router.get("/{lot_id}/actions", response_model=list[ActionPublic], summary="The lot's actions, oldest first")
def lot_actions(lot_id: LotId, org: CurrentOrg, ledger: LedgerDep) -> list[dict]:
    return ledger.lot_actions(org, lot_id)
