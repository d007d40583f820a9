"""Errors the ledger raises for callers to turn into answers (the API maps each to a status).

::

    LedgerError                 code + a message that says what to fix
    ├── NotFound                the named thing does not exist (or the caller may not see it)
    ├── Conflict                the request contradicts stored state (replay, duplicate id)
    │   └── ProofPending        the reading is stored but not anchored yet (retry_after seconds)
    ├── Invalid                 the request is well-formed JSON but breaks a rule
    ├── RateLimited             too many requests from one device (retry_after seconds)
    ├── Unauthorized            no or unknown API key
    ├── Forbidden               the caller's role may not do this
    └── Unavailable             a dependency (chain, database) is down; retry later

Attestation errors (:mod:`attestation.errors`) are ``Invalid`` in kind and keep their codes.
"""

from __future__ import annotations

__all__ = [
    "Conflict",
    "Forbidden",
    "Invalid",
    "LedgerError",
    "NotFound",
    "ProofPending",
    "RateLimited",
    "Unauthorized",
    "Unavailable",
]


class LedgerError(Exception):
    code = "ledger_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class NotFound(LedgerError):
    code = "not_found"


class Conflict(LedgerError):
    code = "conflict"


class ProofPending(Conflict):
    code = "proof_pending"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Invalid(LedgerError):
    code = "invalid_request"


class MalformedBody(LedgerError):
    """The request body is not JSON at all (answered 400, where a JSON value that breaks a rule is 422)."""

    code = "invalid_json"


class RateLimited(LedgerError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unauthorized(LedgerError):
    code = "unauthorized"


class Forbidden(LedgerError):
    code = "forbidden"


class Unavailable(LedgerError):
    code = "unavailable"

    def __init__(self, message: str, *, code: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after
