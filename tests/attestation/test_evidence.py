"""attestation.evidence without a chain: the package's files against its manifest, zip input, and the
gates that stop a verification early (everything a chain would answer is in tests/api/test_evidence.py)."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import pytest

from attestation.collateral import LotState, keccak
from attestation.evidence import CHECKS, MANIFEST, PackageError, file_entry, normalise_receipt, open_package, verify_evidence


class NoChain:
    """A chain that must not be read: the checks under test decide before any chain fact is needed."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the verifier read the chain ({name}) after a gate failed")


def package(extra: dict[str, bytes] | None = None, **manifest_changes: Any) -> dict[str, bytes]:
    files = {"lot.json": json.dumps({"id": "L-1"}).encode(), "chain/events.json": b"[]", **(extra or {})}
    manifest = {
        "format": "pledgeledger.evidence/1",
        "lot": {"id": "L-1", "chain_lot": "0x" + keccak(b"L-1").hex()},
        "chain": {"chain_id": 5, "from_block": 0, "head": {"number": 1, "hash": "0x" + "00" * 32},
                  "contracts": {n: "0x" + "11" * 20 for n in ("CollateralRegistry", "ReadingAnchor", "DeviceRegistry")}},
        "claims": {"state": LotState().as_dict(), "events": 0, "transactions": 0, "actions": 0, "devices": 0, "reading_batches": 0, "readings": 0},
        "files": [file_entry(p, d) for p, d in sorted(files.items())],
    }  # fmt: skip
    manifest.update(manifest_changes)
    return {**files, MANIFEST: json.dumps(manifest).encode()}


class WrongChain(NoChain):
    def chain_id(self) -> int:
        return 6


def failed_checks(files: dict[str, bytes]) -> dict[str, str]:
    """The failed checks that ran (a chain of another id stops the rest once the manifest holds)."""
    report = verify_evidence(files, WrongChain())  # type: ignore[arg-type]
    assert [c.name for c in report.checks] == list(CHECKS)
    return {c.name: c.detail for c in report.checks if not c.ok and not c.detail.startswith("not checked")}


def test_manifest_gate_and_file_findings() -> None:
    files = package()
    files["lot.json"] = b'{"id": "L-2"}'
    found = failed_checks(files)
    assert "lot.json has SHA-256" in found["files"] and "about another lot" in found["manifest"]
    assert set(found) == {"files", "manifest"}

    files = package()
    files["extra.txt"] = b"unlisted"
    found = failed_checks(files)
    assert "extra.txt is in the package but not in the manifest" in found["files"] and set(found) == {"files", "chain"}

    traversal = package()
    manifest = json.loads(traversal[MANIFEST])
    manifest["files"].append({"path": "../../etc/passwd", "sha256": "00", "size": 1})
    traversal[MANIFEST] = json.dumps(manifest).encode()
    assert "'../../etc/passwd' is not a file name a package may list" in failed_checks(traversal)["files"]

    assert "not keccak256('L-1')" in failed_checks(package(lot={"id": "L-1", "chain_lot": "0x" + "00" * 32}))["manifest"]
    assert "format is not" in failed_checks(package(format="pledgeledger.evidence/0"))["manifest"]
    assert "no manifest.json" in failed_checks({"lot.json": b"{}"})["files"]
    assert "not JSON" in failed_checks({MANIFEST: b"{nope"})["files"]


def test_counts_must_match_the_files() -> None:
    files = package()
    manifest = json.loads(files[MANIFEST])
    manifest["claims"]["events"] = 3
    files[MANIFEST] = json.dumps(manifest).encode()
    assert "claims.events is 3, the package holds 0" in failed_checks(files)["manifest"]


def test_another_chain_stops_the_verification() -> None:
    report = verify_evidence(package(), WrongChain())  # type: ignore[arg-type]
    assert report.failed == list(CHECKS[2:])
    assert "the package is evidence on chain 5, the node is chain 6" in report.checks[2].detail
    assert all(c.detail == "not checked: the node is not on the package's chain" for c in report.checks[3:])


def test_open_package() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("a.json", b"{}")
        archive.writestr("dir/", b"")
    files = open_package(io.BytesIO(out.getvalue()))
    assert list(files) == ["a.json"] and files["a.json"] == b"{}"
    with pytest.raises(KeyError):
        files["b.json"]
    with pytest.raises(PackageError, match="not a zip file"):
        open_package(io.BytesIO(b"PK but not really"))


def test_receipts_normalise_alike_from_web3_and_json() -> None:
    web3_form = {"transactionHash": b"\x01" * 32, "blockHash": b"\x02" * 32, "blockNumber": 7, "transactionIndex": 0,
                 "from": "0x" + "ab" * 20, "to": None, "status": 1, "gasUsed": 21_000, "effectiveGasPrice": 9,
                 "logs": [{"address": "0x" + "cd" * 20, "topics": [b"\x03" * 32], "data": b"", "logIndex": 2, "blockNumber": 7,
                           "blockHash": b"\x02" * 32, "transactionHash": b"\x01" * 32}]}  # fmt: skip
    rpc_form = json.loads(json.dumps({k: ("0x" + v.hex() if isinstance(v, bytes) else hex(v) if isinstance(v, int) else v)
                                      for k, v in web3_form.items() if k != "logs"}))  # fmt: skip
    rpc_form["logs"] = [{k: ("0x" + v.hex() if isinstance(v, bytes) else hex(v) if isinstance(v, int) else
                             ["0x" + t.hex() for t in v] if k == "topics" else v) for k, v in web3_form["logs"][0].items()}]  # fmt: skip
    assert normalise_receipt(web3_form) == normalise_receipt(rpc_form) == normalise_receipt(json.loads(json.dumps(normalise_receipt(rpc_form))))
    assert "effectiveGasPrice" not in normalise_receipt(web3_form)  # nodes differ on it: not compared
