"""A lot's evidence package end to end, on SQLite and PostgreSQL with the embedded chain: the lot is
registered, verified, pledged, partly released and frozen by the supervision key while its devices'
readings are anchored; the package is downloaded over real HTTP and verified by ``pledgeledger
verify-evidence`` against the chain (served over JSON-RPC); then each kind of tampering fails the
check named for it."""

from __future__ import annotations

import io
import json
import zipfile
from contextlib import nullcontext
from types import SimpleNamespace
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from typer.testing import CliRunner

from api.cli import app as cli_app
from api.main import create_app
from attestation.evidence import CHECKS, MANIFEST, file_entry, open_package, verify_evidence
from ledger import actions
from ledger.chain.collateral import identifier_hash, sign_typed_data
from ledger.chain.evidence import EvidenceReader
from ledger.simulator import SimulatedDevice
from ledger.store.models import Lot
from tests.api.test_lots_acceptance import TERMS, sign
from tests.conftest import LiveServer
from tests.jsonrpc_bridge import JsonRpcBridge

LOT = "EWR-EVIDENCE-1"


ROLES = {"warehouse": "operator", "enterprise": "enterprise", "bank": "bank", "auditor": "auditor", "other_bank": "bank"}


def key(name: str) -> LocalAccount:
    return Account.from_key(keccak(text=f"pledgeledger evidence test {name}"))


