from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response
from fastapi.responses import JSONResponse

from api.deps import CurrentOrg, LedgerDep
from api.schemas import ErrorBody, IngestResult, ReadingPublic
from attestation.encoding import b64url_encode
from ledger.errors import Invalid

router = APIRouter(prefix="/v1/readings", tags=["readings"])

_READING_EXAMPLE = {
    "payload": {"v": 1, "device": "wh1-scale-03", "seq": 42, "prev": None, "ts": "2026-11-21T08:00:00.000Z",
                "kind": "load_cell", "lot": "LOT-2026-0001", "data": {"weight_kg": 1250.5}},
    "alg": "ES256",
    "sig": "base64url r||s",
}

#: RFC 9052 §9.1 media type of COSE messages (an optional ``cose-type`` parameter is ignored).
COSE_MEDIA_TYPE = "application/cose"
_COSE_BODY = {
    "requestBody": {
        "content": {
            COSE_MEDIA_TYPE: {
                "schema": {"type": "string", "format": "binary"},
                "description": "one tagged COSE_Sign1 reading (RFC 9052, CBOR tag 18) whose payload is the "
                "deterministic CBOR of the SPEC §1 payload map",
            }
        }
    }
}


def _is_cose(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == COSE_MEDIA_TYPE


@router.post(
    "",
    summary="Submit one signed reading, or an array of up to 1,000 (SPEC §1)",
    responses={
        201: {"description": "accepted", "model": IngestResult},
        200: {"description": "duplicate; or, for an array, one result per reading in order", "model": list[IngestResult]},
    },
    openapi_extra=_COSE_BODY,
)
def post_readings(
    ledger: LedgerDep,
    request: Request,
    response: Response,
    body: Annotated[Any, Body(examples=[_READING_EXAMPLE])],
) -> Any:
    """Devices authenticate by their signatures; no API key is needed.

    One reading: 201 when accepted, 200 when the identical reading was already stored,
    4xx with the error body otherwise. An array: 200 with one result per reading, in order.

    With `Content-Type: application/cose` the body is one COSE_Sign1 reading (its bytes). In a
    JSON body, a COSE reading is `{"cose": "<base64url of its bytes>"}`; arrays may mix both.
    """
    if _is_cose(request):
        data = body if isinstance(body, bytes) else b""
        body = {"cose": b64url_encode(data)}  # the reading's JSON form (attestation.readings)
    if isinstance(body, list):
        limit = ledger.settings.max_batch_request
        if len(body) > limit:
            raise Invalid(f"send at most {limit} readings per request, not {len(body)}", code="too_many_readings")
        # plain dicts: validating 1,000 result models again would cost more than checking the readings
        return JSONResponse([r.__dict__ for r in ledger.ingest_many(body)])
    result = ledger.ingest(body)
    response.status_code = 201 if result.status == "accepted" else 200
    return IngestResult(**result.__dict__)


@router.get("/{reading_id}", response_model=ReadingPublic, summary="A stored reading")
def get_reading(reading_id: str, _: CurrentOrg, ledger: LedgerDep) -> dict:
    return ledger.reading(reading_id)


@router.get(
    "/{reading_id}/proof",
    summary="The proof bundle of an anchored reading (SPEC §4)",
    responses={409: {"model": ErrorBody, "description": "proof_pending: not anchored yet; see Retry-After"}},
)
def get_proof(reading_id: str, _: CurrentOrg, ledger: LedgerDep) -> dict:
    """Self-contained: verify it with `pledgeledger verify FILE --rpc URL` or any OpenZeppelin tooling."""
    return ledger.proof(reading_id)
