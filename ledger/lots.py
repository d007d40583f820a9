"""Goods lots and their proposed transitions (SPEC §8): who may see and propose what, and how the human
values of a request become the fields of a CollateralRegistry typed data.

A lot is registered off chain by its warehouse (:func:`register_lot`: the ``Lot`` row with status
``proposed`` and a ``register`` action the warehouse signs); the chain is its record from then on, and
the row caches what the chain says (refreshed after each mined action) plus the documents whose hashes
the chain holds. Each later transition is an action proposed with human values (:func:`propose`):
quantities as integers in the lot's unit, documents as JSON (hashed with
:func:`attestation.documents.document_hash`), the registration number as text (hashed with
:func:`~attestation.documents.identifier_hash`); the plain values stay in the action's ``params``
and, once the action is mined, in the lot (:func:`apply_confirmed`), so evidence can show them.

Scope (:func:`visible_lot`): an auditor sees every lot, a warehouse those it holds, an enterprise its
own, a bank those pledged to it, an insurer those it insures. A lot outside the caller's scope does not
exist for it (404 ``lot_not_found``: its receipt code is not disclosed); a lot in scope that the caller
is not a party of (auditor, insurer) is read-only (403 ``not_a_party`` on writes).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from attestation.documents import document_hash, identifier_hash
from attestation.valuation import MAX_CURE_PERIOD_S, MIN_CURE_PERIOD_S, InvalidTerms, parse_terms
from ledger import actions
from ledger.chain.collateral import CollateralClient, Status, unit_code
from ledger.errors import Conflict, Forbidden, Invalid, NotFound
from ledger.store.models import Action, Device, Lot, LotDevice, Organisation, Reading, utc

__all__ = [
    "ACTION_TYPES",
    "DEFAULT_EXPIRY",
    "LOT_ID",
    "MAX_EXPIRY",
    "action_view",
    "apply_confirmed",
    "find_organisation",
    "list_lots",
    "lot_scope",
    "lot_view",
    "propose",
    "register_lot",
    "timeline",
    "visible_action",
    "visible_lot",
]

#: A receipt code (the lot id): also the ``lot`` of its readings and a URL path segment.
LOT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
#: How long a proposed action collects signatures, unless the proposer says otherwise.
DEFAULT_EXPIRY = timedelta(days=1)
MAX_EXPIRY = timedelta(days=30)
#: The parties of a lot: they propose its transitions and post signatures. Auditors and insurers only read.
PARTY_COLUMNS = ("warehouse_id", "enterprise_id", "bank_id")
#: Loan terms agreed at pledge (``params.terms``): what valuation reads. Other keys are kept and hashed too.


def _now() -> datetime:
    return datetime.now(timezone.utc)


# --- organisations ----------------------------------------------------------------------------------


def find_organisation(session: Session, ref: Any, *, role: str, field: str) -> Organisation:
    """The organisation named by ``ref`` (its id or its name) with ``role``; 422 otherwise."""
    if not isinstance(ref, str) or not 1 <= len(ref) <= 200 or "\x00" in ref:
        raise Invalid(f"{field} must be an organisation id or name", code="invalid_params")
    org = session.get(Organisation, ref) or session.scalar(select(Organisation).where(Organisation.name == ref))
    if org is None or org.role != role:
        raise Invalid(f"{field}: no {role} organisation {ref!r}", code="unknown_organisation")
    return org


def _on_chain(org: Organisation, field: str) -> int:
    if org.chain_org is None:
        raise Conflict(
            f"{field} {org.name!r} has no signer registered on chain yet: it signs its registration first "
            "(`pledgeledger org create --signer`, then POST /v1/actions/{id}/signatures)",
            code="organisation_not_on_chain",
        )
    return org.chain_org


# --- scope --------------------------------------------------------------------------------------------


def lot_scope(org: Organisation) -> Any:
    """The SQL condition on ``Lot`` of the lots ``org`` may see."""
    if org.role == "auditor":
        return True
    column = {"operator": Lot.warehouse_id, "enterprise": Lot.enterprise_id, "bank": Lot.bank_id, "insurer": Lot.insurer_id}[org.role]
    return column == org.id


def visible_lot(session: Session, org: Organisation, lot_id: str, *, write: bool = False) -> Lot:
    """The lot if ``org`` may see it (404 ``lot_not_found`` otherwise); with ``write``, only for its parties
    (403 ``not_a_party`` for an auditor or insurer that may read it)."""
    lot = session.get(Lot, lot_id) if LOT_ID.fullmatch(lot_id) else None
    if lot is None or not _sees(org, lot):
        raise NotFound(f"no lot {lot_id} that your organisation may see", code="lot_not_found")
    if write and not _is_party(org, lot):
        raise Forbidden(f"a{'n' if org.role[0] in 'aeiou' else ''} {org.role} reads lot {lot_id} but is none of its parties (warehouse, enterprise, bank)", code="not_a_party")
    return lot


def _sees(org: Organisation, lot: Lot) -> bool:
    if org.role == "auditor":
        return True
    column = {"operator": "warehouse_id", "enterprise": "enterprise_id", "bank": "bank_id", "insurer": "insurer_id"}[org.role]
    return getattr(lot, column) == org.id


def _is_party(org: Organisation, lot: Lot) -> bool:
    return org.role in ("operator", "enterprise", "bank") and org.id in {getattr(lot, c) for c in PARTY_COLUMNS}


def list_lots(session: Session, org: Organisation, *, status: str | None = None, limit: int = 100, offset: int = 0) -> list[Lot]:
    query = select(Lot).where(lot_scope(org)).order_by(Lot.created_at, Lot.id).limit(limit).offset(offset)
    if status is not None:
        query = query.where(Lot.status == status)
    return list(session.scalars(query))


def visible_action(session: Session, org: Organisation, action_id: str, *, write: bool = False) -> Action:
    """The action if ``org`` may see it: the proposer, a required signer, anyone who sees its lot. With
    ``write`` (posting a signature) auditors and insurers are refused (403 ``not_a_party``)."""
    action = session.get(Action, action_id) if re.fullmatch(r"[0-9a-f-]{36}", action_id) else None
    if action is None:
        raise NotFound(f"no action {action_id} that your organisation may see", code="action_not_found")
    lot = session.get(Lot, action.lot_id) if action.lot_id else None
    signer_orgs = {party.get("org") for party in json.loads(action.required)}
    involved = action.proposed_by == org.id or org.id in signer_orgs
    if not (involved or (lot is not None and _sees(org, lot))):
        raise NotFound(f"no action {action_id} that your organisation may see", code="action_not_found")
    if write and not (involved or (lot is not None and _is_party(org, lot))):
        raise Forbidden(f"a{'n' if org.role[0] in 'aeiou' else ''} {org.role} reads this action but is no party to it", code="not_a_party")
    return action


# --- registering a lot ----------------------------------------------------------------------------------


def register_lot(session: Session, collateral: CollateralClient, operator: Organisation, body: dict[str, Any]) -> tuple[Lot, Action]:
    """Store the lot (status ``proposed``) and propose its ``register`` action, which the warehouse signs.

    ``body``: ``id`` (the e-receipt code), ``enterprise`` (id or name), ``goods`` (JSON description),
    ``quantity`` and ``unit``, ``devices`` (ids of devices this warehouse operates), optional ``insurer``
    and ``expires_in_s``.
    """
    lot_id = body.get("id")
    if not isinstance(lot_id, str) or not LOT_ID.fullmatch(lot_id):
        raise Invalid("id must be the e-receipt code: 1-128 characters of A-Z a-z 0-9 . _ : -", code="invalid_lot_id")
    if session.get(Lot, lot_id) is not None:
        raise Conflict(f"lot {lot_id} exists already (one receipt, one lot)", code="lot_exists")
    enterprise = find_organisation(session, body.get("enterprise"), role="enterprise", field="enterprise")
    insurer = find_organisation(session, body["insurer"], role="insurer", field="insurer") if body.get("insurer") is not None else None
    quantity = _quantity(body, "quantity")
    unit = body.get("unit")
    try:
        unit_code(unit if isinstance(unit, str) else "")
    except ValueError as exc:
        raise Invalid(f"unit: {exc}", code="invalid_params") from None
    goods = _document(body, "goods")
    device_ids = body.get("devices")
    if not isinstance(device_ids, list) or not 1 <= len(device_ids) <= 32 or len(set(map(str, device_ids))) != len(device_ids):
        raise Invalid("devices must list 1-32 distinct ids of devices your warehouse operates", code="invalid_params")
    for device_id in device_ids:
        device = session.get(Device, device_id) if isinstance(device_id, str) and LOT_ID.fullmatch(device_id) else None
        if device is None or device.organisation_id != operator.id:
            raise Invalid(f"devices: {device_id!r} is not a device your warehouse registered", code="unknown_device")
        if device.revoked_at is not None:
            raise Invalid(f"devices: {device_id} is revoked", code="device_revoked")
        busy = collateral.lot_of_device(identifier_hash(device_id))
        if busy is not None:
            raise Conflict(f"device {device_id} supervises another lot that is not closed (0x{busy.hex()})", code="device_in_use")
    _on_chain(operator, "the warehouse")
    _on_chain(enterprise, "enterprise")
    lot = Lot(
        id=lot_id,
        chain_lot="0x" + identifier_hash(lot_id).hex(),
        warehouse_id=operator.id,
        enterprise_id=enterprise.id,
        insurer_id=insurer.id if insurer else None,
        status="proposed",
        quantity=quantity,
        unit=unit,
        goods=_dumps(goods),
        goods_hash=_hex(document_hash(goods)),
    )
    lot.devices = [LotDevice(device_id=d, position=i) for i, d in enumerate(device_ids)]
    session.add(lot)
    session.flush()
    action = propose(session, collateral, operator, lot_id, "register", {}, expires_in_s=body.get("expires_in_s"))
    return lot, action


# --- proposing transitions ----------------------------------------------------------------------------


def propose(
    session: Session,
    collateral: CollateralClient,
    org: Organisation,
    lot_id: str,
    type: str,
    params: dict[str, Any] | None,
    *,
    expires_in_s: Any = None,
) -> Action:
    """Propose transition ``type`` of the lot with human ``params``; returns the action collecting signatures.

    Raises 404/403 if ``org`` may not see the lot or is not one of its parties, 422 ``invalid_action`` /
    ``invalid_params`` for an unknown type or malformed params, 409 where the lot's stored state rules the
    proposal out before any signature (``register`` of a registered lot, ``substitute_out`` with no
    substitution pending). Anything the contract decides (status, quantities, nonces) it decides at
    submission, with its own reason.
    """
    lot = visible_lot(session, org, lot_id, write=True)
    builder = _BUILDERS.get(type)
    if builder is None:
        raise Invalid(f"type must be one of {', '.join(ACTION_TYPES)}", code="invalid_action")
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise Invalid("params must be a JSON object", code="invalid_params")
    deadline = _now() + _expiry(expires_in_s)
    if type != "register" and lot.status == "proposed":
        raise Conflict(f"lot {lot.id} is not on chain yet: its register action must be signed and mined first", code="lot_not_registered")
    primary, fields, stored, approver = builder(session, collateral, org, lot, params)
    chain_lot = bytes.fromhex(lot.chain_lot[2:])
    return actions.create_action(
        session, collateral, lot=lot, type=type, primary_type=primary, fields={"lot": chain_lot, **fields},
        deadline=deadline, proposed_by=org, params=stored, approver=approver,
    )  # fmt: skip


Built = tuple[str, dict[str, Any], dict[str, Any], str | None]  # primary type, typed fields, stored params, approver


def _register(session: Session, collateral: CollateralClient, org: Organisation, lot: Lot, params: dict[str, Any]) -> Built:
    _only(params)
    if lot.status != "proposed":
        raise Conflict(f"lot {lot.id} is registered on chain already", code="lot_registered")
    if org.id != lot.warehouse_id:
        raise Forbidden("only the lot's warehouse proposes its registration", code="not_a_party")
    warehouse, enterprise = session.get(Organisation, lot.warehouse_id), session.get(Organisation, lot.enterprise_id)
    devices = [d.device_id for d in lot.devices]
    fields = {
        "warehouse": _on_chain(warehouse, "the warehouse"), "enterprise": _on_chain(enterprise, "the enterprise"),
        "goods": bytes.fromhex(lot.goods_hash[2:]), "quantity": lot.quantity, "unit": unit_code(lot.unit),
        "devices": [identifier_hash(d) for d in devices],
    }  # fmt: skip
    stored = {"goods": json.loads(lot.goods), "goods_hash": lot.goods_hash, "quantity": lot.quantity, "unit": lot.unit, "devices": devices}
    return "RegisterLot", fields, stored, None


def _verify(session: Session, collateral: CollateralClient, org: Organisation, lot: Lot, params: dict[str, Any]) -> Built:
    _only(params, "quantity", "assay")
    quantity, assay = _quantity(params, "quantity"), _document(params, "assay")
    stored = {"quantity": quantity, "assay": assay, "assay_hash": _hex(document_hash(assay))}
    return "VerifyLot", {"assay": document_hash(assay), "quantity": quantity}, stored, None


def _pledge(session: Session, collateral: CollateralClient, org: Organisation, lot: Lot, params: dict[str, Any]) -> Built:
    _only(params, "bank", "registration", "terms", "quantity", "min_quantity")
    bank = find_organisation(session, params.get("bank"), role="bank", field="params.bank")
    registration = params.get("registration")
    if not isinstance(registration, str) or not 1 <= len(registration) <= 128 or "\x00" in registration:
        raise Invalid("params.registration must be the movable-property registration number, 1-128 characters", code="invalid_params")
    terms = _terms(params.get("terms"))
    quantity = _quantity(params, "quantity") if "quantity" in params else _chain_quantity(collateral, lot)
    min_quantity = terms["min_quantity"]  # the minimum control value, in the lot's unit, as the terms agree
    if "min_quantity" in params and _quantity(params, "min_quantity", minimum=0) != min_quantity:
        raise Invalid("params.min_quantity must equal params.terms.min_quantity (or be left out)", code="invalid_params")
    stored = {
        "bank": bank.id, "registration": registration, "registration_hash": _hex(identifier_hash(registration)),
        "terms": terms, "terms_hash": _hex(document_hash(terms)), "quantity": quantity, "min_quantity": min_quantity,
    }  # fmt: skip
    fields = {
        "bank": _on_chain(bank, "params.bank"), "registration": identifier_hash(registration), "terms": document_hash(terms),
        "quantity": quantity, "minQuantity": min_quantity,
    }  # fmt: skip
    return "Pledge", fields, stored, None


def _quantity_only(primary: str) -> Callable[..., Built]:
    def build(session: Session, collateral: CollateralClient, org: Organisation, lot: Lot, params: dict[str, Any]) -> Built:
        _only(params, "quantity")
        quantity = _quantity(params, "quantity") if "quantity" in params or primary == "PartialRelease" else _chain_quantity(collateral, lot)
        return primary, {"quantity": quantity}, {"quantity": quantity}, None

    return build


def _substitute_in(session: Session, collateral: CollateralClient, org: Organisation, lot: Lot, params: dict[str, Any]) -> Built:
    _only(params, "goods", "assay", "quantity_in", "quantity_out")
    goods, assay = _document(params, "goods"), _document(params, "assay")
    quantity_in, quantity_out = _quantity(params, "quantity_in"), _quantity(params, "quantity_out")
    stored = {
        "goods": goods, "goods_hash": _hex(document_hash(goods)), "assay": assay, "assay_hash": _hex(document_hash(assay)),
        "quantity_in": quantity_in, "quantity_out": quantity_out,
    }  # fmt: skip
    fields = {"goods": document_hash(goods), "assay": document_hash(assay), "quantityIn": quantity_in, "quantityOut": quantity_out}
    return "SubstituteIn", fields, stored, None


def _substitute_out(session: Session, collateral: CollateralClient, org: Organisation, lot: Lot, params: dict[str, Any]) -> Built:
    """The bank approves exactly the substitution verified in: its fields come from that mined action."""
    _only(params)
    pending = session.scalar(
        select(Action).where(Action.lot_id == lot.id, Action.type == "substitute_in", Action.status == "confirmed")
        .order_by(Action.confirmed_at.desc()).limit(1)
    )  # fmt: skip
    if pending is None or collateral.pending_substitution(bytes.fromhex(lot.chain_lot[2:])) is None:
        raise Conflict(f"lot {lot.id} has no substitution waiting for the bank: propose substitute_in first", code="no_substitution")
    stored = json.loads(pending.params)
    fields = {
        "goods": bytes.fromhex(stored["goods_hash"][2:]), "assay": bytes.fromhex(stored["assay_hash"][2:]),
        "quantityIn": stored["quantity_in"], "quantityOut": stored["quantity_out"],
    }  # fmt: skip
    return "SubstituteOut", fields, {**stored, "substitute_in": pending.id}, None


def _cure_with_goods(session: Session, collateral: CollateralClient, org: Organisation, lot: Lot, params: dict[str, Any]) -> Built:
    _only(params, "goods", "assay", "quantity_in")
    goods, assay, quantity_in = _document(params, "goods"), _document(params, "assay"), _quantity(params, "quantity_in")
    stored = {"goods": goods, "goods_hash": _hex(document_hash(goods)), "assay": assay, "assay_hash": _hex(document_hash(assay)), "quantity_in": quantity_in}
    return "CureWithGoods", {"goods": document_hash(goods), "assay": document_hash(assay), "quantityIn": quantity_in}, stored, None


def _with_document(primary: str, name: str, field: str, approver_role: str | None = None) -> Callable[..., Built]:
    """A transition carrying one document hash (a reason, a payment reference); ``approver_role``: the lot
    party whose signer gives an either/or signature (the other option being the supervision key)."""

    def build(session: Session, collateral: CollateralClient, org: Organisation, lot: Lot, params: dict[str, Any]) -> Built:
        _only(params, name)
        document = _document(params, name)
        approver = None
        if approver_role is not None:
            party = session.get(Organisation, getattr(lot, f"{approver_role}_id") or "")
            if party is None or party.signer is None:
                raise Conflict(f"the lot has no {approver_role} with a signer to approve {primary}", code="organisation_not_on_chain")
            approver = party.signer
        return primary, {field: document_hash(document)}, {name: document, f"{name}_hash": _hex(document_hash(document))}, approver

    return build


def _margin_call(session: Session, collateral: CollateralClient, org: Organisation, lot: Lot, params: dict[str, Any]) -> Built:
    """The bank's own margin call: a reason document and the cure deadline recorded on chain, by default the
    terms' cure period from now (the supervision key raises the system's calls, :mod:`ledger.valuation`)."""
    _only(params, "reason", "cure_period_s")
    primary, fields, stored, approver = _with_document("MarginCall", "reason", "reason", approver_role="bank")(session, collateral, org, lot, {"reason": params.get("reason")})
    period = params.get("cure_period_s")
    if period is None:
        try:
            period = parse_terms(json.loads(lot.terms or "null")).cure_period_s
        except (InvalidTerms, ValueError):
            raise Invalid("the lot has no loan terms to take a cure period from: give params.cure_period_s", code="invalid_params") from None
    if isinstance(period, bool) or not isinstance(period, int) or not MIN_CURE_PERIOD_S <= period <= MAX_CURE_PERIOD_S:
        raise Invalid(f"params.cure_period_s must be an integer from {MIN_CURE_PERIOD_S} to {MAX_CURE_PERIOD_S}", code="invalid_params")
    cure_by = int(_now().timestamp()) + period
    return primary, {**fields, "cureBy": cure_by}, {**stored, "cure_period_s": period, "cure_by": cure_by}, approver


def _no_params(primary: str) -> Callable[..., Built]:
    def build(session: Session, collateral: CollateralClient, org: Organisation, lot: Lot, params: dict[str, Any]) -> Built:
        _only(params)
        return primary, {}, {}, None

    return build


def _close(session: Session, collateral: CollateralClient, org: Organisation, lot: Lot, params: dict[str, Any]) -> Built:
    _only(params)
    return collateral.close_action(bytes.fromhex(lot.chain_lot[2:])), {}, {}, None


_BUILDERS: dict[str, Callable[..., Built]] = {
    "register": _register,
    "verify": _verify,
    "pledge": _pledge,
    "partial_release": _quantity_only("PartialRelease"),
    "substitute_in": _substitute_in,
    "substitute_out": _substitute_out,
    "margin_call": _margin_call,
    "cure_with_goods": _cure_with_goods,
    "cure_with_cash": _with_document("CureWithCash", "payment", "payment"),
    "freeze": _with_document("Freeze", "reason", "reason", approver_role="warehouse"),
    "unfreeze": _no_params("Unfreeze"),
    "default": _with_document("Default", "reason", "reason"),
    "enforce": _no_params("Enforce"),
    "release": _quantity_only("Release"),
    "close": _close,
}
#: Every action ``type`` of ``POST /v1/lots/{id}/actions``.
ACTION_TYPES = tuple(_BUILDERS)


# --- params ---------------------------------------------------------------------------------------------


def _only(params: dict[str, Any], *allowed: str) -> None:
    extra = sorted(set(params) - set(allowed))
    if extra:
        allowed_text = ", ".join(allowed) if allowed else "none"
        raise Invalid(f"unknown params {extra}; this action takes: {allowed_text}", code="invalid_params")


def _quantity(params: dict[str, Any], name: str, *, minimum: int = 1) -> int:
    value = params.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value < 2**64:
        raise Invalid(f"{name} must be an integer quantity in the lot's unit, at least {minimum}", code="invalid_params")
    return value


def _document(params: dict[str, Any], name: str) -> Any:
    if name not in params or params[name] is None:
        raise Invalid(f"{name} is required: a JSON document (its keccak256 of RFC 8785 bytes goes on chain)", code="invalid_params")
    try:
        document_hash(params[name])
    except (TypeError, ValueError) as exc:
        raise Invalid(f"{name} cannot be canonicalised (RFC 8785): {exc}", code="invalid_params") from None
    if "\x00" in _dumps(params[name]):
        raise Invalid(f"{name} must not contain NUL characters", code="invalid_params")
    return params[name]


def _terms(terms: Any) -> dict[str, Any]:
    """The loan terms document, checked by :func:`attestation.valuation.parse_terms` (the valuation reads it)."""
    try:
        parse_terms(terms)
    except InvalidTerms as exc:
        raise Invalid(f"params.{exc}", code=exc.code) from None
    return _document({"terms": terms}, "terms")  # type: ignore[no-any-return]


def _chain_quantity(collateral: CollateralClient, lot: Lot) -> int:
    return collateral.lot(bytes.fromhex(lot.chain_lot[2:])).quantity


def _expiry(value: Any) -> timedelta:
    if value is None:
        return DEFAULT_EXPIRY
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_EXPIRY.total_seconds():
        raise Invalid(f"expires_in_s must be 1-{int(MAX_EXPIRY.total_seconds())} seconds", code="invalid_params")
    return timedelta(seconds=value)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _hex(raw: bytes) -> str:
    return "0x" + raw.hex()


# --- once mined -------------------------------------------------------------------------------------------

#: The documents an action puts in the lot's record once mined (its hash is then the chain's).
_DOCUMENTS = {
    "verify": ("assay",),
    "pledge": ("registration", "terms"),
    "substitute_out": ("goods", "assay"),
    "cure_with_goods": ("goods", "assay"),
}


def apply_confirmed(session: Session, collateral: CollateralClient, action: Action) -> None:
    """After ``action`` was mined: copy the chain's status, bank and quantity into its lot, and the plain
    documents its params carry (assay, terms, registration, goods) into the lot's record."""
    lot = session.get(Lot, action.lot_id) if action.lot_id else None
    if lot is None:
        return
    params = json.loads(action.params)
    for name in _DOCUMENTS.get(action.type, ()):
        if name == "registration":
            lot.registration = params["registration"]
            continue
        setattr(lot, name, _dumps(params[name]))
        setattr(lot, f"{name}_hash", params[f"{name}_hash"])
    actions.refresh_lot(session, collateral, lot)


