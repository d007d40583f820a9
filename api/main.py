"""The FastAPI application: assembles routers, error handlers and the ledger's lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from api.errors import error_response, install_error_handlers
from api.routes import audit, batches, devices, health, readings, thing_models, webhooks
from ledger.service import Ledger
from ledger.settings import Settings

__all__ = ["MAX_BODY_BYTES", "create_app", "worker_app"]

MAX_BODY_BYTES = 4 * 1024 * 1024  # 1,000 readings of a few hundred bytes each fit easily


def create_app(settings: Settings | None = None, *, ledger: Ledger | None = None, start_anchoring: bool = True) -> FastAPI:
    """Build the app. With ``ledger`` the caller owns its lifetime; otherwise the app opens and
    closes one (anchoring only if ``start_anchoring``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = ledger is None
        app.state.ledger = ledger or Ledger.open(settings or Settings(), start_anchoring=start_anchoring)
        try:
            yield
        finally:
            if owned:
                app.state.ledger.close()

    app = FastAPI(
        title="pledgeledger",
        version="0.1.0",
        summary="Evidence ledger for IoT-supervised loans against movable goods",
        lifespan=lifespan,
    )
    if ledger is not None:
        app.state.ledger = ledger
    install_error_handlers(app)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):  # type: ignore[no-untyped-def]
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return error_response(413, "request_too_large", f"request bodies are limited to {MAX_BODY_BYTES} bytes; split the batch")
        return await call_next(request)

    for module in (health, devices, readings, batches, audit, thing_models, webhooks):
        app.include_router(module.router)
    return app


def worker_app() -> FastAPI:
    """One HTTP worker process of ``pledgeledger serve --workers N`` (a uvicorn app factory).

    The parent process runs the ledger's single-instance parts (the managed chain node, the
    anchoring loop, the MQTT bridge) and hands its workers, through ``PLEDGELEDGER_*``
    variables, the chain as a JSON-RPC URL and the database; a worker serves requests only.
    """
    return create_app(Settings(), start_anchoring=False)
