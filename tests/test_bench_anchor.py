"""scripts/bench_anchor.py runs and reports figures that hold (a small run on the embedded chain)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def test_bench_anchor_reports_gas_and_bundle_sizes() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_anchor.py"), "--chain", "embedded", "--sizes", "1,5,64", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    [result] = report["results"]
    assert result["chain"] == "embedded" and 40_000 < result["first_checkpoint_gas"] < 48_000
    batches = result["batches"]
    assert [b["readings"] for b in batches] == [1, 5, 64]
    for b in batches:
        assert b["index"] >= 1 and b["gas_per_checkpoint"] <= report["gas_budget"]
        assert b["gas_per_reading"] == b["gas_per_checkpoint"] / b["readings"]
    assert [b["proof_nodes"] for b in batches][::2] == [0, 6]  # one leaf: the root itself; 64 leaves: 6
    sizes = [b["bundle_bytes"] for b in batches]
    assert sizes == sorted(sizes) and 1_000 < sizes[-1] < 2_500