# --- views ------------------------------------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else utc(moment).isoformat().replace("+00:00", "Z")


def action_view(action: Action, *, now: datetime | None = None) -> dict[str, Any]:
    """An action as the API shows it: ``expired`` once its deadline passed while it still collected."""
    status = action.status
    if status == "collecting" and utc(action.deadline) <= (now or _now()):
        status = "expired"
    signed = {s.position: s for s in action.signatures}
    required = [
        {"role": p["role"], "org": p.get("org"), "signer": p["signer"], "signed": i in signed}
        for i, p in enumerate(json.loads(action.required))
    ]
    error = {"code": action.error_code, "message": action.error_message} if action.error_code else None
    return {
        "id": action.id,
        "lot": action.lot_id,
        "type": action.type,
        "primary_type": action.primary_type,
        "status": status,
        "params": json.loads(action.params),
        "required": required,
        "signatures": [{"role": s.role, "org": s.organisation_id, "signer": s.signer, "signature": s.signature,
                        "received_at": _iso(s.received_at)} for s in action.signatures],  # fmt: skip
        "typed_data": json.loads(action.typed_data),
        "proposed_by": action.proposed_by,
        "deadline": _iso(action.deadline),
        "tx_hash": action.tx_hash,
        "block_number": action.block_number,
        "gas_used": action.gas_used,
        "error": error,
        "created_at": _iso(action.created_at),
        "submitted_at": _iso(action.submitted_at),
        "confirmed_at": _iso(action.confirmed_at),
    }


