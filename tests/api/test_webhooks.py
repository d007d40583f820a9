"""Webhooks (SPEC §9) over real HTTP both ways: subscription API, a real receiver that checks
the HMAC with its own code, retries with a stable delivery id, and the delivery log."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ledger import webhooks
from tests.api.conftest import bearer


class Receiver:
    """A bank's webhook endpoint: answers ``plan`` status codes in turn (then 200), records everything."""

    def __init__(self, plan: list[int] | None = None) -> None:
        self.plan = list(plan or [])
        self.calls: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append({"headers": dict(self.headers), "body": body})
                self.send_response(receiver.plan.pop(0) if receiver.plan else 200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/pledgeledger"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():  # type: ignore[no-untyped-def]
    r = Receiver()
    yield r
    r.close()


def _raise(ledger, event: str, data: dict, org_id: str) -> list[str]:  # type: ignore[no-untyped-def]
    with ledger.db.session() as session:
        return webhooks.enqueue(session, event, data, organisations=[org_id])


def test_signed_delivery_retried_with_a_stable_id_until_accepted(env, receiver) -> None:  # type: ignore[no-untyped-def]
    ledger, http, operator, bank = env
    r = http.post("/v1/webhooks", json={"url": receiver.url, "events": ["alert.raised", "lot.frozen"]}, headers=bearer(bank))
    assert r.status_code == 201, r.text
    hook = r.json()
    secret = hook["secret"]
    assert len(secret) == 64 and "secret" not in http.get("/v1/webhooks", headers=bearer(bank)).json()[0]

    receiver.plan = [500, 503]  # the bank's endpoint is down twice
    [delivery_id] = _raise(ledger, "alert.raised", {"lot": "LOT-1", "rule": "weight_drop"}, bank.id)
    assert _raise(ledger, "margin_call.opened", {"lot": "LOT-1"}, bank.id) == []  # not subscribed
    assert _raise(ledger, "alert.raised", {"lot": "LOT-1"}, operator.id) == []  # another organisation

    dispatcher = webhooks.Dispatcher(ledger.db, backoff_s=0.05)
    deadline = time.monotonic() + 10
    while len(receiver.calls) < 3 and time.monotonic() < deadline:
        dispatcher.run_once()
        time.sleep(0.05)
    assert len(receiver.calls) == 3
    for call in receiver.calls:  # every attempt: same delivery id, a signature the receiver can check itself
        headers, body = call["headers"], call["body"]
        assert headers["X-Pledgeledger-Event"] == "alert.raised"
        assert headers["X-Pledgeledger-Delivery"] == delivery_id
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Pledgeledger-Signature"], expected)
        payload = json.loads(body)
        assert payload["id"] == delivery_id and payload["event"] == "alert.raised"
        assert payload["data"] == {"lot": "LOT-1", "rule": "weight_drop"}
    forged = b'{"event":"alert.cleared"}'
    assert "sha256=" + hmac.new(secret.encode(), forged, hashlib.sha256).hexdigest() != receiver.calls[0]["headers"]["X-Pledgeledger-Signature"]

    log = http.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=bearer(bank)).json()
    assert [(d["id"], d["status"], d["attempts"], d["last_status"]) for d in log] == [(delivery_id, "delivered", 3, 200)]
    dispatcher.run_once()
    assert len(receiver.calls) == 3  # delivered: never sent again
    dispatcher.stop()


def test_a_dead_endpoint_fails_for_good_after_the_last_attempt(env) -> None:  # type: ignore[no-untyped-def]
    ledger, http, _, bank = env
    r = http.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/nothing-listens", "events": ["lot.frozen"]}, headers=bearer(bank))
    hook = r.json()
    _raise(ledger, "lot.frozen", {"lot": "LOT-2"}, bank.id)
    dispatcher = webhooks.Dispatcher(ledger.db, backoff_s=0.01, max_attempts=3)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        dispatcher.run_once()
        [delivery] = http.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=bearer(bank)).json()
        if delivery["status"] != "pending":
            break
        time.sleep(0.02)
    assert delivery["status"] == "failed" and delivery["attempts"] == 3
    assert "ConnectError" in delivery["last_error"]
    dispatcher.stop()


def test_subscriptions_are_validated_and_private(env) -> None:  # type: ignore[no-untyped-def]
    ledger, http, operator, bank = env
    r = http.post("/v1/webhooks", json={"url": "ftp://x", "events": ["alert.raised"]}, headers=bearer(bank))
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_webhook_url")
    r = http.post("/v1/webhooks", json={"url": "https://bank.example/h", "events": ["alert.raised", "coffee.ready"]}, headers=bearer(bank))
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_webhook_events") and "coffee.ready" in r.json()["error"]["message"]
    assert http.post("/v1/webhooks", json={"url": "https://bank.example/h", "events": ["alert.raised"]}).status_code == 401
    hook = http.post("/v1/webhooks", json={"url": "https://bank.example/h", "events": ["alert.raised"]}, headers=bearer(bank)).json()
    # another organisation can neither read its log nor delete it
    assert http.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=bearer(operator)).status_code == 404
    assert http.delete(f"/v1/webhooks/{hook['id']}", headers=bearer(operator)).status_code == 404
    assert http.delete(f"/v1/webhooks/{hook['id']}", headers=bearer(bank)).status_code == 204
    assert http.get("/v1/webhooks", headers=bearer(bank)).json() == []
    assert _raise(ledger, "alert.raised", {"lot": "L"}, bank.id) == []  # deleted: nothing queued
