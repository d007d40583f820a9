"""Signed price points, loan terms, and the valuation arithmetic of a pledged lot (pure, no I/O).

A **price point** is signed by a price feed the ledger is configured to trust, in the envelope
readings use (SPEC §1)::

    {"payload": {"feed": "mysteel-hrc", "commodity": "steel_hrc", "price": "3650.00",
                 "currency": "CNY", "unit": "t", "ts": "2026-11-22T08:00:00Z"},
     "alg": "EdDSA", "sig": "<base64url, no padding>"}

- signed bytes = RFC 8785 (JCS) of ``payload``; the point's id is the SHA-256 of them (hex);
- ``alg``/``sig``: ES256 (P-256), ES256K or EdDSA, the 64-byte signatures of SPEC §1;
- ``price``: a positive decimal **string** per one ``unit`` (``"kg"`` or ``"t"``), never a JSON
  number, so no encoder can round it (fraud case 13); ``currency``: ISO 4217 letters;
- ``ts``: RFC 3339 UTC with ``Z``, when the price was observed.

**Loan terms** are the JSON document the three parties agree on at pledge (its hash on chain is
:func:`attestation.documents.document_hash`, keccak-256 of its RFC 8785 bytes, like every document)::

    {"loan_value": "7000000.00", "currency": "CNY", "commodity": "steel_hrc", "haircut": "0.70",
     "warning_ltv": "0.80", "disposal_ltv": "0.90", "min_quantity": 6000, "cure_period_s": 259200}

**Valuation** (:func:`value_lot`): collateral value = quantity (converted to the price's unit) ×
price × haircut; outstanding = loan value − cash paid in to cure margin calls; LTV = outstanding /
collateral value. LTV above ``warning_ltv`` calls for a margin call, above ``disposal_ltv`` for
disposal. All arithmetic is :class:`decimal.Decimal`, exact for the inputs' digits.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Any

from attestation.encoding import b64url_decode, canonical_json
from attestation.errors import AttestationError, InvalidReading, InvalidSignature
from attestation.readings import parse_timestamp
from attestation.signatures import ALGORITHMS, verify_signature

__all__ = [
    "LEVELS",
    "MIN_CURE_PERIOD_S",
    "UNITS",
    "InvalidPricePoint",
    "InvalidTerms",
    "LoanTerms",
    "PriceFromFuture",
    "PricePoint",
    "PriceSignatureInvalid",
    "PriceStale",
    "Valuation",
    "check_fresh",
    "convert_quantity",
    "parse_amount",
    "parse_price_point",
    "parse_terms",
    "value_lot",
    "verify_price_point",
]

#: Units a price or a lot may be counted in, as kilograms.
UNITS: dict[str, Decimal] = {"kg": Decimal(1), "t": Decimal(1000)}
#: The shortest cure period terms may give: CollateralRegistry.MIN_CURE_PERIOD (refused below it on chain).
MIN_CURE_PERIOD_S = 3600
MAX_CURE_PERIOD_S = 90 * 86400
#: A lot's valuation level: within terms, above the warning line (margin call), above the disposal line.
LEVELS = ("ok", "warning", "disposal")

_PAYLOAD_KEYS = frozenset({"feed", "commodity", "price", "currency", "unit", "ts"})
_ENVELOPE_KEYS = frozenset({"payload", "alg", "sig"})
FEED_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
COMMODITY = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
CURRENCY = re.compile(r"[A-Z]{3}")
_DECIMAL = re.compile(r"(0|[1-9][0-9]{0,17})(\.[0-9]{1,18})?")
_MAX_QUANTITY = 2**64 - 1


class InvalidPricePoint(AttestationError):
    """The price point breaks its format (field named)."""

    code = "invalid_price_point"


class PriceSignatureInvalid(InvalidSignature):
    """The point is not signed, or not by the key configured for its feed."""

    code = "price_signature_invalid"


class PriceStale(AttestationError):
    """The price was observed longer ago than the configured maximum age."""

    code = "price_stale"


class PriceFromFuture(AttestationError):
    code = "price_from_future"


class InvalidTerms(AttestationError):
    """The loan terms document breaks its format (field named)."""

    code = "invalid_terms"


# --- price points ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PricePoint:
    """A parsed (not yet verified) price point; ``id`` is the hex SHA-256 of ``signed_bytes``."""

    feed: str
    commodity: str
    price: Decimal
    currency: str
    unit: str
    ts: datetime
    alg: str
    signature: bytes
    signed_bytes: bytes
    envelope: Mapping[str, Any]

    @property
    def id(self) -> str:
        return hashlib.sha256(self.signed_bytes).hexdigest()


def _decimal(value: Any, field: str, error: type[AttestationError], *, positive: bool = True) -> Decimal:
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value):
        raise error(f"{field} must be a decimal string such as \"3650.00\" (not a JSON number), got {value!r}", field=field)
    number = Decimal(value)
    if positive and number <= 0:
        raise error(f"{field} must be greater than zero, got {value!r}", field=field)
    return number


def _pattern(value: Any, pattern: re.Pattern[str], field: str, what: str, error: type[AttestationError]) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise error(f"{field} must be {what}, got {value!r}", field=field)
    return value


def _unit(value: Any, field: str, error: type[AttestationError]) -> str:
    if value not in UNITS:
        raise error(f"{field} must be one of {', '.join(UNITS)}, got {value!r}", field=field)
    return str(value)


def parse_price_point(envelope: Any) -> PricePoint:
    """Check a price point's structure and compute its signed bytes. Raises :class:`InvalidPricePoint`
    naming the field, or :class:`PriceSignatureInvalid` when it carries no usable signature."""
    err = InvalidPricePoint
    if not isinstance(envelope, dict):
        raise err("a price point is a JSON object with payload, alg and sig", field="price")
    extra = set(envelope) - _ENVELOPE_KEYS
    if extra:
        raise err(f"unknown price point fields: {', '.join(sorted(extra))}", field="price")
    payload = envelope.get("payload")
    if not isinstance(payload, dict):
        raise err("payload must be an object with feed, commodity, price, currency, unit and ts", field="payload")
    if set(payload) != _PAYLOAD_KEYS:
        missing, unknown = sorted(_PAYLOAD_KEYS - set(payload)), sorted(set(payload) - _PAYLOAD_KEYS)
        raise err(f"payload must have exactly feed, commodity, price, currency, unit, ts (missing: {missing}, "
                  f"unknown: {unknown})", field="payload")  # fmt: skip
    feed = _pattern(payload["feed"], FEED_ID, "payload.feed", "1-64 chars of [A-Za-z0-9._:-]", err)
    commodity = _pattern(payload["commodity"], COMMODITY, "payload.commodity", "a lower-case code like steel_hrc", err)
    price = _decimal(payload["price"], "payload.price", err)
    currency = _pattern(payload["currency"], CURRENCY, "payload.currency", "three capital letters (ISO 4217)", err)
    unit = _unit(payload["unit"], "payload.unit", err)
    try:
        ts = parse_timestamp(payload["ts"])
    except InvalidReading as exc:
        raise err(exc.message, field="payload.ts") from None
    if "sig" not in envelope or "alg" not in envelope:
        raise PriceSignatureInvalid("the price point is unsigned: add alg and sig (the feed's signature over the "
                                    "RFC 8785 bytes of payload)", field="sig")  # fmt: skip
    alg = envelope["alg"]
    if alg not in ALGORITHMS:
        raise err(f"alg must be one of {', '.join(ALGORITHMS)}", field="alg")
    try:
        signature = b64url_decode(envelope["sig"])
    except (ValueError, TypeError):
        raise PriceSignatureInvalid("sig must be base64url without padding", field="sig") from None
    return PricePoint(feed, commodity, price, currency, unit, ts, alg, signature, canonical_json(payload), envelope)


def verify_price_point(point: PricePoint, *, alg: str, public_key_pem: str) -> None:
    """Check the point's signature with its feed's configured key (and algorithm).
    Raises :class:`PriceSignatureInvalid`."""
    if point.alg != alg:
        raise PriceSignatureInvalid(f"feed {point.feed} signs with {alg}, not {point.alg}", field="alg")
    try:
        verify_signature(alg, public_key_pem, point.signed_bytes, point.signature)
    except InvalidSignature as exc:
        raise PriceSignatureInvalid(f"{exc.message.replace('device key', 'feed key')} of {point.feed}", field="sig") from None


def check_fresh(ts: datetime, *, now: datetime, max_age_s: float, max_future_skew_s: float) -> None:
    """Refuse a price observed more than ``max_age_s`` before ``now`` (:class:`PriceStale`) or more than
    ``max_future_skew_s`` after it (:class:`PriceFromFuture`)."""
    age = (now - ts).total_seconds()
    if age > max_age_s:
        raise PriceStale(
            f"the price of {ts.isoformat()} is {age:.0f} s old, more than the {max_age_s:.0f} s allowed: "
            "send a current price", field="payload.ts",
        )  # fmt: skip
    if -age > max_future_skew_s:
        raise PriceFromFuture(f"the price is stamped {-age:.0f} s in the future: check the feed's clock", field="payload.ts")


# --- loan terms -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LoanTerms:
    """The loan terms agreed at pledge (see the module doc)."""

    loan_value: Decimal
    currency: str
    commodity: str
    haircut: Decimal
    warning_ltv: Decimal
    disposal_ltv: Decimal
    min_quantity: int
    cure_period_s: int

    def document(self) -> dict[str, Any]:
        """The terms as their JSON document (decimals as strings, as parsed)."""
        return {
            "loan_value": str(self.loan_value), "currency": self.currency, "commodity": self.commodity,
            "haircut": str(self.haircut), "warning_ltv": str(self.warning_ltv), "disposal_ltv": str(self.disposal_ltv),
            "min_quantity": self.min_quantity, "cure_period_s": self.cure_period_s,
        }  # fmt: skip


_TERMS_KEYS = ("loan_value", "currency", "commodity", "haircut", "warning_ltv", "disposal_ltv", "min_quantity", "cure_period_s")


def _integer(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidTerms(f"{field} must be an integer from {low} to {high}, got {value!r}", field=field)
    return value


def parse_terms(document: Any) -> LoanTerms:
    """Validate a loan terms document; raises :class:`InvalidTerms` naming the field to fix.

    Rules: every field present and no other; ``loan_value`` > 0; ``0 < haircut <= 1``;
    ``0 < warning_ltv < disposal_ltv``; ``min_quantity`` ≥ 0 (in the lot's unit);
    ``cure_period_s`` from 3,600 (the contract's minimum) to 90 days.
    """
    if not isinstance(document, dict):
        raise InvalidTerms(f"terms must be an object with {', '.join(_TERMS_KEYS)}", field="terms")
    missing, unknown = sorted(set(_TERMS_KEYS) - set(document)), sorted(set(document) - set(_TERMS_KEYS))
    if missing or unknown:
        raise InvalidTerms(f"terms must have exactly {', '.join(_TERMS_KEYS)} (missing: {missing}, unknown: {unknown})",
                           field="terms")  # fmt: skip
    loan_value = _decimal(document["loan_value"], "terms.loan_value", InvalidTerms)
    currency = _pattern(document["currency"], CURRENCY, "terms.currency", "three capital letters (ISO 4217)", InvalidTerms)
    commodity = _pattern(document["commodity"], COMMODITY, "terms.commodity", "a lower-case code like steel_hrc", InvalidTerms)
    haircut = _decimal(document["haircut"], "terms.haircut", InvalidTerms)
    if haircut > 1:
        raise InvalidTerms(f"terms.haircut is the share of market value lent against, at most 1, got {haircut}", field="terms.haircut")
    warning = _decimal(document["warning_ltv"], "terms.warning_ltv", InvalidTerms)
    disposal = _decimal(document["disposal_ltv"], "terms.disposal_ltv", InvalidTerms)
    if warning >= disposal:
        raise InvalidTerms(f"terms.warning_ltv ({warning}) must be below terms.disposal_ltv ({disposal})", field="terms.warning_ltv")
    min_quantity = _integer(document["min_quantity"], "terms.min_quantity", 0, _MAX_QUANTITY)
    cure = _integer(document["cure_period_s"], "terms.cure_period_s", MIN_CURE_PERIOD_S, MAX_CURE_PERIOD_S)
    return LoanTerms(loan_value, currency, commodity, haircut, warning, disposal, min_quantity, cure)


# --- valuation ------------------------------------------------------------------------------


def convert_quantity(quantity: int | Decimal, from_unit: str, to_unit: str) -> Decimal:
    """``quantity`` counted in ``from_unit`` expressed in ``to_unit`` (kg and t; exact)."""
    for unit in (from_unit, to_unit):
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
    return Decimal(quantity) * UNITS[from_unit] / UNITS[to_unit]


@dataclass(frozen=True)
class Valuation:
    """One valuation of a lot: inputs and results (decimals exact; :meth:`as_dict` gives strings)."""

    quantity: int
    unit: str
    price: Decimal
    price_unit: str
    currency: str
    haircut: Decimal
    market_value: Decimal  # quantity × price
    collateral_value: Decimal  # market value × haircut
    outstanding: Decimal  # loan value − cash paid in
    paid_in: Decimal  # cash confirmed by the bank to cure margin calls
    ltv: Decimal | None  # outstanding / collateral value; None when nothing is left to value
    level: str  # one of LEVELS

    def as_dict(self) -> dict[str, Any]:
        return {
            "quantity": self.quantity, "unit": self.unit, "price": str(self.price), "price_unit": self.price_unit,
            "currency": self.currency, "haircut": str(self.haircut), "market_value": _money(self.market_value),
            "collateral_value": _money(self.collateral_value), "outstanding": _money(self.outstanding),
            "paid_in": str(self.paid_in),
            "ltv": None if self.ltv is None else str(self.ltv.quantize(Decimal("0.000001"))), "level": self.level,
        }  # fmt: skip


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01")))


def value_lot(*, quantity: int, unit: str, price: Decimal, price_unit: str, currency: str, terms: LoanTerms,
              paid_in: Decimal = Decimal(0)) -> Valuation:  # fmt: skip
    """Value ``quantity`` (in ``unit``) of the lot at ``price`` per ``price_unit`` under ``terms``.

    ``paid_in`` is cash the bank confirmed to cure earlier margin calls; it reduces the outstanding loan.
    The level is ``disposal`` when LTV > ``disposal_ltv``, ``warning`` when LTV > ``warning_ltv``, else ``ok``;
    a lot with nothing left to value while money is outstanding is at ``disposal``. Raises :class:`ValueError`
    when the price is in another currency than the loan (no exchange rates here).
    """
    if currency != terms.currency:
        raise ValueError(f"the price is in {currency}, the loan in {terms.currency}")
    with localcontext() as ctx:
        ctx.prec = 50
        market = convert_quantity(quantity, unit, price_unit) * price
        collateral = market * terms.haircut
        outstanding = max(terms.loan_value - paid_in, Decimal(0))
        ltv = outstanding / collateral if collateral > 0 else None
        if ltv is None:
            level = "disposal" if outstanding > 0 else "ok"
        elif ltv > terms.disposal_ltv:
            level = "disposal"
        elif ltv > terms.warning_ltv:
            level = "warning"
        else:
            level = "ok"
    return Valuation(quantity, unit, price, price_unit, currency, terms.haircut, market, collateral, outstanding,
                     paid_in, ltv, level)  # fmt: skip


def parse_amount(value: Any, field: str = "amount") -> Decimal:
    """A positive decimal string (cash amounts), as :class:`InvalidTerms` when malformed."""
    return _decimal(value, field, InvalidTerms)

