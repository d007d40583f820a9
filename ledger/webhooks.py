"""Webhooks (SPEC §9): subscriptions, signed deliveries, retries with backoff, a delivery log.

An event for a subscriber becomes a :class:`~ledger.store.models.WebhookDelivery` row in the
same transaction as whatever raised it, so an event is never announced for a change that
rolled back, nor lost to a crash after it committed. The :class:`Dispatcher` then POSTs
each due delivery::

    X-Pledgeledger-Event:     alert.raised
    X-Pledgeledger-Delivery:  <delivery id, the same on every retry>
    X-Pledgeledger-Signature: sha256=<hex HMAC-SHA256 of the raw body with the secret>

and retries anything but a 2xx answer with exponential backoff (``BACKOFF_S`` doubling, at
most ``MAX_BACKOFF_S``) until ``MAX_ATTEMPTS`` are used: at-least-once delivery, so receivers
deduplicate by the delivery id. Only one instance dispatches at a time (a
:class:`~ledger.leadership.Leadership` lease), so a delivery is not sent twice at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.errors import Invalid, NotFound
from ledger.leadership import Leadership
from ledger.store.db import Database, log_failed_round
from ledger.store.models import Organisation, Webhook, WebhookDelivery, naive_utc, utc

__all__ = [
    "EVENTS",
    "Dispatcher",
    "create_webhook",
    "deliveries",
    "delete_webhook",
    "enqueue",
    "list_webhooks",
    "sign",
]

log = logging.getLogger(__name__)

#: The events a subscriber may ask for.
EVENTS = (
    "alert.raised",
    "alert.cleared",
    "lot.frozen",
    "lot.unfrozen",
    "margin_call.opened",
    "margin_call.cured",
    "lot.defaulted",
)
MAX_ATTEMPTS = 12
BACKOFF_S = 2.0
MAX_BACKOFF_S = 3600.0
TIMEOUT_S = 10.0


def sign(secret: str, body: bytes) -> str:
    """The ``X-Pledgeledger-Signature`` value of ``body``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _now() -> datetime:
    return naive_utc(datetime.now(timezone.utc))


def _view(hook: Webhook, *, secret: bool = False) -> dict[str, Any]:
    view = {"id": hook.id, "url": hook.url, "events": hook.events.split(), "active": hook.active,
            "created_at": utc(hook.created_at).isoformat().replace("+00:00", "Z")}
    if secret:
        view["secret"] = hook.secret  # shown once, at creation
    return view


def create_webhook(session: Session, org: Organisation, *, url: str, events: list[str]) -> dict[str, Any]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid("url must be an absolute http(s):// URL of your receiver", code="invalid_webhook_url")
    unknown = sorted(set(events) - set(EVENTS))
    if not events or unknown:
        raise Invalid(
            f"events must be a non-empty list of {', '.join(EVENTS)}" + (f"; unknown: {', '.join(unknown)}" if unknown else ""),
            code="invalid_webhook_events",
        )
    hook = Webhook(organisation_id=org.id, url=url, events=" ".join(dict.fromkeys(events)), secret=secrets.token_hex(32))
    session.add(hook)
    session.flush()
    return _view(hook, secret=True)


def _own(session: Session, org: Organisation, webhook_id: str) -> Webhook:
    hook = session.get(Webhook, webhook_id)
    if hook is None or hook.organisation_id != org.id:
        raise NotFound(f"no webhook {webhook_id} of yours: GET /v1/webhooks lists them", code="webhook_not_found")
    return hook


def list_webhooks(session: Session, org: Organisation) -> list[dict[str, Any]]:
    hooks = session.scalars(select(Webhook).where(Webhook.organisation_id == org.id, Webhook.active).order_by(Webhook.created_at))
    return [_view(h) for h in hooks]


def delete_webhook(session: Session, org: Organisation, webhook_id: str) -> None:
    """Stop deliveries to this endpoint (its log is kept)."""
    _own(session, org, webhook_id).active = False


