"""The command line in-process (typer's runner): organisations, device CAs, verify's input errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from ledger.orgs import authenticate
from ledger.store.db import Database


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PLEDGELEDGER_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


def test_org_create_prints_a_working_key(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("org", "create", "Bank A", "--role", "bank", "--signer", "0x" + "ab" * 20)
    assert r.exit_code == 0, r.output
    org = json.loads(r.output)
    assert org["role"] == "bank" and org["api_key"].startswith("plk_")
    db = Database(f"sqlite:///{(tmp_path / 'pledgeledger.sqlite3').resolve()}")
    with db.session() as session:
        assert authenticate(session, org["api_key"]).name == "Bank A"
        stored = session.execute(__import__("sqlalchemy").text("select key_hash from api_keys")).scalar_one()
    assert org["api_key"] not in stored  # only the hash is at rest
    assert cli("org", "create", "Bank A", "--role", "bank").exit_code == 2
    assert cli("org", "create", "X", "--role", "pirate").exit_code == 2


def test_device_ca_command(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.attestation.test_certificates import NOW, cert, pem
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    ca = tmp_path / "roots.pem"
    ca.write_text(pem(cert("Root", key.public_key(), "Root", key, ca=True, start=NOW)))
    assert cli("org", "create", "WH", "--role", "operator").exit_code == 0
    assert cli("org", "create", "Bank", "--role", "bank").exit_code == 0
    r = cli("org", "device-ca", "WH", "--ca-file", str(ca))
    assert r.exit_code == 0 and json.loads(r.output)["device_certificates_required"] is True
    assert cli("org", "device-ca", "WH", "--clear").exit_code == 0
    assert cli("org", "device-ca", "Bank", "--ca-file", str(ca)).exit_code == 2  # not an operator
    assert cli("org", "device-ca", "WH").exit_code == 2  # neither option
    empty = tmp_path / "empty.pem"
    empty.write_text("nothing here")
    assert cli("org", "device-ca", "WH", "--ca-file", str(empty)).exit_code == 2


def test_verify_unreadable_input(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("verify", str(tmp_path / "missing.json"), "--rpc", "http://127.0.0.1:1").exit_code == 2
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert cli("verify", str(bad), "--rpc", "http://127.0.0.1:1").exit_code == 2


@pytest.mark.anvil
def test_audit_and_multiproof_verify_against_a_node(cli, tmp_path: Path, ledger_factory) -> None:  # type: ignore[no-untyped-def]
    """pledgeledger audit and verify through JSON-RPC to the managed anvil the service anchors on."""
    from sqlalchemy import select, update

    from ledger.orgs import create_organisation
    from ledger.simulator import SimulatedDevice
    from ledger.store.models import Organisation, Reading
    from tests.ledger.chain.test_chain import need_anvil

    need_anvil()
    data_dir, db_url = tmp_path / "data", f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    ledger = ledger_factory(db_url, chain="managed", data_dir=data_dir)
    with ledger.db.session() as session:
        org_id = create_organisation(session, name="WH", role="operator").id
    with ledger.db.session() as session:
        operator = session.get(Organisation, org_id)
    device = SimulatedDevice("wh1-scale-cli", "load_cell", lot="LOT-CLI")
    ledger.register_device(operator, device.registration())
    ids = [ledger.ingest(device.reading({"weight_kg": 20.0 + i})).id for i in range(4)]
    ledger.anchorer.tick()
    rpc = ledger.chain.rpc_url
    audit = ("audit", "--rpc", rpc, "--data-dir", str(data_dir), "--db-url", db_url)

    r = cli(*audit, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["ok"] is True
    r = cli(*audit)
    assert r.exit_code == 0 and "audit clean" in r.output, r.output
    assert cli(*audit, "--contract", ledger.chain.client.anchor_address).exit_code == 0
    assert cli(*audit, "--contract", ledger.chain.client.registry_address).exit_code == 2  # not an anchor
    assert cli("audit", "--rpc", "http://127.0.0.1:1", "--data-dir", str(data_dir), "--db-url", db_url).exit_code == 2

    bundle = tmp_path / "multi.json"
    bundle.write_text(json.dumps(ledger.multiproof(0, "LOT-CLI")))
    r = cli("verify", str(bundle), "--rpc", rpc)
    assert r.exit_code == 0 and "bundle verified" in r.output, r.output
    tampered = json.loads(bundle.read_text())
    tampered["multiproof"]["proofFlags"] = [not f for f in tampered["multiproof"]["proofFlags"]]
    bundle.write_text(json.dumps(tampered))
    r = cli("verify", str(bundle), "--rpc", rpc)
    assert r.exit_code == 1 and "failed multiproof" in r.output, r.output

    with ledger.db.session() as session:  # one salt altered in the database
        session.execute(update(Reading).where(Reading.id == ids[2]).values(salt=bytes(32)))
        assert session.scalar(select(Reading.salt).where(Reading.id == ids[2])) == bytes(32)
    r = cli(*audit, "--json")
    assert r.exit_code == 1
    assert ids[2] in {f.get("reading") for f in json.loads(r.output)["findings"]}
    r = cli(*audit)
    assert r.exit_code == 1 and "audit FAILED" in r.output and ids[2] in r.output.replace("\n", ""), r.output


@pytest.mark.anvil
def test_org_signers_on_chain_and_affiliation(cli, tmp_path: Path, ledger_factory) -> None:  # type: ignore[no-untyped-def]
    """org create --signer prints the registration its key signs; sign-registration and the dev --signer-key
    record the signer on chain with the role; affiliate records what the contract then enforces."""
    from eth_account import Account
    from eth_utils import keccak

    from ledger.chain.collateral import Role, sign_typed_data
    from tests.ledger.chain.test_chain import need_anvil

    need_anvil()
    data_dir, db_url = tmp_path / "data", f"sqlite:///{tmp_path / 'orgs.sqlite3'}"
    ledger = ledger_factory(db_url, chain="managed", data_dir=data_dir)  # the running service's chain
    where = ("--rpc", ledger.chain.rpc_url, "--data-dir", str(data_dir), "--db-url", db_url)
    bank_key = Account.from_key(keccak(text="cli bank key"))

    r = cli("org", "create", "Bank C", "--role", "bank", "--signer", bank_key.address, *where)
    assert r.exit_code == 0, r.output
    created = json.loads(r.output)
    assert created["chain_org"] is None and created["registration"]["typed_data"]["message"]["signer"] == bank_key.address
    signature = "0x" + sign_typed_data(bank_key.key, created["registration"]["typed_data"]).hex()  # in the bank's own wallet
    r = cli("org", "sign-registration", "Bank C", "--signature", signature, *where)
    assert r.exit_code == 0 and json.loads(r.output)["status"] == "confirmed", r.output
    chain_org = json.loads(r.output)["chain_org"]
    on_chain = ledger.collateral.organisation(chain_org)
    assert (on_chain.signer, on_chain.role) == (bank_key.address, Role.BANK)

    for name, role in (("WH C", "operator"), ("Maker C", "enterprise")):
        r = cli("org", "create", name, "--role", role, "--signer-key", "0x" + keccak(text=f"cli {name}").hex(), *where)
        assert r.exit_code == 0 and json.loads(r.output)["chain_org"], r.output
    r = cli("org", "affiliate", "WH C", "Maker C", *where)
    assert r.exit_code == 0 and json.loads(r.output)["affiliated"] is True, r.output
    with ledger.db.session() as session:
        from sqlalchemy import select

        from ledger.store.models import Organisation

        a, b = (session.scalar(select(Organisation.chain_org).where(Organisation.name == n)) for n in ("WH C", "Maker C"))
    assert ledger.collateral.contract.functions.isAffiliated(a, b).call()
    assert cli("org", "affiliate", "WH C", "Nobody", *where).exit_code == 2

    r = cli("org", "create", "Plain", "--role", "auditor", "--signer", Account.create().address, "--data-dir", str(data_dir), "--db-url", db_url)
    assert r.exit_code == 0 and "GET /v1/organisation" in json.loads(r.output)["registration"], r.output
