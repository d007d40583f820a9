"""Request dependencies as ``Annotated`` aliases: the ledger, and the calling organisation."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ledger.errors import Forbidden, Unauthorized
from ledger.service import Ledger
from ledger.store.models import Organisation

__all__ = ["CurrentOrg", "LedgerDep", "Operator"]


def get_ledger(request: Request) -> Ledger:
    return request.app.state.ledger


LedgerDep = Annotated[Ledger, Depends(get_ledger)]


def current_org(request: Request, ledger: LedgerDep) -> Organisation:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("send Authorization: Bearer <api_key> (create a key with `pledgeledger org create`)")
    return ledger.authenticate(token.strip())


CurrentOrg = Annotated[Organisation, Depends(current_org)]


def operator(org: CurrentOrg) -> Organisation:
    if org.role != "operator":
        raise Forbidden(f"this needs a warehouse operator's key; yours is a {org.role}'s", code="role_forbidden")
    return org


Operator = Annotated[Organisation, Depends(operator)]
