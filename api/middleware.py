"""The outermost layer of every HTTP request: its id, the body-size limit, metrics, the access log.

:class:`RequestContext` wraps the whole application, Starlette's error middleware included, so
it sees every answer (a 500 too) and every log line emitted while handling a request carries
the request's id:

- **Request id**: a sane incoming ``X-Request-ID`` (1-128 of ``A-Z a-z 0-9 . _ : = + / -``) is
  kept, anything else replaced by a fresh one; it is set in :data:`api.logs.REQUEST_ID` for the
  request's duration and returned in the ``X-Request-ID`` response header.
- **Body limit**: a ``Content-Length`` above :data:`MAX_BODY_BYTES` is answered 413
  ``request_too_large`` before anything is read. A body without ``Content-Length``
  (``Transfer-Encoding: chunked``) is counted as it streams in by FastAPI's own limit
  (``FastAPI(max_body_size=...)``), which stops reading at the limit; the API answers it the
  same way (:mod:`api.errors`).
- **Metrics**: ``pledgeledger_http_requests_total{method,route,status}`` and
  ``pledgeledger_http_request_duration_seconds{method,route}``, ``route`` being the route's
  template (``/v1/devices/{device_id}``; ``unmatched`` when no route matches), so ids in paths
  never become labels.
- **Access log**: one ``api.access`` line per request (method, path, status, milliseconds;
  in JSON also as fields), replacing uvicorn's.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response
from api.logs import REQUEST_ID

__all__ = ["HTTP_DURATION", "HTTP_REQUESTS", "MAX_BODY_BYTES", "RequestContext", "request_id_from"]

MAX_BODY_BYTES = 4 * 1024 * 1024  # 1,000 readings of a few hundred bytes each fit easily

HTTP_REQUESTS = Counter(
    "pledgeledger_http_requests", "HTTP requests answered, by method, route template and status", ["method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "pledgeledger_http_request_duration_seconds",
    "Seconds from a request's arrival to the end of its answer, by method and route template",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

access_log = logging.getLogger("api.access")

_SANE_ID = re.compile(r"[A-Za-z0-9._:=+/-]{1,128}")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def request_id_from(header: str | None) -> str:
    """The incoming id if it is sane (see the module doc), else a fresh one (32 hex digits)."""
    if header is not None and _SANE_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


class RequestContext:
    """ASGI middleware; see the module doc. ``routes`` are the app's routes, for the templates."""

    def __init__(self, app: ASGIApp, *, routes: list[Any], max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.routes = routes
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        rid = request_id_from(headers.get("x-request-id"))
        token = REQUEST_ID.set(rid)
        status: int | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
                message = f"request bodies are limited to {self.max_body_bytes} bytes; split the batch"
                response = error_response(413, "request_too_large", message)
                await response(scope, receive, send_with_id)
                return
            try:
                await self.app(scope, receive, send_with_id)
            except Exception:
                if status != 500:
                    status = status or 500
                    raise
                # Starlette's error middleware has answered 500 and api.errors logged the error
                # (with this request's id): nothing is left for the server to report
        finally:
            elapsed = time.perf_counter() - started
            method = scope["method"] if scope["method"] in _METHODS else "other"
            route = self._template(scope)
            HTTP_REQUESTS.labels(method=method, route=route, status=str(status or 0)).inc()
            HTTP_DURATION.labels(method=method, route=route).observe(elapsed)
            query = scope.get("query_string", b"").decode("latin-1")
            path = scope["path"] + ("?" + query if query else "")
            access_log.info(
                "%s %s %s %.1f ms", scope["method"], path, status or "-", elapsed * 1000,
                extra={"method": scope["method"], "path": path, "route": route, "status": status,
                       "duration_ms": round(elapsed * 1000, 3), "client": (scope.get("client") or ("-",))[0]},
            )
            REQUEST_ID.reset(token)

    def _template(self, scope: Scope) -> str:
        """The matched route's path template: the router's choice, or (for a request answered
        before routing, e.g. 413) the first route that matches the path."""
        route = scope.get("route")
        if route is None:
            route = next((r for r in self.routes if r.matches(scope)[0] != Match.NONE), None)
        return getattr(route, "path", None) or "unmatched"
