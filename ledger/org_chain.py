"""Organisations on chain (SPEC §7/§8): the signer address recorded in CollateralRegistry with the role.

``registerOrganisation`` is called by the relayer (REGISTRAR_ROLE) but needs the signer's own EIP-712
signature of ``RegisterOrganisation`` (proof that the organisation holds the key; it consumes the
signer's nonce 0), so recording a signer is an action like any lot transition: :func:`propose_registration`
prepares the typed data, the organisation signs it with its wallet or HSM and posts it
(``POST /v1/actions/{id}/signatures``), the relayer submits it, and :func:`apply_registration` records the
organisation's chain id (``chain_org``) and transaction (``chain_tx``).

Affiliation (fraud case 16: a warehouse may not supervise an affiliate's goods) is the registrar's
statement, :func:`set_affiliation`; the contract then refuses such a lot.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from eth_utils import to_checksum_address
from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger import actions
from ledger.chain.base import ChainRevert
from ledger.chain.collateral import CollateralClient, Role, Transition
from ledger.errors import Conflict, Invalid, NotFound
from ledger.orgs import _ADDRESS
from ledger.store.models import Action, Organisation

__all__ = [
    "CHAIN_ROLES",
    "REGISTRATION_EXPIRY",
    "apply_registration",
    "propose_registration",
    "register_or_adopt",
    "set_affiliation",
    "set_signer",
]

#: The API's roles as CollateralRegistry's.
CHAIN_ROLES = {
    "operator": Role.WAREHOUSE,
    "enterprise": Role.ENTERPRISE,
    "bank": Role.BANK,
    "insurer": Role.INSURER,
    "auditor": Role.AUDITOR,
}
#: How long an organisation has to sign its registration (then it asks for a new one).
REGISTRATION_EXPIRY = timedelta(days=7)


def propose_registration(session: Session, collateral: CollateralClient, org: Organisation) -> Action:
    """The ``register_organisation`` action: ``RegisterOrganisation(role, signer, name)`` for ``org``'s
    signer to sign. Replaces a registration still collecting (its typed data is dropped)."""
    if org.signer is None:
        raise Invalid("the organisation has no signer address: set one first", code="no_signer")
    if org.chain_org is not None:
        raise Conflict(f"{org.name} is registered on chain already (organisation {org.chain_org})", code="organisation_registered")
    on_chain = collateral.organisation_of(org.signer)
    if on_chain:
        raise Conflict(f"{org.signer} signs for organisation {on_chain} on chain already; use another key", code="signer_in_use")
    for stale in session.scalars(
        select(Action).where(Action.type == "register_organisation", Action.proposed_by == org.id, Action.status == "collecting")
    ):
        stale.status = "expired"
    return actions.create_action(
        session, collateral, lot=None, type="register_organisation", primary_type="RegisterOrganisation",
        fields={"role": int(CHAIN_ROLES[org.role]), "signer": org.signer, "name": org.name},
        deadline=datetime.now(timezone.utc) + REGISTRATION_EXPIRY, proposed_by=org,
        params={"organisation": org.id, "name": org.name, "role": org.role, "signer": org.signer},
    )  # fmt: skip


def register_or_adopt(session: Session, collateral: CollateralClient, org: Organisation) -> Action | None:
    """Propose ``org``'s registration, unless its signer is registered on chain already with its role (it
    proved its key there before): then record that organisation id and return ``None``."""
    existing = collateral.organisation_of(org.signer) if org.signer else 0
    on_chain = collateral.organisation(existing) if existing else None
    if on_chain is not None and on_chain.role == CHAIN_ROLES[org.role]:
        org.chain_org = existing
        return None
    return propose_registration(session, collateral, org)


def set_signer(session: Session, collateral: CollateralClient, org: Organisation, signer: str) -> Action:
    """Give an organisation not yet on chain its signer address (or another one), and propose its registration."""
    if not isinstance(signer, str) or not _ADDRESS.fullmatch(signer):
        raise Invalid("signer must be a 0x-prefixed 20-byte Ethereum address", code="invalid_signer")
    signer = to_checksum_address(signer)
    if org.chain_org is not None:
        raise Conflict(
            f"{org.name} is registered on chain with signer {org.signer}; a new key is a RotateSigner transition "
            "signed by both keys, not a new registration",
            code="organisation_registered",
        )
    other = session.scalar(select(Organisation).where(Organisation.signer == signer, Organisation.id != org.id))
    if other is not None:
        raise Conflict(f"{signer} is the signer of another organisation", code="signer_in_use")
    org.signer = signer
    return propose_registration(session, collateral, org)


def apply_registration(session: Session, collateral: CollateralClient, action: Action) -> None:
    """After a ``register_organisation`` action was mined: record the organisation's chain id and transaction."""
    params = json.loads(action.params)
    org = session.get(Organisation, params["organisation"])
    if org is None:  # pragma: no cover - organisations are never deleted
        return
    org.chain_org = collateral.organisation_of(params["signer"]) or None
    org.chain_tx = action.tx_hash


def set_affiliation(session: Session, collateral: CollateralClient, name_a: str, name_b: str, affiliated: bool) -> Transition:
    """Record on chain (relayer, REGISTRAR_ROLE) whether two organisations are affiliated."""
    orgs = []
    for name in (name_a, name_b):
        org = session.scalar(select(Organisation).where(Organisation.name == name))
        if org is None:
            raise NotFound(f"no organisation named {name!r}", code="organisation_not_found")
        if org.chain_org is None:
            raise Conflict(f"{name} is not registered on chain yet: it signs its registration first", code="organisation_not_on_chain")
        orgs.append(org.chain_org)
    if orgs[0] == orgs[1]:
        raise Invalid("an organisation is not affiliated with itself", code="invalid_affiliation")
    try:
        return collateral.set_affiliation(orgs[0], orgs[1], affiliated)
    except ChainRevert as exc:
        raise Conflict(f"the contract refused: {exc}", code=exc.error or "reverted") from None
