#!/usr/bin/env python3
"""Compile contracts/*.sol with the pinned solc-js and ship ABI + bytecode in the package.

    scripts/build_contracts.py           # write ledger/chain/artifacts/<Contract>.json
    scripts/build_contracts.py --check   # exit 1 if the shipped artifacts are stale

The compiler is scripts/solc (a solc-compatible front to node_modules/solc), called through
py-solc-x's compile_standard; the settings are contracts/solc-settings.json, shared with
hardhat.config.js. Only top-level contracts/*.sol are shipped (not interfaces/ or mocks/).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import solcx

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = ROOT / "contracts"
ARTIFACTS = ROOT / "ledger" / "chain" / "artifacts"
SOLC = ROOT / "scripts" / "solc"


def compile_all() -> dict[str, dict]:
    settings = json.loads((CONTRACTS / "solc-settings.json").read_text())
    sources = sorted(CONTRACTS.glob("*.sol"))
    standard_input = {
        "language": "Solidity",
        "sources": {f"contracts/{p.name}": {"content": p.read_text()} for p in sources},
        "settings": {
            **settings,
            "outputSelection": {
                f"contracts/{p.name}": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]} for p in sources
            },
        },
    }
    out = solcx.compile_standard(standard_input, solc_binary=SOLC, base_path=str(ROOT), allow_paths=[str(ROOT)])
    version = _solc_version()
    artifacts: dict[str, dict] = {}
    for path in sources:
        for name, c in out["contracts"][f"contracts/{path.name}"].items():
            artifacts[name] = {
                "contractName": name,
                "sourceName": f"contracts/{path.name}",
                "compiler": version,
                "settings": settings,
                "abi": c["abi"],
                "bytecode": "0x" + c["evm"]["bytecode"]["object"],
                "deployedBytecode": "0x" + c["evm"]["deployedBytecode"]["object"],
            }
    return artifacts


def _solc_version() -> str:
    import subprocess

    line = subprocess.run([str(SOLC), "--version"], capture_output=True, text=True, check=True).stdout.splitlines()[-1]
    return line.removeprefix("Version: ").strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the shipped artifacts instead of writing")
    args = parser.parse_args()
    fresh = compile_all()
    if args.check:
        stale = []
        shipped = {p.stem for p in ARTIFACTS.glob("*.json")}
        for name, art in fresh.items():
            path = ARTIFACTS / f"{name}.json"
            if not path.exists() or json.loads(path.read_text()) != art:
                stale.append(name)
        stale += sorted(shipped - fresh.keys())
        if stale:
            print(f"stale contract artifacts: {', '.join(stale)}; run scripts/build_contracts.py and commit", file=sys.stderr)
            return 1
        print(f"contract artifacts up to date ({len(fresh)} contracts)")
        return 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.json"):
        if old.stem not in fresh:
            old.unlink()
    for name, art in fresh.items():
        (ARTIFACTS / f"{name}.json").write_text(json.dumps(art, indent=1, sort_keys=True) + "\n")
        print(f"wrote {ARTIFACTS.relative_to(ROOT)}/{name}.json ({len(art['deployedBytecode']) // 2 - 1} bytes deployed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
