from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.deps import CurrentOrg, LedgerDep
from api.schemas import ErrorBody, IngestResult, ReadingPublic
from attestation.encoding import b64url_encode
from ledger.ingest import decode_body

router = APIRouter(prefix="/v1/readings", tags=["readings"])

_READING_EXAMPLE = {
    "payload": {"v": 1, "device": "wh1-scale-03", "seq": 42, "prev": None, "ts": "2026-11-21T08:00:00.000Z",
                "kind": "load_cell", "lot": "LOT-2026-0001", "data": {"weight_kg": 1250.5}},
    "alg": "ES256",
    "sig": "base64url r||s",
}

#: RFC 9052 §9.1 media type of COSE messages (an optional ``cose-type`` parameter is ignored).
COSE_MEDIA_TYPE = "application/cose"
# The body is read as bytes (an array goes to the ingestion pool undecoded), so it is described here.
_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"type": "object", "description": "one signed reading (SPEC §1), or {\"cose\": \"<base64url>\"}"},
                        {"type": "array", "items": {"type": "object"}, "maxItems": 1000, "description": "up to 1,000 readings"},
                    ]
                },
                "example": _READING_EXAMPLE,
            },
            COSE_MEDIA_TYPE: {
                "schema": {"type": "string", "format": "binary"},
                "description": "one tagged COSE_Sign1 reading (RFC 9052, CBOR tag 18) whose payload is the "
                "deterministic CBOR of the SPEC §1 payload map",
            },
        },
    }
}


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _is_json(media_type: str) -> bool:
    """JSON, as FastAPI reads a body: no media type, ``application/json`` or ``…+json``."""
    return not media_type or media_type == "application/json" or media_type.endswith("+json")


@router.post(
    "",
    summary="Submit one signed reading, or an array of up to 1,000 (SPEC §1)",
    responses={
        201: {"description": "accepted", "model": IngestResult},
        200: {"description": "duplicate; or, for an array, one result per reading in order", "model": list[IngestResult]},
    },
    openapi_extra=_BODY,
)
async def post_readings(ledger: LedgerDep, request: Request) -> Response:
    """Devices authenticate by their signatures; no API key is needed.

    One reading: 201 when accepted, 200 when the identical reading was already stored,
    4xx with the error body otherwise. An array: 200 with one result per reading, in order.

    With `Content-Type: application/cose` the body is one COSE_Sign1 reading (its bytes). In a
    JSON body, a COSE reading is `{"cose": "<base64url of its bytes>"}`; arrays may mix both.
    """
    body = await request.body()
    media_type = _media_type(request)
    if media_type == COSE_MEDIA_TYPE:
        envelope: Any = {"cose": b64url_encode(body)}  # the reading's JSON form (attestation.readings)
    elif not _is_json(media_type):
        envelope = body  # not a reading in any form: refused as one (422 invalid_reading)
    elif body.lstrip()[:1] == b"[":
        return Response(await run_in_threadpool(ledger.ingest_batch, body), media_type="application/json")
    else:
        envelope = decode_body(body)
    result = await run_in_threadpool(ledger.ingest, envelope)
    return JSONResponse(IngestResult(**result._asdict()).model_dump(), status_code=201 if result.status == "accepted" else 200)


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