def lot_view(session: Session, lot: Lot, collateral: CollateralClient | None = None) -> dict[str, Any]:
    """The lot's off-chain record and, with ``collateral``, its state as the chain has it now."""

    def org(org_id: str | None) -> dict[str, Any] | None:
        found = session.get(Organisation, org_id) if org_id else None
        return None if found is None else {"id": found.id, "name": found.name, "chain_org": found.chain_org}

    view: dict[str, Any] = {
        "id": lot.id,
        "chain_lot": lot.chain_lot,
        "status": lot.status,
        "warehouse": org(lot.warehouse_id),
        "enterprise": org(lot.enterprise_id),
        "bank": org(lot.bank_id),
        "insurer": org(lot.insurer_id),
        "quantity": lot.quantity,
        "unit": lot.unit,
        "goods": json.loads(lot.goods),
        "goods_hash": lot.goods_hash,
        "assay": json.loads(lot.assay) if lot.assay else None,
        "assay_hash": lot.assay_hash,
        "registration": lot.registration,
        "terms": json.loads(lot.terms) if lot.terms else None,
        "terms_hash": lot.terms_hash,
        "devices": [d.device_id for d in lot.devices],
        "created_at": _iso(lot.created_at),
        "updated_at": _iso(lot.updated_at),
    }
    if collateral is not None:
        view["chain"] = _chain_state(session, collateral, lot)
        if view["chain"] is not None:
            view["status"] = view["chain"]["status"]
    return view


