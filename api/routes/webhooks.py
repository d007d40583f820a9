from __future__ import annotations

from fastapi import APIRouter, Response, status

from api.deps import CurrentOrg, LedgerDep
from api.schemas import WebhookCreate, WebhookCreated, WebhookDeliveryPublic, WebhookPublic

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WebhookCreated, summary="Subscribe an endpoint to events (SPEC §9)")
def create_webhook(body: WebhookCreate, org: CurrentOrg, ledger: LedgerDep) -> dict:
    """Returns the `secret` once: each delivery carries `X-Pledgeledger-Signature: sha256=<hex
    HMAC-SHA256 of the raw body with it>`, `X-Pledgeledger-Event` and `X-Pledgeledger-Delivery`
    (stable across retries: deduplicate by it). Anything but a 2xx answer is retried with backoff."""
    return ledger.create_webhook(org, url=body.url, events=body.events)


@router.get("", response_model=list[WebhookPublic], summary="Your active webhooks")
def list_webhooks(org: CurrentOrg, ledger: LedgerDep) -> list[dict]:
    return ledger.list_webhooks(org)


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Stop deliveries to a webhook")
def delete_webhook(webhook_id: str, org: CurrentOrg, ledger: LedgerDep) -> Response:
    ledger.delete_webhook(org, webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{webhook_id}/deliveries", response_model=list[WebhookDeliveryPublic], summary="The delivery log, newest first")
def deliveries(webhook_id: str, org: CurrentOrg, ledger: LedgerDep) -> list[dict]:
    return ledger.webhook_deliveries(org, webhook_id)
