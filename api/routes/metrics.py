from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import LedgerDep
from ledger import metrics

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics: ingestion, anchoring backlog and latency, chain errors, HTTP",
    response_class=Response,
    responses={200: {"content": {metrics.CONTENT_TYPE: {"schema": {"type": "string"}}}, "description": "Prometheus text format"}},
)
def get_metrics(ledger: LedgerDep) -> Response:
    """The Prometheus text exposition of the whole service (every worker process with
    `serve --workers N`); the backlog gauges are read from the database at each scrape. Meant
    for a scraper on the operator's network: it needs no API key, so do not expose it publicly."""
    return Response(ledger.metrics(), media_type=metrics.CONTENT_TYPE)
