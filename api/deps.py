"""Request dependencies as ``Annotated`` aliases: the ledger, and the calling organisation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from ledger.errors import Forbidden, Unauthorized
from ledger.service import Ledger
from ledger.store.models import Organisation

__all__ = ["Auditor", "CurrentOrg", "LedgerDep", "Operator", "require_role"]


def get_ledger(request: Request) -> Ledger:
    return request.app.state.ledger


LedgerDep = Annotated[Ledger, Depends(get_ledger)]


def current_org(request: Request, ledger: LedgerDep) -> Organisation:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("send Authorization: Bearer <api_key> (create a key with `pledgeledger org create`)")
    return ledger.authenticate(token.strip())


CurrentOrg = Annotated[Organisation, Depends(current_org)]


#: How an answer names the organisation a route needs.
_ROLE_NAMES = {"operator": "a warehouse operator", "auditor": "an auditor"}


def require_role(role: str) -> Callable[[Organisation], Organisation]:
    """A dependency that lets only organisations of ``role`` through (403 ``role_forbidden``)."""

    def check(org: CurrentOrg) -> Organisation:
        if org.role != role:
            yours = ("an " if org.role[:1] in "aeiou" else "a ") + org.role
            raise Forbidden(f"this needs {_ROLE_NAMES.get(role, 'a ' + role)}'s key; yours is {yours}'s", code="role_forbidden")
        return org

    return check


Operator = Annotated[Organisation, Depends(require_role("operator"))]
Auditor = Annotated[Organisation, Depends(require_role("auditor"))]