def _chain_state(session: Session, collateral: CollateralClient, lot: Lot) -> dict[str, Any] | None:
    state = collateral.lot(bytes.fromhex(lot.chain_lot[2:]))
    if state.status == Status.NONE:
        return None
    by_chain = {o.chain_org: o.id for o in session.scalars(select(Organisation).where(
        Organisation.chain_org.in_([state.warehouse, state.enterprise, state.bank])))}  # fmt: skip
    return {
        "status": state.status.name.lower(),
        "frozen_from": state.frozen_from.name.lower() if state.frozen_from != Status.NONE else None,
        "warehouse": by_chain.get(state.warehouse),
        "enterprise": by_chain.get(state.enterprise),
        "bank": by_chain.get(state.bank) if state.bank else None,
        "quantity": state.quantity,
        "min_quantity": state.min_quantity,
        "released": state.released,
        "unit": state.unit,
        "control_start": _iso(datetime.fromtimestamp(state.control_start, timezone.utc).replace(tzinfo=None)) if state.control_start else None,
        "goods": _hex(state.goods),
        "assay": _hex(state.assay) if any(state.assay) else None,
        "documents_match": {
            "goods": _hex(state.goods) == lot.goods_hash,
            "assay": (_hex(state.assay) if any(state.assay) else None) == lot.assay_hash,
        },
    }


