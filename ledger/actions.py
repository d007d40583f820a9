"""Lot transitions as actions (SPEC §8): typed data every party signs, signatures, submission.

An action is one CollateralRegistry transition (:mod:`ledger.chain.collateral`): its EIP-712 typed
data, with the required parties' current nonces and a deadline, and the parties that must sign it in
signature order. A signature is checked when it arrives (it must recover to a required signer that
has not signed yet, before the deadline), so nothing malformed ever reaches the chain. Once every
signature is in, the relayer submits the transition; the gas estimate runs the contract first, so a
transition the contract refuses fails with the contract's reason and sends nothing.

The system's own transitions (a freeze or a margin call by the supervision key) are actions too,
proposed by nobody (``proposed_by`` null) and signed by the service: :func:`system_action`.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from eth_account.signers.local import LocalAccount
from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.chain.base import ChainRevert
from ledger.chain.collateral import CollateralClient, Status, recover_signer, sign_typed_data
from ledger.errors import Conflict, Invalid
from ledger.store.models import Action, ActionSignature, Lot, Organisation, naive_utc, utc

__all__ = ["add_signature", "create_action", "is_complete", "refresh_lot", "submit", "system_action"]

log = logging.getLogger(__name__)

#: How long a system action's signature stays valid (it is submitted at once).
SYSTEM_DEADLINE = timedelta(hours=1)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def create_action(
    session: Session,
    collateral: CollateralClient,
    *,
    lot: Lot | None,
    type: str,
    primary_type: str,
    fields: dict[str, Any],
    deadline: datetime,
    proposed_by: Organisation | None,
    params: dict[str, Any] | None = None,
    approver: str | None = None,
) -> Action:
    """Propose ``primary_type`` with ``fields`` (the typed data's fields before the nonces).

    The required parties and their nonces are read from the chain now. ``approver`` picks who gives a
    single either/or signature (``Freeze``, ``MarginCall``). Raises :class:`Invalid` if the fields do
    not fit the type or a party is missing on chain.
    """
    try:
        typed = collateral.prepare(primary_type, deadline=int(deadline.timestamp()), approver=approver, **fields)
        parties = collateral.required(primary_type, typed["message"], approver=approver)
    except ValueError as exc:
        raise Invalid(str(exc), code="invalid_action") from None
    by_chain_org = _organisations_by_chain_id(session, [p.org for p in parties if p.org])
    required = [
        {"role": p.role, "org": by_chain_org.get(p.org), "chain_org": p.org or None, "signer": p.signer} for p in parties
    ]
    action = Action(
        lot_id=lot.id if lot is not None else None,
        type=type,
        primary_type=primary_type,
        params=json.dumps(params if params is not None else _jsonable(fields), sort_keys=True),
        typed_data=json.dumps(typed),
        required=json.dumps(required),
        status="collecting",
        proposed_by=proposed_by.id if proposed_by is not None else None,
        deadline=naive_utc(deadline),
    )
    session.add(action)
    session.flush()
    return action


def add_signature(session: Session, action: Action, signature: bytes, *, now: datetime | None = None) -> ActionSignature:
    """Record ``signature`` at the position of the required party whose signer it recovers to.

    Raises :class:`Conflict` if the action no longer collects signatures (``action_not_collecting``,
    ``action_expired``) or that party has signed already (``already_signed``), :class:`Invalid` if the
    signature is malformed (``invalid_signature``) or made by no required signer (``signer_not_required``).
    """
    if action.status != "collecting":
        raise Conflict(f"action {action.id} is {action.status}, not collecting signatures", code="action_not_collecting")
    if utc(action.deadline) <= (now or _now()):
        action.status = "expired"
        raise Conflict(
            f"action {action.id} expired at {utc(action.deadline).isoformat()}: propose it again", code="action_expired"
        )
    typed = json.loads(action.typed_data)
    try:
        signer = recover_signer(typed, signature)
    except ValueError as exc:
        raise Invalid(f"{exc}: send the 65-byte r||s||v of eth_signTypedData_v4 over typed_data", code="invalid_signature") from None
    required = json.loads(action.required)
    signed = {s.position for s in action.signatures}
    for position, party in enumerate(required):
        if party["signer"].lower() != signer.lower():
            continue
        if position in signed:
            raise Conflict(f"{signer} ({party['role']}) has signed this action already", code="already_signed")
        record = ActionSignature(
            position=position,
            role=party["role"],
            organisation_id=party.get("org"),
            signer=party["signer"],
            signature="0x" + bytes(signature).hex(),
        )
        action.signatures.append(record)
        session.flush()
        return record
    wanted = ", ".join(f"{p['role']} {p['signer']}" for p in required)
    raise Invalid(
        f"the signature recovers to {signer}, who is not required here (required: {wanted}); sign the action's "
        "typed_data with the key the chain records for your organisation",
        code="signer_not_required",
    )


def is_complete(action: Action) -> bool:
    return len(action.signatures) == len(json.loads(action.required))


def submit(session: Session, collateral: CollateralClient, action: Action, lot: Lot | None = None) -> Action:
    """Send a fully signed action through the relayer and record the outcome: ``confirmed`` with the
    transaction, or ``failed`` with the contract's error (nothing is sent when the gas estimate reverts).
    On success the lot's cached state is refreshed from the chain."""
    if not is_complete(action):
        raise Conflict(f"action {action.id} still needs signatures", code="action_incomplete")
    typed = json.loads(action.typed_data)
    signatures = [bytes.fromhex(s.signature[2:]) for s in sorted(action.signatures, key=lambda s: s.position)]
    action.status = "submitted"
    action.submitted_at = naive_utc(_now())
    try:
        mined = collateral.submit(typed, signatures)
    except ChainRevert as exc:
        action.status = "failed"
        action.tx_hash = exc.tx_hash
        action.error_code = exc.error or "reverted"
        action.error_message = str(exc)
        log.info("action %s (%s) refused by the contract: %s", action.id, action.primary_type, exc)
        return action
    action.status = "confirmed"
    action.tx_hash = mined.tx_hash
    action.block_number = mined.block_number
    action.gas_used = mined.gas_used
    action.confirmed_at = naive_utc(_now())
    if lot is not None:
        refresh_lot(session, collateral, lot)
    return action


def system_action(
    session: Session,
    collateral: CollateralClient,
    supervisor: LocalAccount,
    *,
    lot: Lot,
    type: str,
    primary_type: str,
    fields: dict[str, Any],
    params: dict[str, Any] | None = None,
    deadline: datetime | None = None,
) -> Action:
    """A transition the system raises alone (``Freeze``, ``MarginCall``, ``DefaultUncured``): proposed, signed by
    the supervision key ``supervisor`` and submitted at once. Returns the action, ``confirmed`` or ``failed``.
    ``deadline`` defaults to an hour from now (pass one from the chain's clock where it runs ahead)."""
    action = create_action(
        session, collateral, lot=lot, type=type, primary_type=primary_type, fields=fields,
        deadline=deadline or _now() + SYSTEM_DEADLINE, proposed_by=None, params=params, approver=supervisor.address,
    )  # fmt: skip
    add_signature(session, action, sign_typed_data(supervisor.key, json.loads(action.typed_data)))
    return submit(session, collateral, action, lot)


def refresh_lot(session: Session, collateral: CollateralClient, lot: Lot) -> Lot:
    """Copy the lot's status, bank and quantity from the chain into its cached columns."""
    on_chain = collateral.lot(bytes.fromhex(lot.chain_lot[2:]))
    if on_chain.status != Status.NONE:
        lot.status = on_chain.status.name.lower()
        lot.quantity = on_chain.quantity
        if on_chain.bank:
            bank = _organisations_by_chain_id(session, [on_chain.bank]).get(on_chain.bank)
            lot.bank_id = bank or lot.bank_id
    session.flush()
    return lot


def _organisations_by_chain_id(session: Session, chain_ids: list[int]) -> dict[int, str]:
    if not chain_ids:
        return {}
    rows = session.execute(select(Organisation.chain_org, Organisation.id).where(Organisation.chain_org.in_(chain_ids)))
    return {chain_org: org_id for chain_org, org_id in rows}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
