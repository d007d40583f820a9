"""Schemathesis over the whole OpenAPI document of the real app, through real HTTP.

Every generated request (valid and invalid) is sent three times: with no API key, with an
operator's key and with an auditor's key. Each answer must not be a 5xx, must match the
schema the document declares for its status, and on a route that needs a key must never be a
2xx without one, nor with a key of a role the route is not for. A second, deterministic test
walks the declared security of every operation: 401 without a key or with an unknown one, 403
``role_forbidden`` with a key of another role.

The example count is bounded (``FUZZ_EXAMPLES`` per operation and identity) to keep the run
near a minute; raise ``PLEDGELEDGER_FUZZ_EXAMPLES`` for a deeper local run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

from api.main import create_app
from ledger.service import Ledger
from ledger.settings import Settings
from ledger.simulator import SimulatedDevice
from tests.conftest import IN_CI, PG_URL, LiveServer, _postgres_available, pg_schema

FUZZ_LOT = "EWR-2026-0001"
FUZZ_EXAMPLES = int(os.environ.get("PLEDGELEDGER_FUZZ_EXAMPLES", "20"))
IDENTITIES = ["anonymous", "operator", "auditor"]
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fuzz_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """PostgreSQL when it answers (it is stricter than SQLite: NUL bytes, integer ranges), else SQLite."""
    if not _postgres_available():
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI but {PG_URL} does not answer")
        yield f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'ledger.sqlite3'}"
        return
    with pg_schema() as url:
        yield url


@pytest.fixture(scope="module")
def fuzz_env(fuzz_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    """The app on a live server over a ledger holding a device, readings and an anchored batch."""
    data_dir: Path = tmp_path_factory.mktemp("fuzz-data")
    ledger = Ledger.open(Settings(data_dir=data_dir, db_url=fuzz_db, chain="embedded", batch_interval_s=0.2), start_anchoring=False)
    try:
        keys = {role: ledger.create_organisation(name=f"Fuzz {role}", role=role).api_key for role in ("operator", "auditor", "bank")}
        operator = ledger.authenticate(keys["operator"])
        device = SimulatedDevice("fuzz-scale-01", "load_cell")
        ledger.register_device(operator, device.registration())
        ledger.ingest_many([device.reading({"weight_kg": 100.0 + i}) for i in range(3)])
        ledger.anchorer.tick()
        _lot_and_actions(ledger, operator)
        with LiveServer(create_app(ledger=ledger)) as server:
            yield server, keys
    finally:
        ledger.close()


def _lot_and_actions(ledger: Ledger, operator) -> None:  # type: ignore[no-untyped-def]
    """Lots and actions to fuzz against: the operator and an enterprise registered on chain (each signs its
    own registration), and lot FUZZ_LOT (the routes' path example) registered and verified, its devices'
    readings in its timeline, with a pledge to the fuzz bank collecting signatures."""
    from eth_account import Account
    from eth_utils import keccak

    from ledger.chain.collateral import sign_typed_data

    def register(org, name: str):  # type: ignore[no-untyped-def]
        account = Account.from_key(keccak(text=f"fuzz signer {name}"))
        view = ledger.set_signer(org, account.address)
        ledger.add_action_signature(org, view["registration"]["id"], "0x" + sign_typed_data(account.key, view["registration"]["typed_data"]).hex())
        return account

    enterprise = ledger.authenticate(ledger.create_organisation(name="Fuzz enterprise", role="enterprise").api_key)
    bank = ledger.authenticate(ledger.create_organisation(name="Fuzz bank signer", role="bank").api_key)
    signers = {"operator": register(operator, "operator"), "enterprise": register(enterprise, "enterprise")}
    register(bank, "bank")
    made = ledger.register_lot(operator, {"id": FUZZ_LOT, "enterprise": enterprise.id, "goods": {"commodity": "copper"},
                                          "quantity": 100, "unit": "kg", "devices": ["fuzz-scale-01"]})  # fmt: skip
    ledger.add_action_signature(operator, made["action"]["id"], "0x" + sign_typed_data(signers["operator"].key, made["action"]["typed_data"]).hex())
    verify = ledger.propose_action(operator, FUZZ_LOT, {"type": "verify", "params": {"quantity": 100, "assay": {"grade": "A"}}})
    for who, org in (("operator", operator), ("enterprise", enterprise)):
        ledger.add_action_signature(org, verify["id"], "0x" + sign_typed_data(signers[who].key, verify["typed_data"]).hex())
    terms = {"loan_value": "1000", "currency": "CNY", "commodity": "copper", "haircut": "0.2", "warning_ltv": "0.7",
             "disposal_ltv": "0.8", "min_quantity": 50, "cure_period_s": 3600}  # fmt: skip
    ledger.propose_action(enterprise, FUZZ_LOT, {"type": "pledge", "params": {"bank": "Fuzz bank signer", "registration": "R-1", "terms": terms, "min_quantity": 50}})


#: The document the app serves at /openapi.json (checked below), loaded when the module is: the
#: lazy fixture loader of this schemathesis version does not run under pytest 9.
DOCUMENT = create_app(Settings(chain="embedded")).openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT)
schemathesis.serializer.alias("application/cose", "application/octet-stream")  # POST /v1/readings takes COSE bytes too


def roles_allowed(operation) -> list[str] | None:  # type: ignore[no-untyped-def]
    """None if the operation needs no key; else the roles it is limited to ([] = any role)."""
    security = operation.definition.raw.get("security")
    if not security:
        return None
    return [role for requirement in security for role in requirement.get("ApiKey", [])]


def _success(status: int) -> bool:
    return 200 <= status < 300


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI is reproducible
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_no_server_error_no_schema_violation_no_auth_bypass(case, fuzz_env) -> None:  # type: ignore[no-untyped-def]
    server, keys = fuzz_env
    allowed = roles_allowed(case.operation)
    for identity in IDENTITIES:  # the same generated request with each identity
        headers = {"Authorization": f"Bearer {keys[identity]}"} if identity in keys else {}
        response = case.call(base_url=server.url, headers=headers, timeout=60)
        case.validate_response(response, checks=CHECKS)
        if allowed is None:
            continue
        if identity == "anonymous":
            assert not _success(response.status_code), f"{case.operation.label} answered {response.status_code} without an API key"
        elif allowed and identity not in allowed:
            assert not _success(response.status_code), f"{case.operation.label} answered {response.status_code} to a {identity}"


def _concrete_path(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_protected_route_needs_a_key_of_its_role(fuzz_env) -> None:  # type: ignore[no-untyped-def]
    """401 without a key and with an unknown key; 403 role_forbidden with another role's key."""
    server, keys = fuzz_env
    with httpx.Client(base_url=server.url, timeout=30) as http:
        document = http.get("/openapi.json").json()
        assert document == DOCUMENT  # what the fuzzing ran over
        protected = 0
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                security = operation.get("security")
                if not security:
                    continue
                protected += 1
                allowed = [role for requirement in security for role in requirement["ApiKey"]]
                url, body = _concrete_path(path), ({} if method in ("post", "put", "patch") else None)
                for auth in (None, "Bearer plk_not-a-key", "Basic b3BlcmF0b3I6eA==", "Bearer"):
                    headers = {"Authorization": auth} if auth else {}
                    r = http.request(method.upper(), url, json=body, headers=headers)
                    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", (method, path, auth, r.text)
                    assert r.headers["www-authenticate"] == "Bearer"
                for role in ("operator", "auditor", "bank"):
                    if allowed and role not in allowed:
                        r = http.request(method.upper(), url, json=body, headers={"Authorization": f"Bearer {keys[role]}"})
                        assert r.status_code == 403 and r.json()["error"]["code"] == "role_forbidden", (method, path, role, r.text)
        assert protected >= 10, "the OpenAPI document declares the API key on too few operations"


def test_what_postgresql_cannot_hold_is_refused_not_a_500(fuzz_env) -> None:  # type: ignore[no-untyped-def]
    """Found by fuzzing on PostgreSQL: ids and lots with NUL, batch indexes past 32 bits. Each is
    a 4xx, and a registration is refused before anything goes on chain."""
    server, keys = fuzz_env
    op, auditor = ({"Authorization": f"Bearer {keys[role]}"} for role in ("operator", "auditor"))
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for path, headers, code in [
            ("/v1/devices/a%00b", op, "device_not_found"),
            ("/v1/devices/%00/gaps", op, "device_not_found"),
            ("/v1/devices/%00/history", auditor, "device_not_found"),
            ("/v1/readings/%00", op, "reading_not_found"),
            ("/v1/readings/%00/proof", op, "reading_not_found"),
            ("/v1/batches/0/multiproof?lot=LOT%00", op, "lot_not_in_batch"),
            ("/v1/batches/94393926484/tree", auditor, "batch_not_found"),
            ("/v1/batches/94393926484/multiproof?lot=LOT", op, "batch_not_found"),
            ("/v1/lots/LOT%00/valuation", auditor, "lot_not_found"),
        ]:
            r = http.get(path, headers=headers)
            assert r.status_code == 404 and r.json()["error"]["code"] == code, (path, r.text)
        assert http.get("/v1/margin-calls?lot=LOT%00", headers=auditor).json() == []
        for path in ("/v1/devices/x%00/keys", "/v1/devices/x%00/revoke"):
            r = http.post(path, json={"alg": "ES256", "public_key": "-", "pop": "-", "at": None}, headers=op)
            assert r.status_code == 404 and r.json()["error"]["code"] == "device_not_found", (path, r.text)

        device = SimulatedDevice("fuzz-scale-02", "load_cell")
        r = http.post("/v1/devices", json=device.registration(lot="LOT\x00"), headers=op)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_lot", r.text
        r = http.post("/v1/devices", json=device.registration(lot="LOT-1"), headers=op)  # nothing reached the chain before
        assert r.status_code == 201, r.text
        r = http.post("/v1/readings", json=device.reading({"weight_kg": 1.0}, lot="LOT\x00"))
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_reading", r.text
        r = http.post("/v1/readings", json=[device.reading({"weight_kg": 1.0}, lot="LOT\x00"), device.reading({"weight_kg": 2.0})])
        assert [x["status"] for x in r.json()] == ["rejected", "accepted"], r.text
        r = http.post("/v1/readings", content=device.cose_reading({"weight_kg": 3.0}, lot="\x00"), headers={"content-type": "application/cose"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_reading", r.text
