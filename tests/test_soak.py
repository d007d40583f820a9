"""scripts/soak.py: a 20-second soak of a real service (PostgreSQL, embedded chain) and its JSON summary."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import IN_CI, PG_URL, ROOT, _postgres_available

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_a_short_soak_reports_memory_requests_lag_and_proofs() -> None:
    if not _postgres_available():
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI but {PG_URL} does not answer")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}")
    duration = 20
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "soak.py"), "--duration", str(duration), "--rate", "20", "--devices", "4",
         "--proof-rate", "10", "--sample", "1", "--lag-every", "1", "--batch-interval", "1", "--chain", "embedded",
         "--pg-url", PG_URL, "--json", "--no-progress"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads(run.stdout)
    assert "error" not in report

    readings = report["readings"]
    assert readings["results"] == {"accepted": readings["accepted"]}
    assert 0.6 * 20 * duration <= readings["accepted"] <= 20 * duration + 4  # a steady rate, not a burst
    assert report["requests"]["POST /v1/readings"] == {"201": readings["accepted"]}
    assert report["errors"] == 0 and report["error_samples"] == []

    lag = report["ingestion_lag_s"]
    assert lag["n"] >= 5 and 0 < lag["p50"] <= lag["p95"] <= lag["p99"] <= lag["max"] < 15
    proofs = report["proofs"]
    assert proofs["latency_ms"]["n"] >= 20 and report["requests"]["GET proof"] == {"200": proofs["latency_ms"]["n"]}
    assert 0 < proofs["latency_ms"]["p50"] <= proofs["latency_ms"]["p99"] and proofs["bundle_bytes_p50"] > 1000
    assert proofs["anchored_readings_known"] > 0

    samples = report["memory_samples"]
    assert len(samples) >= duration // 2
    assert all(s["service_mb"] > 30 and s["processes"] >= 1 for s in samples)
    assert [s["t_s"] for s in samples] == sorted(s["t_s"] for s in samples)
    memory = report["memory"]
    assert memory["available"] and memory["samples"] == len(samples)
    assert memory["start_mb"] == samples[0]["service_mb"] and memory["end_mb"] == samples[-1]["service_mb"]
    assert isinstance(memory["slope_second_half_mb_per_h"], float) and isinstance(memory["bounded"], bool)
    assert report["backlog"]["readings_max"] is not None
