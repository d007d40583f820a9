"""scripts/bench_alerts.py runs and reports figures that hold (two trials on SQLite)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT
from tests.ledger.lotworld import fast_chain


def test_bench_alerts_times_the_freeze_and_the_webhooks() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_alerts.py"), "--trials", "2", "--interval", "2", "--chain", fast_chain(),
         "--db", "sqlite", "--json"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    assert len(report["trials"]) == 2 and report["params"]["interval"] == 2.0
    for trial in report["trials"]:
        assert 0 < trial["frozen_s"] <= trial["final_s"] < 60 and 0 < trial["alert_webhook_s"] < trial["frozen_webhook_s"] < 60
    assert set(report["summary"]) == {"frozen_s", "final_s", "alert_webhook_s", "frozen_webhook_s"}
