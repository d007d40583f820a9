"""Organisations and their API keys (stored as SHA-256; the key itself is shown once)."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from eth_utils import to_checksum_address
from sqlalchemy import select
from sqlalchemy.orm import Session

from attestation.certificates import InvalidCertificate, load_certificates
from ledger.errors import Conflict, Invalid, NotFound, Unauthorized
from ledger.store.models import ROLES, ApiKey, Organisation

__all__ = ["NewOrganisation", "authenticate", "create_organisation", "set_device_ca"]

KEY_PREFIX = "plk_"
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


@dataclass(frozen=True)
class NewOrganisation:
    id: str
    name: str
    role: str
    signer: str | None
    api_key: str  # shown once


def _hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def create_organisation(session: Session, *, name: str, role: str, signer: str | None = None) -> NewOrganisation:
    if role not in ROLES:
        raise Invalid(f"role must be one of {', '.join(ROLES)}", code="invalid_role")
    if not name or len(name) > 200:
        raise Invalid("name must be 1-200 characters", code="invalid_name")
    if signer is not None and not _ADDRESS.fullmatch(signer):
        raise Invalid("signer must be a 0x-prefixed 20-byte Ethereum address", code="invalid_signer")
    if session.scalar(select(Organisation).where(Organisation.name == name)) is not None:
        raise Conflict(f"an organisation named {name!r} exists already", code="organisation_exists")
    if signer is not None:
        signer = to_checksum_address(signer)
        if session.scalar(select(Organisation).where(Organisation.signer == signer)) is not None:
            raise Conflict(f"{signer} is the signer of another organisation: every organisation has its own key", code="signer_in_use")
    org = Organisation(name=name, role=role, signer=signer)
    api_key = KEY_PREFIX + secrets.token_urlsafe(32)
    org.api_keys.append(ApiKey(key_hash=_hash(api_key)))
    session.add(org)
    session.flush()
    return NewOrganisation(id=org.id, name=name, role=role, signer=signer, api_key=api_key)


def authenticate(session: Session, api_key: str) -> Organisation:
    """The organisation an API key belongs to; :class:`Unauthorized` if none (or revoked)."""
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == _hash(api_key), ApiKey.revoked_at.is_(None)))
    if key is None:
        raise Unauthorized("unknown or revoked API key: create one with `pledgeledger org create`")
    return key.organisation


def set_device_ca(session: Session, *, name: str, ca_pem: str | None) -> Organisation:
    """Require (or, with ``None``, stop requiring) device certificates chaining to ``ca_pem``'s roots."""
    org = session.scalar(select(Organisation).where(Organisation.name == name))
    if org is None:
        raise NotFound(f"no organisation named {name!r}", code="organisation_not_found")
    if org.role != "operator":
        raise Invalid("only a warehouse operator registers devices, so only it can require device certificates", code="invalid_role")
    if ca_pem is not None:
        try:
            roots = load_certificates(ca_pem)
        except InvalidCertificate:
            roots = []
        if not roots:
            raise Invalid("the CA file must hold one or more PEM certificates (-----BEGIN CERTIFICATE-----)", code="invalid_certificate")
    org.device_ca = ca_pem
    return org
