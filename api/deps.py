"""Request dependencies as ``Annotated`` aliases: the ledger, and the calling organisation.

The API key travels as ``Authorization: Bearer <api_key>``. The OpenAPI document declares it
as the ``ApiKey`` bearer scheme on every route that needs it, listing (as OpenAPI 3.1 allows)
the roles a route is limited to: ``security: [{"ApiKey": ["auditor"]}]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ledger.errors import Forbidden, Unauthorized
from ledger.service import Ledger
from ledger.store.models import Organisation

__all__ = ["Auditor", "CurrentOrg", "LedgerDep", "Operator", "Party", "Supervisor", "require_party", "require_role"]


def get_ledger(request: Request) -> Ledger:
    return request.app.state.ledger


LedgerDep = Annotated[Ledger, Depends(get_ledger)]

_bearer = HTTPBearer(
    scheme_name="ApiKey",
    description="An organisation's API key (`pledgeledger org create`) as `Authorization: Bearer <api_key>`",
    auto_error=False,  # answered below with the API's own error body
)


def current_org(ledger: LedgerDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Organisation:
    if credentials is None or not credentials.credentials.strip():
        raise Unauthorized("send Authorization: Bearer <api_key> (create a key with `pledgeledger org create`)")
    return ledger.authenticate(credentials.credentials.strip())


CurrentOrg = Annotated[Organisation, Depends(current_org)]


#: How an answer names the organisation a route needs.
_ROLE_NAMES = {"operator": "a warehouse operator", "auditor": "an auditor", "insurer": "an insurer"}


def _named(role: str) -> str:
    return _ROLE_NAMES.get(role, ("an " if role[:1] in "aeiou" else "a ") + role)


def require_role(*roles: str) -> Callable[[Organisation], Organisation]:
    """A dependency that lets only organisations of one of ``roles`` through (403 ``role_forbidden``)."""

    # the dependency as a default: an Annotated[...] naming ``roles`` would not resolve from a string annotation
    def check(org: Organisation = Security(current_org, scopes=list(roles))) -> Organisation:
        if org.role not in roles:
            names = [f"{_named(r)}'s" for r in roles]
            needed = names[-1] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
            raise Forbidden(f"this needs {needed} key; yours is {_named(org.role)}'s", code="role_forbidden")
        return org

    return check


def require_party(org: Organisation = Security(current_org, scopes=["operator", "enterprise", "bank"])) -> Organisation:
    """The parties of lots (warehouse operators, enterprises, banks): they propose transitions. 403 ``role_forbidden``
    for auditors and insurers, who only read."""
    if org.role not in ("operator", "enterprise", "bank"):
        raise Forbidden(f"only a lot's warehouse, enterprise or bank proposes its transitions; an {org.role} reads", code="role_forbidden")
    return org


Operator = Annotated[Organisation, Depends(require_role("operator"))]
Party = Annotated[Organisation, Depends(require_party)]
Auditor = Annotated[Organisation, Depends(require_role("auditor"))]
#: Who reads production metrics: the device's own operator (its devices only), banks, auditors.
Supervisor = Annotated[Organisation, Depends(require_role("operator", "bank", "auditor"))]
