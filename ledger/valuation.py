"""Valuation and margin calls: price feeds, signed price points, and the valuation loop.

**Feeds and prices.** A feed is configured with its public key (``pledgeledger feed add``). A price point
(:mod:`attestation.valuation`) is accepted only when its feed is configured and active, may price that
commodity, its signature verifies with the feed's key, it is no older than ``price_max_age_s`` and not
from the future, and it is newer than the feed's last point for the same commodity and currency (an old
price replayed cannot lift a lot out of a margin call). Points are stored as received, so every
valuation can be re-done and its price re-verified.

**The valuation pass** (:meth:`Valuer.run_once`, every ``valuation_interval_s`` and whenever a price
arrives, on one instance at a time: a :class:`~ledger.leadership.Leadership` lease) goes through every
lot that is pledged, under a margin call or frozen, reads it from the chain, and:

1. follows its open margin call: back to Pledged on chain → ``cured`` (by goods or cash, from the cure
   action; a cash cure's ``amount`` reduces the outstanding loan from then on), Defaulted by the bank →
   ``defaulted``, pledge ended → ``closed``; still in MarginCall after ``cure_by`` → the supervision key
   ends it in default on chain (``DefaultUncured``);
2. adopts a margin call raised on chain by the bank itself;
3. values the lot at the latest price of the terms' commodity and currency (none, or older than
   ``price_max_age_s``: the lot is not valued, and no decision is taken on a stale price), stores the
   valuation when an input changed, and, for a Pledged lot above the warning line, raises a margin call
   on chain (``MarginCall`` signed by the supervision key, ``reason`` = the price point's id, ``cureBy`` =
   now + the terms' cure period). Above the disposal line the call is flagged ``disposal`` and a
   ``Default`` action is proposed for the bank to sign.

Each change is committed with its webhook event (``margin_call.opened``, ``margin_call.cured``,
``lot.defaulted``) to the lot's bank, enterprise and warehouse.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from eth_account.signers.local import LocalAccount
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from attestation.documents import document_hash
from attestation.errors import AttestationError
from attestation.signatures import load_public_key
from attestation.valuation import (
    COMMODITY,
    FEED_ID,
    InvalidTerms,
    PricePoint as SignedPrice,
    Valuation,
    check_fresh,
    parse_amount,
    parse_price_point,
    parse_terms,
    value_lot,
    verify_price_point,
)
from ledger import actions, lots, webhooks
from ledger.chain.base import ChainError
from ledger.chain.collateral import CollateralClient, Status
from ledger.errors import Conflict, Forbidden, Invalid, NotFound
from ledger.leadership import Leadership
from ledger.store.db import Database, log_failed_round, storable_text
from ledger.store.models import (
    Action,
    Lot,
    LotValuation,
    MarginCall,
    Organisation,
    PriceFeed,
    PricePoint,
    naive_utc,
    utc,
)

__all__ = [
    "Valuer",
    "accept_price",
    "add_feed",
    "cash_payment",
    "latest_price",
    "list_feeds",
    "list_margin_calls",
    "list_prices",
    "lot_valuation",
    "remove_feed",
]

log = logging.getLogger(__name__)

#: Lot states (cached from chain) the pass looks at.
_WATCHED = ("pledged", "margin_call", "frozen")
_LIVE_CALL = (Status.PLEDGED, Status.MARGIN_CALL)
_CURES = ("CureWithGoods", "CureWithCash")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else utc(moment).isoformat().replace("+00:00", "Z")


# --- feeds ------------------------------------------------------------------------------------


def add_feed(session: Session, *, name: str, alg: str, public_key: str, commodities: list[str] | None = None,
             replace: bool = False) -> dict[str, Any]:  # fmt: skip
    """Trust price points of feed ``name`` signed with ``public_key`` (PEM) under ``alg``, for ``commodities``
    (none: any). An existing active feed is only re-keyed with ``replace``."""
    if not isinstance(name, str) or not FEED_ID.fullmatch(name):
        raise Invalid("a feed name is 1-64 chars of [A-Za-z0-9._:-]", code="invalid_feed")
    load_public_key(alg, public_key)  # raises InvalidKey / UnsupportedAlgorithm naming the fix
    for commodity in commodities or []:
        if not COMMODITY.fullmatch(commodity):
            raise Invalid(f"commodity {commodity!r} must be a lower-case code like steel_hrc", code="invalid_feed")
    feed = session.get(PriceFeed, name)
    if feed is not None and feed.active and not replace:
        raise Conflict(f"feed {name} is configured already: pass --replace to change its key", code="feed_exists")
    if feed is None:
        feed = PriceFeed(id=name)
        session.add(feed)
    feed.alg, feed.public_key, feed.active = alg, public_key, True
    feed.commodities = " ".join(commodities) if commodities else None
    session.flush()
    return _feed_view(feed)


def remove_feed(session: Session, name: str) -> None:
    """Stop accepting points of feed ``name`` (its stored points stay, and so do valuations made with them)."""
    feed = session.get(PriceFeed, name)
    if feed is None or not feed.active:
        raise NotFound(f"no active feed {name}: `pledgeledger feed list` shows them", code="feed_not_found")
    feed.active = False


def list_feeds(session: Session) -> list[dict[str, Any]]:
    return [_feed_view(f) for f in session.scalars(select(PriceFeed).order_by(PriceFeed.id))]


def _feed_view(feed: PriceFeed) -> dict[str, Any]:
    return {"id": feed.id, "alg": feed.alg, "public_key": feed.public_key, "active": feed.active,
            "commodities": feed.commodities.split() if feed.commodities else None,
            "created_at": _iso(feed.created_at)}  # fmt: skip


# --- price points -------------------------------------------------------------------------------


def accept_price(session: Session, envelope: Any, *, now: datetime, max_age_s: float,
                 max_future_skew_s: float) -> tuple[dict[str, Any], bool]:  # fmt: skip
    """Check and store one signed price point; returns its view and whether it is new (``False``: the identical
    point was stored before). Raises :class:`AttestationError` (``invalid_price_point``,
    ``price_signature_invalid``, ``price_stale``, ``price_from_future``) or :class:`Invalid`/:class:`Conflict`
    (``unknown_feed``, ``commodity_not_allowed``, ``price_regressed``)."""
    point = parse_price_point(envelope)
    feed = session.get(PriceFeed, point.feed)
    if feed is None or not feed.active:
        raise Invalid(f"feed {point.feed!r} is not configured: `pledgeledger feed add {point.feed} ...` first",
                      code="unknown_feed")  # fmt: skip
    if feed.commodities and point.commodity not in feed.commodities.split():
        raise Invalid(f"feed {feed.id} may price only {feed.commodities}, not {point.commodity}", code="commodity_not_allowed")
    verify_price_point(point, alg=feed.alg, public_key_pem=feed.public_key)
    existing = session.get(PricePoint, point.id)
    if existing is not None:
        return price_view(existing), False
    check_fresh(point.ts, now=now, max_age_s=max_age_s, max_future_skew_s=max_future_skew_s)
    last = session.scalar(
        select(func.max(PricePoint.ts)).where(
            PricePoint.feed_id == feed.id, PricePoint.commodity == point.commodity, PricePoint.currency == point.currency
        )
    )
    if last is not None and naive_utc(point.ts) <= last:
        raise Conflict(
            f"feed {feed.id} already priced {point.commodity} in {point.currency} at {_iso(last)}; a point must be "
            "newer than the feed's last one (an old price cannot be replayed)", code="price_regressed",
        )  # fmt: skip
    row = _store(session, point)
    return price_view(row), True


def _store(session: Session, point: SignedPrice) -> PricePoint:
    row = PricePoint(
        id=point.id, feed_id=point.feed, commodity=point.commodity, currency=point.currency, unit=point.unit,
        price=envelope_price(point), ts=naive_utc(point.ts), envelope=json.dumps(point.envelope, separators=(",", ":")),
    )  # fmt: skip
    session.add(row)
    session.flush()
    return row


def envelope_price(point: SignedPrice) -> str:
    """The price exactly as the feed signed it."""
    return str(point.envelope["payload"]["price"])


def price_view(row: PricePoint) -> dict[str, Any]:
    return {"id": row.id, "feed": row.feed_id, "commodity": row.commodity, "price": row.price, "currency": row.currency,
            "unit": row.unit, "ts": _iso(row.ts), "received_at": _iso(row.received_at),
            "price_point": json.loads(row.envelope)}  # fmt: skip


def latest_price(session: Session, commodity: str, currency: str) -> PricePoint | None:
    """The most recently observed price of ``commodity`` in ``currency`` from any active feed."""
    return session.scalars(
        select(PricePoint)
        .join(PriceFeed, PriceFeed.id == PricePoint.feed_id)
        .where(PricePoint.commodity == commodity, PricePoint.currency == currency, PriceFeed.active)
        .order_by(PricePoint.ts.desc(), PricePoint.received_at.desc())
        .limit(1)
    ).first()


def list_prices(session: Session, *, commodity: str | None, currency: str | None, limit: int) -> list[dict[str, Any]]:
    query = select(PricePoint).order_by(PricePoint.ts.desc()).limit(limit)
    if commodity:
        query = query.where(PricePoint.commodity == commodity)
    if currency:
        query = query.where(PricePoint.currency == currency)
    return [price_view(r) for r in session.scalars(query)]


def cash_payment(*, amount: str, currency: str, reference: str) -> tuple[dict[str, str], bytes]:
    """The payment document of a cash cure and its 32-byte hash, the ``payment`` of ``CureWithCash``
    (:func:`attestation.documents.document_hash`, as for every document). Put the document in the action's params: its ``amount`` is what the
    valuation deducts from the outstanding loan."""
    parse_amount(amount, "amount")
    document = {"amount": amount, "currency": currency, "reference": reference}
    return document, document_hash(document)


# --- views --------------------------------------------------------------------------------------


def _visible_lot(session: Session, org: Organisation, lot_id: str) -> Lot:
    """The lot as :func:`ledger.lots.visible_lot` scopes it; an insurer sees the lot, not its loan (403)."""
    lot = lots.visible_lot(session, org, lot_id)
    if org.role == "insurer":
        raise Forbidden("a lot's valuation is for its warehouse, enterprise and bank, and auditors", code="role_forbidden")
    return lot


def _paid_in(session: Session, lot_id: str) -> Decimal:
    amounts = session.scalars(select(MarginCall.paid_in).where(MarginCall.lot_id == lot_id, MarginCall.paid_in.is_not(None)))
    return sum((Decimal(a) for a in amounts), Decimal(0))


def assess(session: Session, lot: Lot, *, quantity: int, unit: str, now: datetime,
           max_age_s: float) -> tuple[str, Valuation | None, PricePoint | None]:  # fmt: skip
    """Value ``lot`` now: ``(state, valuation, price)``; ``state`` is ``valued``, ``no_terms``,
    ``invalid_terms``, ``no_price``, ``price_stale`` or ``unit_unknown``."""
    if not lot.terms:
        return "no_terms", None, None
    try:
        terms = parse_terms(json.loads(lot.terms))
    except (InvalidTerms, ValueError):
        return "invalid_terms", None, None
    price = latest_price(session, terms.commodity, terms.currency)
    if price is None:
        return "no_price", None, None
    if (now - utc(price.ts)).total_seconds() > max_age_s:
        return "price_stale", None, price
    try:
        valuation = value_lot(quantity=quantity, unit=unit, price=Decimal(price.price), price_unit=price.unit,
                              currency=price.currency, terms=terms, paid_in=_paid_in(session, lot.id))  # fmt: skip
    except ValueError:
        return "unit_unknown", None, price
    return "valued", valuation, price


def lot_valuation(session: Session, org: Organisation, lot_id: str, *, now: datetime, max_age_s: float) -> dict[str, Any]:
    """The lot valued now at the latest price (for its parties and auditors), with its open margin call."""
    lot = _visible_lot(session, org, lot_id)
    state, valuation, price = assess(session, lot, quantity=lot.quantity, unit=lot.unit, now=now, max_age_s=max_age_s)
    call = _open_call(session, lot.id)
    terms = json.loads(lot.terms) if lot.terms else None
    return {
        "lot": lot.id, "status": lot.status, "state": state, "valued_at": _iso(naive_utc(now)), "terms": terms,
        "price": price_view(price) if price is not None else None,
        "valuation": valuation.as_dict() if valuation is not None else None,
        "margin_call": margin_call_view(call) if call is not None else None,
    }  # fmt: skip


def margin_call_view(call: MarginCall) -> dict[str, Any]:
    return {
        "id": call.id, "lot": call.lot_id, "status": call.status, "level": call.level, "disposal": call.disposal,
        "ltv": call.ltv, "reason": call.reason, "cure_by": _iso(call.cure_by), "opened_at": _iso(call.opened_at),
        "action": call.action_id, "default_proposal": call.default_proposal_id, "cured_by": call.cured_by,
        "cure_action": call.cure_action_id, "paid_in": call.paid_in, "default_action": call.default_action_id,
        "closed_at": _iso(call.closed_at),
    }  # fmt: skip


def list_margin_calls(session: Session, org: Organisation, *, status: str | None = None, lot: str | None = None,
                      limit: int = 100) -> list[dict[str, Any]]:  # fmt: skip
    """Margin calls on the lots ``org`` is a party to (every lot for auditors), newest first."""
    query = select(MarginCall).join(Lot, Lot.id == MarginCall.lot_id).order_by(MarginCall.opened_at.desc()).limit(limit)
    if org.role != "auditor":
        query = query.where((Lot.bank_id == org.id) | (Lot.enterprise_id == org.id) | (Lot.warehouse_id == org.id))
    if status:
        query = query.where(MarginCall.status == status)
    if lot:
        if not storable_text(lot):
            return []
        query = query.where(MarginCall.lot_id == lot)
    return [margin_call_view(c) for c in session.scalars(query)]


def _open_call(session: Session, lot_id: str) -> MarginCall | None:
    return session.scalars(select(MarginCall).where(MarginCall.lot_id == lot_id, MarginCall.status == "open")).first()


# --- the valuation pass -------------------------------------------------------------------------


class Valuer:
    """Values pledged lots and runs their margin calls (see the module doc); :meth:`run_once` for tests."""

    def __init__(self, db: Database, collateral: CollateralClient, supervisor: LocalAccount, *, max_age_s: float,
                 interval_s: float = 60.0, leadership: Leadership | None = None,
                 wake_webhooks: Callable[[], None] | None = None) -> None:  # fmt: skip
        self.db = db
        self.collateral = collateral
        self.supervisor = supervisor
        self.max_age_s = max_age_s
        self.interval_s = interval_s
        self.leadership = leadership
        self.wake_webhooks = wake_webhooks
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self, now: datetime | None = None) -> dict[str, int]:
        """One pass over every watched lot; returns counts of what it did."""
        now = now or _now()
        counts = {"lots": 0, "valued": 0, "opened": 0, "cured": 0, "defaulted": 0, "closed": 0, "skipped": 0}
        with self.db.session() as session:
            lot_ids = list(session.scalars(
                select(Lot.id).where(Lot.status.in_(_WATCHED) | Lot.id.in_(
                    select(MarginCall.lot_id).where(MarginCall.status == "open")
                )).order_by(Lot.id)
            ))  # fmt: skip
        for lot_id in lot_ids:
            counts["lots"] += 1
            try:
                with self.db.session() as session:
                    self._lot(session, lot_id, now, counts)
            except ChainError as exc:
                counts["skipped"] += 1
                log.warning("valuation of lot %s skipped, the chain failed: %s", lot_id, exc)
        if (counts["opened"] or counts["cured"] or counts["defaulted"]) and self.wake_webhooks is not None:
            self.wake_webhooks()
        return counts

    def _lot(self, session: Session, lot_id: str, now: datetime, counts: dict[str, int]) -> None:
        lot = session.get(Lot, lot_id)
        if lot is None:
            return
        chain_id = bytes.fromhex(lot.chain_lot[2:])
        on_chain = self.collateral.lot(chain_id)
        if on_chain.status == Status.NONE:
            return
        previous_quantity = lot.quantity
        lot.status, lot.quantity = on_chain.status.name.lower(), on_chain.quantity
        call = _open_call(session, lot.id)
        if call is not None:
            outcome = self._follow(session, lot, call, on_chain, previous_quantity, now)
            if outcome:
                counts[outcome] += 1
                if outcome == "defaulted":
                    return
        elif on_chain.status == Status.MARGIN_CALL:
            call = self._adopt(session, lot, on_chain)
            counts["opened"] += 1
        if on_chain.status not in _LIVE_CALL:
            return
        state, valuation, price = assess(session, lot, quantity=on_chain.quantity, unit=on_chain.unit, now=now,
                                         max_age_s=self.max_age_s)  # fmt: skip
        if valuation is None or price is None:
            if state not in ("no_terms",):
                counts["skipped"] += 1
                log.info("lot %s not valued: %s", lot.id, state)
            return
        counts["valued"] += 1
        record = self._record(session, lot, valuation, price, now)
        if on_chain.status == Status.PLEDGED and valuation.level != "ok":
            if self._open(session, lot, valuation, price, record, now, chain_id):
                counts["opened"] += 1
        elif call is not None and call.status == "open" and valuation.level == "disposal" and not call.disposal:
            self._flag_disposal(session, lot, call, chain_id)

    # -- following an open call --------------------------------------------------------------

    def _follow(self, session: Session, lot: Lot, call: MarginCall, on_chain: Any, previous_quantity: int,
                now: datetime) -> str | None:  # fmt: skip
        status = on_chain.status
        if status == Status.PLEDGED:
            self._cured(session, lot, call, on_chain.quantity > previous_quantity, now)
            return "cured"
        if status == Status.DEFAULTED:
            call.status, call.closed_at = "defaulted", naive_utc(now)
            self._announce(session, lot, "lot.defaulted", {"margin_call": call.id, "reason": "declared_by_bank"})
            return "defaulted"
        if status in (Status.RELEASED, Status.ENFORCEMENT, Status.CLOSED):
            call.status, call.closed_at = "closed", naive_utc(now)
            return "closed"
        if status == Status.MARGIN_CALL:
            if on_chain.cure_by and naive_utc(datetime.fromtimestamp(on_chain.cure_by, timezone.utc)) != call.cure_by:
                call.cure_by = naive_utc(datetime.fromtimestamp(on_chain.cure_by, timezone.utc))
            if now > utc(call.cure_by):
                return "defaulted" if self._default(session, lot, call, now) else None
        return None  # Frozen: the freeze decides first; the bank and warehouse clear it

    def _cured(self, session: Session, lot: Lot, call: MarginCall, more_goods: bool, now: datetime) -> None:
        cure = session.scalars(
            select(Action).where(Action.lot_id == lot.id, Action.primary_type.in_(_CURES), Action.status == "confirmed",
                                 Action.confirmed_at >= call.opened_at).order_by(Action.confirmed_at.desc()).limit(1)
        ).first()  # fmt: skip
        if cure is not None:
            call.cured_by = "goods" if cure.primary_type == "CureWithGoods" else "cash"
            call.cure_action_id = cure.id
            if call.cured_by == "cash":
                call.paid_in = _cash_amount(cure)
        else:  # cured on chain outside this service
            call.cured_by = "goods" if more_goods else "cash"
        call.status, call.closed_at = "cured", naive_utc(now)
        proposal = session.get(Action, call.default_proposal_id) if call.default_proposal_id else None
        if proposal is not None and proposal.status == "collecting":  # withdrawn with the call
            proposal.status, proposal.error_message = "expired", f"margin call {call.id} was cured"
        self._announce(session, lot, "margin_call.cured", {
            "margin_call": call.id, "cured_by": call.cured_by, "paid_in": call.paid_in,
            "action": call.cure_action_id, "tx_hash": cure.tx_hash if cure is not None else None,
        })  # fmt: skip

    def _default(self, session: Session, lot: Lot, call: MarginCall, now: datetime) -> bool:
        action = actions.system_action(
            session, self.collateral, self.supervisor, lot=lot, type="default_uncured", primary_type="DefaultUncured",
            fields={"lot": bytes.fromhex(lot.chain_lot[2:]), "reason": bytes.fromhex(call.reason[2:])},
            params={"margin_call": call.id, "cure_by": _iso(call.cure_by), "reason": "margin_call_uncured"},
            deadline=self._deadline(now),
        )  # fmt: skip
        if action.status != "confirmed":
            log.warning("lot %s: default of uncured margin call %s refused: %s", lot.id, call.id, action.error_message)
            return False
        call.status, call.closed_at, call.default_action_id = "defaulted", naive_utc(now), action.id
        log.warning("lot %s defaulted: margin call %s not cured by %s (tx %s)", lot.id, call.id, _iso(call.cure_by), action.tx_hash)
        self._announce(session, lot, "lot.defaulted", {
            "margin_call": call.id, "reason": "margin_call_uncured", "cure_by": _iso(call.cure_by),
            "action": action.id, "tx_hash": action.tx_hash,
        })  # fmt: skip
        return True

    def _adopt(self, session: Session, lot: Lot, on_chain: Any) -> MarginCall:
        """A margin call on chain the pass did not raise (the bank's, or ours before a crash lost the row)."""
        ours = session.scalars(
            select(Action).where(Action.lot_id == lot.id, Action.primary_type == "MarginCall", Action.status == "confirmed")
            .order_by(Action.confirmed_at.desc()).limit(1)
        ).first()  # fmt: skip
        typed = json.loads(ours.typed_data)["message"] if ours is not None else {}
        if typed.get("cureBy") != on_chain.cure_by:  # an earlier call's action: this one was made outside the service
            ours, typed = None, {}
        call = MarginCall(
            lot_id=lot.id, status="open", level="bank" if ours is None or _signed_by(ours) == "bank" else "warning",
            reason=typed.get("reason", "0x" + "00" * 32), action_id=ours.id if ours is not None else None,
            cure_by=naive_utc(datetime.fromtimestamp(on_chain.cure_by, timezone.utc)),
        )  # fmt: skip
        session.add(call)
        session.flush()
        self._announce(session, lot, "margin_call.opened", {"margin_call": call.id, "level": call.level,
                                                            "cure_by": _iso(call.cure_by)})  # fmt: skip
        return call

    # -- opening a call ------------------------------------------------------------------------

    def _record(self, session: Session, lot: Lot, valuation: Valuation, price: PricePoint, now: datetime) -> LotValuation:
        last = session.scalars(
            select(LotValuation).where(LotValuation.lot_id == lot.id).order_by(LotValuation.id.desc()).limit(1)
        ).first()
        view, paid_in = valuation.as_dict(), str(valuation.paid_in)
        if last is not None and (last.price_id, last.quantity, last.paid_in) == (price.id, valuation.quantity, paid_in):
            return last
        record = LotValuation(
            lot_id=lot.id, price_id=price.id, quantity=valuation.quantity, unit=valuation.unit,
            paid_in=paid_in, collateral_value=view["collateral_value"], ltv=view["ltv"],
            level=valuation.level, valued_at=naive_utc(now),
        )  # fmt: skip
        session.add(record)
        session.flush()
        return record

    def _open(self, session: Session, lot: Lot, valuation: Valuation, price: PricePoint, record: LotValuation,
              now: datetime, chain_id: bytes) -> bool:  # fmt: skip
        terms = parse_terms(json.loads(lot.terms or "{}"))
        chain_now = max(int(now.timestamp()), self._chain_time())
        cure_by = chain_now + terms.cure_period_s
        view = valuation.as_dict()
        action = actions.system_action(
            session, self.collateral, self.supervisor, lot=lot, type="margin_call", primary_type="MarginCall",
            fields={"lot": chain_id, "reason": bytes.fromhex(price.id), "cureBy": cure_by},
            params={"reason": f"ltv_above_{valuation.level}_line", "ltv": view["ltv"], "price": price.id,
                    "valuation": record.id, "cure_by": cure_by},
            deadline=datetime.fromtimestamp(chain_now, timezone.utc) + actions.SYSTEM_DEADLINE,
        )  # fmt: skip
        if action.status != "confirmed":
            log.error("lot %s: margin call refused by the contract: %s", lot.id, action.error_message)
            return False
        call = MarginCall(
            lot_id=lot.id, status="open", level=valuation.level, ltv=view["ltv"], valuation_id=record.id,
            reason="0x" + price.id, cure_by=naive_utc(datetime.fromtimestamp(cure_by, timezone.utc)),
            opened_at=naive_utc(now), action_id=action.id,
        )  # fmt: skip
        session.add(call)
        session.flush()
        if valuation.level == "disposal":
            self._flag_disposal(session, lot, call, chain_id, announce=False)
        log.warning("lot %s: margin call %s (LTV %s above the %s line), cure by %s", lot.id, call.id, view["ltv"],
                    valuation.level, _iso(call.cure_by))  # fmt: skip
        self._announce(session, lot, "margin_call.opened", {
            "margin_call": call.id, "level": valuation.level, "ltv": view["ltv"], "warning_ltv": str(terms.warning_ltv),
            "disposal_ltv": str(terms.disposal_ltv), "cure_by": _iso(call.cure_by), "valuation": view,
            "price": {k: v for k, v in price_view(price).items() if k != "price_point"},
            "action": action.id, "tx_hash": action.tx_hash, "default_proposal": call.default_proposal_id,
        })  # fmt: skip
        return True

    def _flag_disposal(self, session: Session, lot: Lot, call: MarginCall, chain_id: bytes, *, announce: bool = True) -> None:
        """Above the disposal line: propose ``Default`` for the bank to sign (it alone may default before ``cure_by``)."""
        call.disposal = True
        try:
            proposal = actions.create_action(
                session, self.collateral, lot=lot, type="default", primary_type="Default",
                fields={"lot": chain_id, "reason": bytes.fromhex(call.reason[2:])},
                deadline=max(utc(call.cure_by), _now()), proposed_by=None,
                params={"margin_call": call.id, "reason": "ltv_above_disposal_line"},
            )  # fmt: skip
        except Invalid as exc:
            log.error("lot %s: could not propose a default to the bank: %s", lot.id, exc)
            return
        call.default_proposal_id = proposal.id
        log.warning("lot %s above the disposal line: default proposed to the bank (action %s)", lot.id, proposal.id)
        if announce:
            self._announce(session, lot, "margin_call.opened", {
                "margin_call": call.id, "level": "disposal", "cure_by": _iso(call.cure_by), "default_proposal": proposal.id,
            })  # fmt: skip

    def _deadline(self, now: datetime) -> datetime:
        """A system action's signature deadline: an hour after now by our clock or the chain's, whichever is later."""
        return datetime.fromtimestamp(max(int(now.timestamp()), self._chain_time()), timezone.utc) + actions.SYSTEM_DEADLINE

    def _chain_time(self) -> int:
        chain = self.collateral.chain
        return chain.reader.block_timestamp(chain.block_number())

    def _announce(self, session: Session, lot: Lot, event: str, data: dict[str, Any]) -> None:
        parties = [p for p in (lot.bank_id, lot.enterprise_id, lot.warehouse_id) if p]
        webhooks.enqueue(session, event, {"lot": lot.id, **data}, organisations=parties)

    # -- the background loop ---------------------------------------------------------------------

    def wake(self) -> None:
        """Value now (a price arrived) rather than at the next interval."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="valuation", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.leadership is None or self.leadership.acquire():
                    self.run_once()
                    self.last_error = None
            except Exception as exc:  # keep valuing whatever one pass hit
                self.last_error = log_failed_round(log, "valuation pass", exc)
            self._wake.wait(self.interval_s)
            self._wake.clear()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.leadership is not None:
            self.leadership.release()


def _signed_by(action: Action) -> str:
    """The role that gave an either/or action's single signature (``bank``, ``supervisor``)."""
    required = json.loads(action.required)
    return str(required[0]["role"]) if required else ""


def _cash_amount(action: Action) -> str | None:
    """The ``amount`` of a cash cure's payment document (its params), if well-formed."""
    try:
        params = json.loads(action.params)
        amount = params.get("amount") if isinstance(params, dict) else None
        if amount is None and isinstance(params, dict) and isinstance(params.get("payment"), dict):
            amount = params["payment"].get("amount")
        return str(parse_amount(amount)) if amount is not None else None
    except (AttestationError, ValueError):
        return None