def timeline(session: Session, collateral: CollateralClient, lot: Lot, *, from_block: int = 0, reading_limit: int = 1000) -> dict[str, Any]:
    """The lot's history, oldest first: its CollateralRegistry events (with transaction and block), its
    actions, and the readings of its devices or about it (at most ``reading_limit``, the newest)."""
    entries: list[dict[str, Any]] = []
    times: dict[int, str | None] = {}
    for event in collateral.events(lot=bytes.fromhex(lot.chain_lot[2:]), from_block=from_block):
        if event.block_number not in times:
            stamp = collateral.chain.reader.block_timestamp(event.block_number)
            times[event.block_number] = _iso(datetime.fromtimestamp(stamp, timezone.utc).replace(tzinfo=None))
        entries.append({"kind": "chain_event", "at": times[event.block_number], "event": event.name, "args": event.args,
                        "tx_hash": event.tx_hash, "block_number": event.block_number, "log_index": event.log_index})  # fmt: skip
    for action in session.scalars(select(Action).where(Action.lot_id == lot.id).order_by(Action.created_at)):
        view = action_view(action)
        entries.append({"kind": "action", "at": view["created_at"], "id": action.id, "type": action.type,
                        "status": view["status"], "tx_hash": action.tx_hash, "block_number": action.block_number,
                        "proposed_by": action.proposed_by, "error": view["error"]})  # fmt: skip
    devices = [d.device_id for d in lot.devices]
    readings = list(session.scalars(
        select(Reading).where(or_(Reading.lot == lot.id, Reading.device_id.in_(devices)))
        .order_by(Reading.ts.desc(), Reading.pk.desc()).limit(reading_limit + 1)
    ))  # fmt: skip
    truncated = len(readings) > reading_limit
    for reading in reversed(readings[:reading_limit]):
        entries.append({"kind": "reading", "at": _iso(reading.ts), "id": reading.id, "device": reading.device_id,
                        "seq": reading.seq, "reading_kind": reading.kind, "lot": reading.lot, "batch": reading.batch_index})  # fmt: skip
    order = {"chain_event": 0, "action": 1, "reading": 2}
    epoch = datetime.min.replace(tzinfo=timezone.utc)
    entries.sort(key=lambda e: (datetime.fromisoformat(e["at"].replace("Z", "+00:00")) if e["at"] else epoch, order[e["kind"]]))
    return {"lot": lot.id, "chain_lot": lot.chain_lot, "entries": entries, "readings_truncated": truncated}