def deliveries(session: Session, org: Organisation, webhook_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
    """The delivery log of one webhook, newest first."""
    _own(session, org, webhook_id)
    rows = session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id).order_by(WebhookDelivery.created_at.desc()).limit(limit)
    )
    return [
        {
            "id": d.id,
            "event": d.event,
            "status": d.status,
            "attempts": d.attempts,
            "last_status": d.last_status,
            "last_error": d.last_error,
            "next_attempt_at": utc(d.next_attempt_at).isoformat().replace("+00:00", "Z") if d.status == "pending" else None,
            "created_at": utc(d.created_at).isoformat().replace("+00:00", "Z"),
            "delivered_at": utc(d.delivered_at).isoformat().replace("+00:00", "Z") if d.delivered_at else None,
            "body": json.loads(d.body),
        }
        for d in rows
    ]


def enqueue(session: Session, event: str, data: dict[str, Any], *, organisations: list[str]) -> list[str]:
    """Queue ``event`` for every active subscription of ``organisations`` that asked for it,
    inside the caller's transaction; returns the delivery ids."""
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    if not organisations:
        return []
    hooks = session.scalars(select(Webhook).where(Webhook.organisation_id.in_(organisations), Webhook.active))
    ids = []
    for hook in hooks:
        if event not in hook.events.split():
            continue
        delivery = WebhookDelivery(webhook_id=hook.id, event=event, body="", next_attempt_at=_now())
        session.add(delivery)
        session.flush()  # the id goes into the body, so a receiver can log it with the event
        delivery.body = json.dumps(
            {"id": delivery.id, "event": event, "created_at": utc(delivery.next_attempt_at).isoformat().replace("+00:00", "Z"), "data": data},
            separators=(",", ":"),
            sort_keys=True,
        )
        ids.append(delivery.id)
    return ids


class Dispatcher:
    """Sends due deliveries in the background (see the module doc); ``run_once`` for tests."""

    def __init__(self, db: Database, *, poll_s: float = 1.0, leadership: Leadership | None = None,
                 backoff_s: float = BACKOFF_S, max_attempts: int = MAX_ATTEMPTS) -> None:
        self.db = db
        self.poll_s = poll_s
        self.leadership = leadership
        self.backoff_s = backoff_s
        self.max_attempts = max_attempts
        self._http = httpx.Client(timeout=TIMEOUT_S, follow_redirects=False)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self, *, limit: int = 100) -> int:
        """Attempt every due delivery once; returns how many were attempted."""
        with self.db.session() as session:
            due = session.execute(
                select(WebhookDelivery.id, WebhookDelivery.event, WebhookDelivery.body, WebhookDelivery.attempts, Webhook.url, Webhook.secret)
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= _now())
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(limit)
            ).all()
        for delivery_id, event, body, attempts, url, secret in due:
            self._attempt(delivery_id, event, body.encode("utf-8"), attempts, url, secret)
        return len(due)

    def _attempt(self, delivery_id: str, event: str, body: bytes, attempts: int, url: str, secret: str) -> None:
        status, error = None, None
        try:
            response = self._http.post(url, content=body, headers={
                "Content-Type": "application/json",
                "X-Pledgeledger-Event": event,
                "X-Pledgeledger-Delivery": delivery_id,
                "X-Pledgeledger-Signature": sign(secret, body),
            })
            status = response.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        with self.db.session() as session:
            row = session.get(WebhookDelivery, delivery_id)
            row.attempts, row.last_status, row.last_error = attempts + 1, status, error
            if error is None:
                row.status, row.delivered_at = "delivered", _now()
            elif row.attempts >= self.max_attempts:
                row.status = "failed"
                log.warning("webhook delivery %s (%s) to %s failed for good: %s", delivery_id, event, url, error)
            else:
                row.next_attempt_at = _now() + timedelta(seconds=min(self.backoff_s * 2 ** attempts, MAX_BACKOFF_S))
                log.info("webhook delivery %s (%s) to %s: %s; retry %d at %s", delivery_id, event, url, error, row.attempts + 1, row.next_attempt_at)

    def wake(self) -> None:
        """Look for due deliveries now (called after enqueueing) rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.leadership is None or self.leadership.acquire():
                    while self.run_once() and not self._stop.is_set():
                        pass
            except Exception as exc:  # keep dispatching whatever one round hit
                log_failed_round(log, "webhook dispatch", exc)
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=TIMEOUT_S + 5)
        if self.leadership is not None:
            self.leadership.release()
        self._http.close()
