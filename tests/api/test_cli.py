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
