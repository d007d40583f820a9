#!/usr/bin/env python3
"""Evidence package benchmark: how big a lot's package is, and how long it takes to build and to verify.

Run it with the project's interpreter::

    .venv/bin/python scripts/bench_evidence.py                          # 20,000 readings, PostgreSQL, embedded chain
    .venv/bin/python scripts/bench_evidence.py --readings 100000 --db sqlite --json

It opens a ledger in-process (a private schema of the PostgreSQL at ``PLEDGELEDGER_TEST_PG_URL``, or
a SQLite file; the embedded py-evm chain, or ``--chain managed`` for an anvil node), takes one lot
through registration, verification and pledge with three organisations whose keys only this script
holds (through the same service calls the HTTP routes make), has the lot's two devices send
``--readings`` signed readings about it in batches of 1,000 (anchored in batches of at most
``--batch-size``), then:

1. builds the package as ``GET /v1/lots/{id}/evidence`` does (``Ledger.evidence``), timing it and
   reporting its size (per reading too) and its files;
2. verifies it as ``pledgeledger verify-evidence`` does (``attestation.evidence.verify_evidence``
   with the chain read through ``EvidenceReader``), timing it.

Times are wall clock and this process's CPU time (build and verify run in this process, with the
in-process chain; the CPU time is what to compare on a busy machine).

Nothing is written outside a temporary directory and the private schema (dropped at the end). Exit
status 1 if the package does not verify.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from anywhere without installing
    sys.path.insert(0, str(ROOT))

from eth_account import Account  # noqa: E402
from eth_utils import keccak  # noqa: E402

from attestation.evidence import open_package, verify_evidence  # noqa: E402
from ledger.chain.collateral import sign_typed_data  # noqa: E402
from ledger.chain.evidence import EvidenceReader  # noqa: E402
from ledger.service import Ledger  # noqa: E402
from ledger.settings import Settings  # noqa: E402
from ledger.simulator import SimulatedDevice  # noqa: E402
from scripts.benchlib import DEFAULT_PG_URL, log, pg_execute, schema_url  # noqa: E402

LOT = "EWR-BENCH-1"
TERMS = {"loan_value": "6000000.00", "currency": "CNY", "commodity": "steel_coil", "haircut": "0.30",
         "warning_ltv": "0.70", "disposal_ltv": "0.85", "min_quantity": 6_000, "cure_period_s": 86_400}  # fmt: skip


def _sign(ledger: Ledger, orgs: dict[str, Any], keys: dict[str, Any], action: dict[str, Any], *signers: str) -> dict[str, Any]:
    for name in signers:
        signature = "0x" + sign_typed_data(keys[name].key, action["typed_data"]).hex()
        action = ledger.add_action_signature(orgs[name], action["id"], signature)
    if action["status"] != "confirmed":
        raise RuntimeError(f"{action['type']} is {action['status']}: {action.get('error')}")
    return action


def drive_lot(ledger: Ledger, readings: int) -> Any:
    """Register organisations, devices and the lot; verify and pledge it; send the readings. The auditor."""
    keys = {name: Account.from_key(keccak(text=f"bench evidence {name}")) for name in ("warehouse", "enterprise", "bank")}
    roles = {"warehouse": "operator", "enterprise": "enterprise", "bank": "bank"}
    orgs = {}
    for name, role in roles.items():
        new = ledger.create_organisation(name=name, role=role, signer=keys[name].address)
        orgs[name] = ledger.authenticate(new.api_key)
        _sign(ledger, orgs, keys, ledger.organisation(orgs[name])["registration"], name)
    auditor = ledger.authenticate(ledger.create_organisation(name="auditor", role="auditor").api_key)
    devices = [SimulatedDevice("bench-scale-01", "load_cell", lot=LOT), SimulatedDevice("bench-rfid-02", "rfid_inventory", alg="EdDSA", lot=LOT)]
    for device in devices:
        ledger.register_device(orgs["warehouse"], device.registration())
    created = ledger.register_lot(orgs["warehouse"], {"id": LOT, "enterprise": "enterprise", "goods": {"commodity": "steel coil"},
                                                      "quantity": 10_000, "unit": "kg", "devices": [d.id for d in devices]})  # fmt: skip
    _sign(ledger, orgs, keys, created["action"], "warehouse")
    verify = ledger.propose_action(orgs["warehouse"], LOT, {"type": "verify", "params": {"quantity": 10_000, "assay": {"lab": "SGS"}}})
    _sign(ledger, orgs, keys, verify, "warehouse", "enterprise")
    pledge = ledger.propose_action(orgs["enterprise"], LOT, {"type": "pledge", "params": {
        "bank": "bank", "registration": "PBOC-BENCH-1", "terms": TERMS, "min_quantity": 6_000}})  # fmt: skip
    _sign(ledger, orgs, keys, pledge, "enterprise", "bank", "warehouse")
    started = time.perf_counter()
    sent = 0
    while sent < readings:
        chunk = []
        for _ in range(min(1_000, readings - sent)):
            device = devices[sent % 2]
            chunk.append(device.reading({"weight_kg": 10_000.0} if device.kind == "load_cell" else {"count": 40}))
            sent += 1
        results = ledger.ingest_many(chunk)
        if any(r.status != "accepted" for r in results):
            raise RuntimeError(f"a reading was refused: {next(r for r in results if r.status != 'accepted')}")
    for _ in range(readings // ledger.settings.batch_max_size + 2):  # a tick seals and anchors one batch
        ledger.anchorer.tick()
    log(f"{readings} readings ingested and anchored in {time.perf_counter() - started:.1f} s")
    return auditor


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-evidence-") as tmp:
        schema = None
        if args.db == "sqlite":
            db_url = f"sqlite:///{Path(tmp) / 'ledger.sqlite3'}"
        else:
            schema = f"bench_evidence_{uuid.uuid4().hex[:8]}"
            pg_execute(args.pg_url, f"CREATE SCHEMA {schema}")
            db_url = schema_url(args.pg_url, schema)
        try:
            settings = Settings(data_dir=Path(tmp) / "data", db_url=db_url, chain=args.chain, batch_interval_s=1.0,
                                batch_max_size=args.batch_size, device_rate_per_s=1e9, device_burst=10**9)  # fmt: skip
            ledger = Ledger.open(settings, start_anchoring=False)
            try:
                auditor = drive_lot(ledger, args.readings)
                started, cpu = time.perf_counter(), time.process_time()
                name, package_file = ledger.evidence(auditor, LOT)
                with package_file:
                    package = package_file.read()
                built, built_cpu = time.perf_counter() - started, time.process_time() - cpu
                log(f"{name}: {len(package):,} bytes built in {built:.1f} s ({built_cpu:.1f} s CPU)")
                started, cpu = time.perf_counter(), time.process_time()
                report = verify_evidence(open_package(io.BytesIO(package)), EvidenceReader(ledger.chain.client.reader))
                verified, verified_cpu = time.perf_counter() - started, time.process_time() - cpu
                log(f"verified in {verified:.1f} s ({verified_cpu:.1f} s CPU): {'ok' if report.ok else 'FAILED ' + ', '.join(report.failed)}")
            finally:
                ledger.close()
        finally:
            if schema is not None:
                pg_execute(args.pg_url, f"DROP SCHEMA {schema} CASCADE")
    files = zipfile.ZipFile(io.BytesIO(package)).infolist()
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(package)).read("manifest.json"))
    return {
        "db": args.db,
        "chain": args.chain,
        "readings": manifest["claims"]["readings"],
        "reading_batches": manifest["claims"]["reading_batches"],
        "files": len(files),
        "package_bytes": len(package),
        "uncompressed_bytes": sum(f.file_size for f in files),
        "bytes_per_reading": round(len(package) / max(1, manifest["claims"]["readings"]), 1),
        "readings_not_anchored": manifest["claims"]["readings_not_anchored"],
        "build_s": round(built, 2),
        "build_cpu_s": round(built_cpu, 2),
        "verify_s": round(verified, 2),
        "verify_cpu_s": round(verified_cpu, 2),
        "verified_readings_per_cpu_s": round(manifest["claims"]["readings"] / verified_cpu, 1),
        "ok": report.ok,
        "failed": report.failed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=20_000, help="readings about the lot [20000]")
    parser.add_argument("--batch-size", type=int, default=65_536, help="most readings in one anchored batch [65536]")
    parser.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql", help="[postgresql]")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL server (a private schema is made) [PLEDGELEDGER_TEST_PG_URL]")
    parser.add_argument("--chain", choices=("embedded", "managed"), default="embedded", help="[embedded]")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    figures = run(args)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key:>24}: {value}")
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