@dataclass
class Scene:
    ledger: Any
    http: httpx.Client
    keys: dict[str, LocalAccount]
    auth: dict[str, dict[str, str]]

    def act(self, who: str, type_: str, params: dict[str, Any], *signers: str) -> dict[str, Any]:
        r = self.http.post(f"/v1/lots/{LOT}/actions", json={"type": type_, "params": params}, headers=self.auth[who])
        assert r.status_code == 201, r.text
        return self.sign(r.json(), *signers)

    def sign(self, action: dict[str, Any], *signers: str) -> dict[str, Any]:
        for name in signers:
            r = self.http.post(f"/v1/actions/{action['id']}/signatures", json={"signature": sign(self.keys[name], action["typed_data"])},
                               headers=self.auth[name])  # fmt: skip
            assert r.status_code == 200, r.text
            action = r.json()
        return action

    def readings(self, devices: list[SimulatedDevice], weight: float) -> None:
        batch = [d.reading({"weight_kg": weight} if d.kind == "load_cell" else {"count": int(weight // 100)}) for d in devices]
        assert [x["status"] for x in self.http.post("/v1/readings", json=batch).json()] == ["accepted"] * len(devices)
        self.ledger.anchorer.tick()


def _drive_lot(ledger: Any, http: httpx.Client) -> Scene:
    """Over the API: register, verify, pledge, partial release; a margin call by the supervision key; a
    freeze by the warehouse; an unfreeze still collecting signatures; readings anchored in between."""
    keys = {name: key(name) for name in ROLES}
    auth = {}
    for name, role in ROLES.items():
        new = ledger.create_organisation(name=name, role=role, signer=keys[name].address)
        auth[name] = {"Authorization": f"Bearer {new.api_key}"}
    scene = Scene(ledger, http, keys, auth)
    for name in ("warehouse", "enterprise", "bank"):  # each signs its own registration on chain
        assert scene.sign(http.get("/v1/organisation", headers=auth[name]).json()["registration"], name)["status"] == "confirmed"

    devices = [SimulatedDevice("wh1-scale:01", "load_cell", lot=LOT), SimulatedDevice("wh1-rfid-02", "rfid_inventory", alg="EdDSA", lot=LOT)]
    for device in devices:
        assert http.post("/v1/devices", json=device.registration(), headers=auth["warehouse"]).status_code == 201
    r = http.post("/v1/lots", headers=auth["warehouse"], json={
        "id": LOT, "enterprise": "enterprise", "goods": {"commodity": "steel coil", "coils": 40}, "quantity": 10_000,
        "unit": "kg", "devices": [d.id for d in devices]})  # fmt: skip
    assert r.status_code == 201, r.text
    assert scene.sign(r.json()["action"], "warehouse")["status"] == "confirmed"
    scene.readings(devices, 10_000.0)
    assert scene.act("warehouse", "verify", {"quantity": 10_000, "assay": {"lab": "SGS", "grade": "Q235"}}, "warehouse", "enterprise")["status"] == "confirmed"
    pledge = {"bank": "bank", "registration": "PBOC-EV-1", "terms": TERMS, "min_quantity": 6_000}
    assert scene.act("enterprise", "pledge", pledge, "enterprise", "bank", "warehouse")["status"] == "confirmed"
    scene.readings(devices, 10_000.0)
    assert scene.act("bank", "partial_release", {"quantity": 1_500}, "bank", "warehouse")["status"] == "confirmed"
    scene.readings(devices, 8_500.0)
    with ledger.db.session() as session:
        called = actions.system_action(session, ledger.collateral, ledger.chain.client.account, lot=session.get(Lot, LOT),
                                       type="margin_call", primary_type="MarginCall",
                                       fields={"lot": identifier_hash(LOT), "reason": b"\x44" * 32,
                                               "cureBy": int((datetime.now(timezone.utc) + timedelta(days=3)).timestamp())})  # fmt: skip
        assert called.status == "confirmed", called.error_message
    assert scene.act("warehouse", "freeze", {"reason": {"alert": "weight drop", "kg": 300}}, "warehouse")["status"] == "confirmed"
    assert scene.act("bank", "unfreeze", {}, "bank")["status"] == "collecting"  # evidence too: who asked, who signed so far
    return scene


def _files(package: bytes) -> dict[str, bytes]:
    archive = zipfile.ZipFile(io.BytesIO(package))
    return {name: archive.read(name) for name in archive.namelist()}


def _zip(files: dict[str, bytes], *, rehash: bool = True, manifest: Callable[[dict], None] | None = None) -> bytes:
    """The package again, with its manifest's file list recomputed (a forger who also fixes the hashes)."""
    data = json.loads(files[MANIFEST])
    if rehash:
        data["files"] = [file_entry(p, d) for p, d in sorted(files.items()) if p != MANIFEST]
    if manifest is not None:
        manifest(data)
    files = {**files, MANIFEST: json.dumps(data).encode()}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return out.getvalue()


def _failed(package: bytes, chain: EvidenceReader) -> list[str]:
    return verify_evidence(open_package(io.BytesIO(package)), chain).failed


def _edit(files: dict[str, bytes], path: str, change: Callable[[Any], Any]) -> dict[str, bytes]:
    value = json.loads(files[path])
    value = change(value) or value
    return {**files, path: json.dumps(value).encode()}


def _path(files: dict[str, bytes], prefix: str, contains: str = "") -> str:
    return next(p for p in sorted(files) if p.startswith(prefix) and contains in files[p].decode())


@pytest.fixture(params=["embedded", pytest.param("managed", marks=pytest.mark.anvil)])
def chain_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "managed":
        from tests.ledger.chain.test_chain import need_anvil

        need_anvil()
    return request.param


def _node(ledger: Any) -> Any:
    """A JSON-RPC URL of the ledger's chain: the managed anvil node's, or the embedded chain served over HTTP."""
    if ledger.chain.rpc_url:
        return nullcontext(SimpleNamespace(url=ledger.chain.rpc_url))
    return JsonRpcBridge(ledger.chain.w3)


def test_evidence_package_verifies_and_every_tampering_is_named(db_url, chain_kind, ledger_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ledger = ledger_factory(db_url, chain=chain_kind, data_dir=tmp_path / f"data-{chain_kind}")
    with LiveServer(create_app(ledger=ledger)) as server, httpx.Client(base_url=server.url, timeout=120) as http:
        scene = _drive_lot(ledger, http)
        r = http.get(f"/v1/lots/{LOT}/evidence", headers=scene.auth["bank"])
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/zip"
        assert "evidence-EWR-EVIDENCE-1-block-" in r.headers["content-disposition"]
        package = r.content
        assert http.get(f"/v1/lots/{LOT}/evidence", headers=scene.auth["auditor"]).status_code == 200
        r = http.get(f"/v1/lots/{LOT}/evidence", headers=scene.auth["other_bank"])
        assert (r.status_code, r.json()["error"]["code"]) == (404, "lot_not_found")
        assert http.get(f"/v1/lots/{LOT}/evidence").status_code == 401
        assert http.get("/v1/lots/NO-SUCH-LOT/evidence", headers=scene.auth["auditor"]).status_code == 404
        # a lot not on chain yet (its registration still collecting the warehouse's signature) has evidence too
        spare = SimulatedDevice("wh1-scale-03", "load_cell", lot="EWR-EVIDENCE-2")
        assert http.post("/v1/devices", json=spare.registration(), headers=scene.auth["warehouse"]).status_code == 201
        assert http.post("/v1/lots", headers=scene.auth["warehouse"], json={
            "id": "EWR-EVIDENCE-2", "enterprise": "enterprise", "goods": {"commodity": "copper"}, "quantity": 5,
            "unit": "t", "devices": [spare.id]}).status_code == 201  # fmt: skip
        early = http.get("/v1/lots/EWR-EVIDENCE-2/evidence", headers=scene.auth["warehouse"]).content

    files = _files(package)
    manifest = json.loads(files[MANIFEST])
    assert manifest["format"] == "pledgeledger.evidence/1"
    assert manifest["claims"]["state"]["status"] == "frozen" and manifest["claims"]["state"]["quantity"] == 8_500
    assert manifest["claims"]["state"]["frozen_from"] == "margin_call"
    assert manifest["claims"] | {"state": None} == {"state": None, "events": 6, "transactions": 6, "actions": 7, "devices": 2,
                                                    "readings": 6, "reading_batches": 3, "readings_not_anchored": 0}  # fmt: skip
    assert sorted(p.split("/")[0] for p in files) == sorted(
        ["actions"] * 7 + ["chain"] * 7 + ["devices"] * 2 + ["lot.json", "manifest.json", "timeline.json"] + ["readings"] * 3
    )
    assert "devices/001-wh1-scale_01.json" in files

    # verified by the command line against the chain, over JSON-RPC
    path = tmp_path / "evidence.zip"
    path.write_bytes(package)
    with _node(ledger) as node:
        result = CliRunner().invoke(cli_app, ["verify-evidence", str(path), "--rpc", node.url])
        assert result.exit_code == 0, result.output
        assert "evidence verified" in result.output
        result = CliRunner().invoke(cli_app, ["verify-evidence", str(path), "--rpc", node.url, "--json"])
        report = json.loads(result.output)
        assert report["ok"] and [c["name"] for c in report["checks"]][-1] == "readings"
        assert "6 readings in 3 anchored batches" in report["checks"][-1]["detail"]
        assert "hash chain unbroken" in report["checks"][-1]["detail"]

        forged = tmp_path / "forged.zip"
        forged.write_bytes(_zip(_edit(files, _path(files, "readings/"), _change_weight)))
        result = CliRunner().invoke(cli_app, ["verify-evidence", str(forged), "--rpc", node.url])
        assert result.exit_code == 1 and "evidence NOT verified: failed readings" in result.output, result.output
        assert CliRunner().invoke(cli_app, ["verify-evidence", str(tmp_path / "none.zip"), "--rpc", node.url]).exit_code == 2
        (tmp_path / "not.zip").write_text("not a zip")
        assert CliRunner().invoke(cli_app, ["verify-evidence", str(tmp_path / "not.zip"), "--rpc", node.url]).exit_code == 2
    assert CliRunner().invoke(cli_app, ["verify-evidence", str(path), "--rpc", "http://127.0.0.1:1"]).exit_code == 2

    chain = EvidenceReader(ledger.chain.client.reader)
    report = verify_evidence(open_package(io.BytesIO(early)), chain)
    assert report.ok, report.as_dict()
    assert "the lot is not on chain yet" in report.checks[CHECKS.index("documents")].detail
    assert json.loads(_files(early)[MANIFEST])["claims"]["state"]["status"] == "none"
    assert _failed(_zip(files, rehash=False), chain) == []  # repacked as it was: still good

    # a changed reading
    assert _failed(_zip(_edit(files, _path(files, "readings/"), _change_weight)), chain) == ["readings"]
    # a document changed: the loan terms in the lot's record no longer hash to what the three parties signed
    assert _failed(_zip(_edit(files, "lot.json", lambda lot: lot["terms"].update(loan_value=9_000_000))), chain) == ["documents"]
    # an action left out: its transition is still on chain, and who signed it is read from the calldata
    partial = _path(files, "actions/", '"PartialRelease"')
    fewer_actions = _zip({p: d for p, d in files.items() if p != partial}, manifest=lambda m: m["claims"].update(actions=6))
    report = verify_evidence(open_package(io.BytesIO(fewer_actions)), chain)
    assert report.ok, report.failed
    signers = f"{scene.keys['bank'].address}, {scene.keys['warehouse'].address}"
    assert f"PartialRelease signed by {signers}" in next(c.detail for c in report.checks if c.name == "action_transactions")
    # a file changed without the manifest following
    assert "files" in _failed(_zip(_edit(files, "lot.json", lambda lot: lot.update(quantity=99_999)), rehash=False), chain)
    # a dropped event: the partial release and its transaction vanish, the counts are fixed up
    released = next(e for e in json.loads(files["chain/events.json"]) if e["name"] == "LotPartiallyReleased")
    dropped = {p: d for p, d in files.items() if released["tx_hash"] not in p}
    dropped = _edit(dropped, "chain/events.json", lambda events: [e for e in events if e["name"] != "LotPartiallyReleased"])

    def fewer(m: dict) -> None:
        m["claims"].update(events=4, transactions=4)

    failed = _failed(_zip(dropped, manifest=fewer), chain)
    assert "events_complete" in failed and "lot_state" in failed, failed
    # a forged signature: the bank's signature on the pledge replaced by a stranger's over the same typed data
    pledge = _path(files, "actions/", '"Pledge"')

    def forge(action: dict) -> None:
        stranger = sign_typed_data(key("stranger").key, action["typed_data"])
        next(s for s in action["signatures"] if s["role"] == "bank")["signature"] = "0x" + stranger.hex()

    failed = _failed(_zip(_edit(files, pledge, forge)), chain)
    assert "action_signatures" in failed and "action_transactions" in failed and "receipts" not in failed, failed
    # a swapped receipt: the pledge's transaction file carries the verification's receipt
    events = json.loads(files["chain/events.json"])
    pledged, verified = (next(e["tx_hash"] for e in events if e["name"] == n) for n in ("LotPledged", "LotVerified"))
    swapped = _edit(files, f"chain/transactions/{pledged}.json",
                    lambda record: record.update(receipt=json.loads(files[f"chain/transactions/{verified}.json"])["receipt"]))  # fmt: skip
    assert "receipts" in _failed(_zip(swapped), chain)
    # a receipt changed in place (another status) is not the node's
    failing = _edit(files, f"chain/transactions/{pledged}.json", lambda record: record["receipt"].update(gasUsed=1))
    assert "receipts" in _failed(_zip(failing), chain)
    # the manifest lists a hash that is not the file's
    wrong_hash = _zip(files, manifest=lambda m: m["files"][0].update(sha256="00" * 32))
    assert _failed(wrong_hash, chain) == ["files"]
    # evidence naming another contract: the registry claimed to be at another address
    elsewhere = "0x" + "42" * 20
    failed = _failed(_zip(files, manifest=lambda m: m["chain"]["contracts"].update(CollateralRegistry=elsewhere)), chain)
    assert "contracts" in failed and "action_typed_data" in failed, failed
    # evidence of another chain: by its id, or another chain with the same id (a second embedded chain)
    report = verify_evidence(open_package(io.BytesIO(_zip(files, manifest=lambda m: m["chain"].update(chain_id=1)))), chain)
    assert report.failed[0] == "chain" and "evidence on chain 1" in report.checks[2].detail
    assert all(c.detail.startswith("not checked") for c in report.checks[3:])
    other = ledger_factory(f"sqlite:///{tmp_path / 'other.sqlite3'}", data_dir=tmp_path / "other")  # a fresh embedded chain
    report = verify_evidence(open_package(io.BytesIO(package)), EvidenceReader(other.chain.client.reader))
    expected = "another chain with the same id" if chain_kind == "embedded" else "the node is chain"
    assert report.failed[0] == "chain" and expected in report.checks[2].detail, report.as_dict()
    assert len(report.failed) == len(report.checks) - 2  # files and manifest hold; nothing else is read


def _change_weight(bundle: dict) -> None:
    payload = bundle["readings"][0]["reading"]["payload"]
    payload["data"] = {k: (v + 1 if isinstance(v, (int, float)) else v) for k, v in payload["data"].items()}
