"""Valuation over real HTTP: a feed posts signed prices, a price drop opens a margin call on chain and the
bank's endpoint receives margin_call.opened with a valid HMAC; valuations and margin calls are scoped."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import datetime, timedelta, timezone

import httpx
from sqlalchemy import select

from api.main import create_app
from ledger import webhooks
from ledger.chain.collateral import Status
from ledger.store.models import Webhook
from tests.api.conftest import bearer
from tests.api.test_webhooks import Receiver
from tests.conftest import LiveServer
from tests.ledger.test_valuation import pledge_world, price_point


def test_prices_valuation_and_margin_call_over_http(db_url, ledger_factory) -> None:  # type: ignore[no-untyped-def]
    receiver = Receiver()
    ledger = ledger_factory(db_url)
    world = pledge_world(ledger, hook_url=receiver.url)
    stranger = ledger.create_organisation(name="Bank B", role="bank")
    auditor = ledger.create_organisation(name="Auditor", role="auditor")
    bank = world.orgs["bank"]
    with ledger.db.session() as session:
        secret = session.scalars(select(Webhook).where(Webhook.organisation_id == bank.id)).one().secret
    try:
        with LiveServer(create_app(ledger=ledger)) as server, httpx.Client(base_url=server.url, timeout=60) as http:
            first = price_point("3650.00")
            r = http.post("/v1/prices", json=first)  # no API key: the feed's signature authenticates it
            assert r.status_code == 201, r.text
            assert r.json()["price"] == "3650.00" and r.json()["price_point"] == first
            assert http.post("/v1/prices", json=first).status_code == 200  # the same point again
            stale = http.post("/v1/prices", json=price_point("3000.00", ts=datetime.now(timezone.utc) - timedelta(days=3)))
            assert (stale.status_code, stale.json()["error"]["code"]) == (422, "price_stale")
            unsigned = {k: v for k, v in price_point("3000.00").items() if k != "sig"}
            assert http.post("/v1/prices", json=unsigned).json()["error"]["code"] == "price_signature_invalid"
            batch = http.post("/v1/prices", json=[unsigned, price_point("3655.00")]).json()
            assert [(b["status"], b["code"]) for b in batch] == [("rejected", "price_signature_invalid"), ("accepted", None)]
            assert http.get("/v1/prices").status_code == 401
            listed = http.get("/v1/prices", params={"commodity": "steel_hrc"}, headers=bearer(auditor)).json()
            assert [p["price"] for p in listed] == ["3655.00", "3650.00"]

            view = http.get(f"/v1/lots/{world.lot}/valuation", headers=bearer(bank))
            assert view.status_code == 200, view.text
            body = view.json()
            assert body["state"] == "valued" and body["valuation"]["level"] == "ok" and body["margin_call"] is None
            assert body["valuation"]["collateral_value"] == "25585.00" and body["terms"]["warning_ltv"] == "0.80"
            assert http.get(f"/v1/lots/{world.lot}/valuation", headers=bearer(auditor)).status_code == 200
            hidden = http.get(f"/v1/lots/{world.lot}/valuation", headers=bearer(stranger))
            assert (hidden.status_code, hidden.json()["error"]["code"]) == (404, "lot_not_found")

            assert http.post("/v1/prices", json=price_point("3500.00")).status_code == 201
            assert ledger.valuer.run_once()["opened"] == 1  # the pass a new price wakes in a running service
            assert ledger.collateral.lot(world.chain_lot).status == Status.MARGIN_CALL
            calls = http.get("/v1/margin-calls", headers=bearer(bank)).json()
            assert [(c["lot"], c["status"], c["level"], c["ltv"]) for c in calls] == [(world.lot, "open", "warning", "0.816327")]
            assert http.get("/v1/margin-calls", headers=bearer(stranger)).json() == []
            assert http.get("/v1/margin-calls", params={"status": "cured"}, headers=bearer(auditor)).json() == []
            assert http.get(f"/v1/lots/{world.lot}/valuation", headers=bearer(bank)).json()["margin_call"]["id"] == calls[0]["id"]

            dispatcher = webhooks.Dispatcher(ledger.db)
            deadline = time.monotonic() + 20
            while not receiver.calls and time.monotonic() < deadline:
                dispatcher.run_once()
                time.sleep(0.05)
            dispatcher.stop()
            bank_calls = [c for c in receiver.calls if hmac.compare_digest(
                c["headers"]["X-Pledgeledger-Signature"], "sha256=" + hmac.new(secret.encode(), c["body"], hashlib.sha256).hexdigest()
            )]  # fmt: skip
            assert bank_calls, "the bank received no delivery signed with its secret"
            delivered = json.loads(bank_calls[0]["body"])
            assert bank_calls[0]["headers"]["X-Pledgeledger-Event"] == "margin_call.opened"
            assert delivered["data"]["margin_call"] == calls[0]["id"] and delivered["data"]["lot"] == world.lot
    finally:
        receiver.close()
