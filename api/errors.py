"""The one error body of SPEC §6: ``{"error": {"code": "...", "message": "...what to fix..."}}``."""

from __future__ import annotations

import logging

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from attestation.errors import AttestationError
from ledger import errors as le
from ledger.store.db import database_unavailable, database_unavailable_error, first_line

__all__ = ["error_response", "install_error_handlers"]

log = logging.getLogger(__name__)

STATUS: dict[type[le.LedgerError], int] = {
    le.NotFound: 404,
    le.ProofPending: 409,
    le.Conflict: 409,
    le.Invalid: 422,
    le.RateLimited: 429,
    le.Unauthorized: 401,
    le.Forbidden: 403,
    le.Unavailable: 503,
}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _ledger_error(_: Request, exc: le.LedgerError) -> JSONResponse:
    status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 400)
    retry_after = getattr(exc, "retry_after", None)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return error_response(status, exc.code, exc.message, headers)


def _attestation_error(_: Request, exc: AttestationError) -> JSONResponse:
    return error_response(422, exc.code, exc.message)


def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") in ("json_invalid", "json_type", "value_error.jsondecode"):
        return error_response(400, "invalid_json", f"the request body is not valid JSON: {first.get('ctx', {}).get('error', '')}".strip())
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    return error_response(422, "invalid_request", f"{where}: {first.get('msg', 'invalid value')}")


def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 400 and "parsing the body" in str(exc.detail):  # e.g. a body that is not UTF-8
        return error_response(400, "invalid_json", "the request body is not valid UTF-8 JSON")
    if exc.status_code == 413:  # a body without Content-Length grew past FastAPI's max_body_size
        limit = request.scope.get("starlette.max_body_size")
        return error_response(413, "request_too_large", f"request bodies are limited to {limit} bytes; split the batch")
    codes = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large", 401: "unauthorized"}
    return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail), getattr(exc, "headers", None))


def _database_error(request: Request, exc: Exception) -> JSONResponse:
    if not database_unavailable(exc):
        return _unexpected(request, exc)
    log.warning("database unavailable: %s", first_line(exc))
    return _ledger_error(request, database_unavailable_error())


def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "the ledger hit an unexpected error; it was logged, nothing you sent was half-stored")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(le.LedgerError, _ledger_error)  # type: ignore[arg-type]
    app.add_exception_handler(AttestationError, _attestation_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    for database_error in (DBAPIError, psycopg.Error):
        app.add_exception_handler(database_error, _database_error)
    app.add_exception_handler(Exception, _unexpected)
