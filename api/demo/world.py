"""The demo's world: the parties with their own signing keys, simulated devices, and the service over HTTP.

Everything here is a client of the running service, as a warehouse, a bank or an insurer would be: the
parties sign EIP-712 typed data with keys the service never sees, devices sign readings with theirs, and
every claim the closing report makes is backed by something checked against the chain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from rich.console import Console

from ledger.simulator import SimulatedDevice

__all__ = ["Claim", "DemoError", "Party", "WebhookReceiver", "World"]


class DemoError(RuntimeError):
    """The service answered something the scene cannot go on from."""


@dataclass
class Party:
    """An organisation: its API key, and the key that signs its approvals (its wallet or HSM)."""

    name: str
    role: str
    api_key: str
    signer: LocalAccount

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def sign(self, typed: dict[str, Any]) -> str:
        """``eth_signTypedData_v4`` of ``typed``, as a wallet would answer it."""
        return "0x" + bytes(Account.sign_message(encode_typed_data(full_message=typed), self.signer.key).signature).hex()


@dataclass
class Claim:
    """One line of the closing report: what happened, and what proves it."""

    scene: str
    claim: str
    proof: str
    verified: bool | None = None  # None: a pointer to check, not checked here


@dataclass
class WebhookReceiver:
    """A subscriber's endpoint on loopback: records every delivery and checks its HMAC (SPEC §9) with ``secret``."""

    secret: str = ""
    deliveries: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                expected = "sha256=" + hmac.new(receiver.secret.encode(), body, hashlib.sha256).hexdigest()
                receiver.deliveries.append({
                    "event": self.headers.get("X-Pledgeledger-Event"),
                    "delivery": self.headers.get("X-Pledgeledger-Delivery"),
                    "signature_ok": hmac.compare_digest(expected, self.headers.get("X-Pledgeledger-Signature", "")),
                    "body": json.loads(body or b"null"),
                })  # fmt: skip
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def wait_for(self, event: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for delivery in self.deliveries:
                if delivery["event"] == event:
                    return delivery
            time.sleep(0.2)
        raise DemoError(f"no {event} webhook within {timeout:.0f} s")

    def close(self) -> None:
        self._server.shutdown()


class World:
    """The service at ``url`` and the parties acting on it."""

    def __init__(self, url: str, console: Console, *, make_party: Any) -> None:
        self.http = httpx.Client(base_url=url, timeout=60)
        self.console = console
        self.claims: list[Claim] = []
        self._make_party = make_party  # (name, role, signer address) -> api key: `pledgeledger org create`
        self.tag = secrets.token_hex(3)
        self.health = self.get("/healthz")
        self.rpc_url: str | None = self.health["chain"]["rpc_url"]

    # -- HTTP -----------------------------------------------------------------------------------------

    def _answer(self, r: httpx.Response, what: str) -> Any:
        if r.status_code >= 400:
            try:
                error = r.json()["error"]
                detail = f"{error['code']}: {error['message']}"
            except (ValueError, KeyError, TypeError):
                detail = r.text[:300]
            raise DemoError(f"{what} answered {r.status_code} {detail}")
        return r.json() if r.content else None

    def get(self, path: str, party: Party | None = None, **params: Any) -> Any:
        return self._answer(self.http.get(path, headers=party.headers if party else None, params=params or None), f"GET {path}")

    def post(self, path: str, body: Any, party: Party | None = None) -> Any:
        return self._answer(self.http.post(path, json=body, headers=party.headers if party else None), f"POST {path}")

    def put(self, path: str, body: Any, party: Party) -> Any:
        return self._answer(self.http.put(path, json=body, headers=party.headers), f"PUT {path}")

    # -- parties and devices --------------------------------------------------------------------------

    def party(self, name: str, role: str) -> Party:
        """A new organisation with its own signing key, registered on chain by signing its registration."""
        signer = Account.create()
        party = Party(f"{name} {self.tag}", role, self._make_party(f"{name} {self.tag}", role, signer.address), signer)
        me = self.get("/v1/organisation", party)
        if me.get("chain_org") is None:
            registration = me["registration"]
            self.sign_action(registration, party)
            me = self.get("/v1/organisation", party)
        if me.get("chain_org") is None:
            raise DemoError(f"{party.name} is not on chain after signing its registration: {me}")
        return party

    def device(self, operator: Party, name: str, kind: str, lot: str | None, alg: str = "ES256") -> SimulatedDevice:
        device = SimulatedDevice(f"{name}-{self.tag}", kind, alg=alg, lot=lot)
        self.post("/v1/devices", device.registration(), operator)
        return device

    def send(self, device: SimulatedDevice, data: dict[str, Any]) -> str:
        """One signed reading over HTTP; its id (the digest)."""
        return str(self.post("/v1/readings", device.reading(data))["id"])

    # -- actions --------------------------------------------------------------------------------------

    def sign_action(self, action: dict[str, Any], *parties: Party) -> dict[str, Any]:
        """Each party signs the action's typed data with its own key; the last signature submits it."""
        for party in parties:
            action = self.post(f"/v1/actions/{action['id']}/signatures", {"signature": party.sign(action["typed_data"])}, party)
        return self.wait_action(action, parties[-1])

    def wait_action(self, action: dict[str, Any], party: Party, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while action["status"] == "submitted" and time.monotonic() < deadline:
            time.sleep(0.3)
            action = self.get(f"/v1/actions/{action['id']}", party)
        if action["status"] not in ("confirmed", "collecting"):
            raise DemoError(f"action {action['type']} ended {action['status']}: {action.get('error')}")
        return action

    def act(self, lot: str, type_: str, params: dict[str, Any], proposer: Party, *signers: Party) -> dict[str, Any]:
        """Propose ``type_`` on ``lot`` and have ``signers`` sign it; returns the confirmed action."""
        action = self.post(f"/v1/lots/{lot}/actions", {"type": type_, "params": params}, proposer)
        return self.sign_action(action, *signers)

    # -- proofs ---------------------------------------------------------------------------------------

    def proof(self, reading_id: str, party: Party, timeout: float = 120.0) -> dict[str, Any]:
        """The reading's proof bundle once its batch is on chain."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.http.get(f"/v1/readings/{reading_id}/proof", headers=party.headers)
            if r.status_code == 200:
                return dict(r.json())
            if r.status_code != 409:
                self._answer(r, "GET proof")
            time.sleep(min(float(r.headers.get("Retry-After", "1")), 1.0))
        raise DemoError(f"reading {reading_id} was not anchored within {timeout:.0f} s")

    def wait_until(self, what: str, check: Any, timeout: float = 60.0, interval: float = 0.5) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(interval)
        raise DemoError(f"{what}: not within {timeout:.0f} s")

    def claim(self, scene: str, claim: str, proof: str, verified: bool | None = None) -> None:
        self.claims.append(Claim(scene, claim, proof, verified))
        mark = {True: "[green]✔[/]", False: "[red]✘[/]", None: "•"}[verified]
        self.console.print(f"  {mark} {claim} [dim]({proof})[/]", highlight=False)

    def close(self) -> None:
        self.http.close()
