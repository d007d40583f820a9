"""The FastAPI application: assembles routers, error handlers, the request middleware and the ledger's lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp

from api.errors import install_error_handlers
from api.logs import register_secrets
from api.middleware import MAX_BODY_BYTES, RequestContext
from api.routes import actions, alerts, audit, batches, devices, evidence, health, lots, metrics, organisation, production, readings, thing_models, valuation, webhooks
from api.schemas import ERROR_RESPONSES
from ledger.service import Ledger
from ledger.settings import Settings

__all__ = ["MAX_BODY_BYTES", "create_app", "worker_app"]


class _App(FastAPI):
    def build_middleware_stack(self) -> ASGIApp:
        # outermost, around Starlette's error middleware: it sees (and tags) every answer, a 500 too
        return RequestContext(super().build_middleware_stack(), routes=self.routes, max_body_bytes=MAX_BODY_BYTES)


def create_app(settings: Settings | None = None, *, ledger: Ledger | None = None, start_anchoring: bool = True) -> FastAPI:
    """Build the app. With ``ledger`` the caller owns its lifetime; otherwise the app opens and
    closes one (anchoring only if ``start_anchoring``)."""
    settings = ledger.settings if ledger is not None else settings or Settings()
    register_secrets(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = ledger is None
        app.state.ledger = ledger or Ledger.open(settings, start_anchoring=start_anchoring)
        try:
            yield
        finally:
            if owned:
                app.state.ledger.close()

    app = _App(
        title="pledgeledger",
        version="0.1.0",
        summary="Evidence ledger for IoT-supervised loans against movable goods",
        lifespan=lifespan,
        max_body_size=MAX_BODY_BYTES,  # counts bodies sent without Content-Length as they stream in
    )
    if ledger is not None:
        app.state.ledger = ledger
    install_error_handlers(app)
    for module in (health, devices, readings, batches, production, audit, thing_models, webhooks, valuation, metrics, organisation, lots, actions, alerts, evidence):
        app.include_router(module.router, responses=ERROR_RESPONSES)
    return app


def worker_app() -> FastAPI:
    """One HTTP worker process of ``pledgeledger serve --workers N`` (a uvicorn app factory).

    The parent process runs the ledger's single-instance parts (the managed chain node, the
    anchoring loop, the MQTT bridge) and hands its workers, through ``PLEDGELEDGER_*``
    variables, the chain as a JSON-RPC URL and the database; a worker serves requests only.
    Its metrics go to the parent's ``PROMETHEUS_MULTIPROC_DIR`` (:mod:`ledger.metrics`).
    """
    return create_app(Settings(), start_anchoring=False)
