"""Valuation and margin calls: signed price points in, lot valuations and margin calls out."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Response
from fastapi.responses import JSONResponse

from api.deps import CurrentOrg, LedgerDep
from api.schemas import LotValuationPublic, MarginCallPublic, PricePublic, PriceResult
from ledger.errors import Invalid

router = APIRouter(tags=["valuation"])

MAX_PRICES_PER_REQUEST = 100
_PRICE_EXAMPLE = {
    "payload": {"feed": "mysteel-hrc", "commodity": "steel_hrc", "price": "3650.00", "currency": "CNY", "unit": "t",
                "ts": "2026-11-22T08:00:00Z"},
    "alg": "EdDSA",
    "sig": "base64url signature over the RFC 8785 bytes of payload",
}  # fmt: skip


@router.post(
    "/v1/prices",
    summary="Submit a signed price point, or an array of up to 100",
    responses={
        201: {"description": "accepted", "model": PricePublic},
        200: {"description": "duplicate; or, for an array, one result per point in order", "model": list[PriceResult]},
    },
)
def post_prices(ledger: LedgerDep, response: Response, body: Annotated[Any, Body(examples=[_PRICE_EXAMPLE])]) -> Any:
    """Price feeds authenticate by their signatures (the feed's key is configured with `pledgeledger feed add`);
    no API key is needed. Refused: `unknown_feed`, `price_signature_invalid` (unsigned or not by the feed's key),
    `price_stale` (older than `PLEDGELEDGER_PRICE_MAX_AGE_S`), `price_from_future`, `price_regressed` (not newer
    than the feed's last point for that commodity), `invalid_price_point`. An accepted point triggers a valuation
    pass."""
    if isinstance(body, list):
        if len(body) > MAX_PRICES_PER_REQUEST:
            raise Invalid(f"send at most {MAX_PRICES_PER_REQUEST} price points per request, not {len(body)}",
                          code="too_many_prices")  # fmt: skip
        return JSONResponse(ledger.submit_prices(body))
    view, created = ledger.submit_price(body)
    response.status_code = 201 if created else 200
    return PricePublic(**view)


@router.get("/v1/prices", response_model=list[PricePublic], summary="Stored price points, newest first")
def get_prices(
    _: CurrentOrg,
    ledger: LedgerDep,
    commodity: Annotated[str | None, Query(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$", description="e.g. steel_hrc")] = None,
    currency: Annotated[str | None, Query(pattern=r"^[A-Z]{3}$", description="e.g. CNY")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict]:
    return ledger.prices(commodity=commodity, currency=currency, limit=limit)


@router.get("/v1/lots/{lot_id}/valuation", response_model=LotValuationPublic, summary="A lot valued now")
def get_lot_valuation(lot_id: str, org: CurrentOrg, ledger: LedgerDep) -> dict:
    """For the lot's bank, enterprise and warehouse, and auditors: the lot valued at the latest price of its
    terms' commodity (quantity × price × haircut, LTV against the warning and disposal lines), the price point
    used, and its open margin call. `state` says why a lot is not valued (`price_stale`: no decision is taken
    on a price older than the maximum age)."""
    return ledger.lot_valuation(org, lot_id)


@router.get("/v1/margin-calls", response_model=list[MarginCallPublic], summary="Margin calls on your lots")
def get_margin_calls(
    org: CurrentOrg,
    ledger: LedgerDep,
    status: Annotated[Literal["open", "cured", "defaulted", "closed"] | None, Query()] = None,
    lot: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict]:
    """Newest first; a bank, enterprise or warehouse sees the calls on lots it is a party to, an auditor all."""
    return ledger.margin_calls(org, status=status, lot=lot, limit=limit)
