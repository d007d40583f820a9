"""scripts/bench: every benchmark in one table (the cheap ones run for real; a crashing one is an error row)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

REQUIRED = (
    "ingest_ratio", "ingest_per_s", "checkpoint_gas", "gas_per_reading_10k", "proof_bytes", "proof_rps",
    "proof_p99_ms", "proof_flatness", "accept_to_proof_s", "pledge_gas", "release_gas",
)  # fmt: skip


def _benchtable():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("benchtable", ROOT / "scripts" / "benchtable.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["benchtable"] = module
    spec.loader.exec_module(module)
    return module


def test_quick_json_of_the_embedded_benchmarks() -> None:
    run = subprocess.run(
        [str(ROOT / "scripts" / "bench"), "--quick", "--json", "--only", "anchor,gas", "--no-progress"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    for key in REQUIRED:  # every headline key, measured or null
        assert key in report
    for key in ("checkpoint_gas", "pledge_gas", "release_gas", "register_lot_gas"):
        assert isinstance(report[key], int) and report[key] > 21_000, key
    # the batch of 10,000's own checkpoint (calldata costs 4 gas per zero byte of the root, 16 per other
    # byte, so checkpoints differ by multiples of 12 gas; checkpoint_gas is the largest one)
    [batch] = [b for r in report["benchmarks"]["anchor"]["report"]["results"] for b in r["batches"] if b["readings"] == 10_000]
    assert isinstance(report["gas_per_reading_10k"], float) and report["gas_per_reading_10k"] == batch["gas_per_checkpoint"] / 10_000
    assert report["checkpoint_gas"] - batch["gas_per_checkpoint"] in range(0, 32 * 12 + 1, 12)
    for key in ("ingest_ratio", "ingest_per_s", "proof_bytes", "proof_rps", "proof_p99_ms", "proof_flatness"):
        assert report[key] is None, key  # not selected
    assert report["ok"] is True and report["quick"] is True
    assert set(report["benchmarks"]) == {"anchor", "gas"}
    assert all(b["status"] == "ok" and b["exit_code"] == 0 for b in report["benchmarks"].values())
    rows = {r["metric"]: r for r in report["rows"]}
    assert set(rows) == {"checkpoint_gas", "gas_per_reading_10k", "pledge_gas", "release_gas", "register_lot_gas"}
    assert rows["checkpoint_gas"]["target"] == "≤ 48,000" and rows["checkpoint_gas"]["result"] in ("pass", "FAIL")
    assert rows["checkpoint_gas"]["result"] == ("pass" if report["checkpoint_gas"] <= 48_000 else "FAIL")
    assert rows["gas_per_reading_10k"]["target"] is None and rows["gas_per_reading_10k"]["result"] == "—"
    machine = report["machine"]
    assert isinstance(machine["cores"], int) and isinstance(machine["cpu_model"], str)
    assert isinstance(machine["load"]["background_cores_before"], list)


def test_a_crashing_benchmark_is_an_error_row_and_the_others_still_run(tmp_path: Path) -> None:
    bt = _benchtable()
    crash = tmp_path / "bench_crash.py"
    crash.write_text("import sys\nprint('half a log line', file=sys.stderr)\nraise SystemExit(2)\n")
    fine = tmp_path / "bench_fine.py"
    fine.write_text("import json\nprint(json.dumps({'figures': {'speed': 12.5}}))\n")
    benchmarks = [
        bt.Benchmark("crash", str(crash), (bt.Metric("crash_metric", "x", "s", bt.Target("<=", 1, "test")),)),
        bt.Benchmark("fine", str(fine), (bt.Metric("speed", "figures.speed", "/s", bt.Target(">=", 20, "test")),)),
    ]
    outcomes, meta = bt.run_all(benchmarks, quick=True, log_dir=tmp_path, progress=False)
    report = bt.summary(outcomes, meta)
    assert report["ok"] is False and report["targets_met"] is False
    crashed = report["benchmarks"]["crash"]
    assert crashed["status"] == "error" and crashed["exit_code"] == 2 and "exit 2" in crashed["error"]
    assert "half a log line" in (tmp_path / "crash.log").read_text()
    assert [(r["benchmark"], r["metric"], r["result"]) for r in report["rows"]] == [
        ("crash", "crash_metric", "error"),
        ("crash", "error", "ERROR"),
        ("fine", "speed", "FAIL"),
    ]
    assert report["speed"] == 12.5 and report["crash_metric"] is None
    table = bt.markdown(report["rows"])
    assert "| crash | error |" in table and "ERROR" in table and "| fine | speed | 12.5 | /s | ≥ 20 (test) | FAIL |" in table


def test_only_rejects_unknown_names() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "benchtable.py"), "--only", "ingest,nope"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 2 and "unknown: nope" in run.stderr
