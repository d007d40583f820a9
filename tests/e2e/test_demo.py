"""`pledgeledger demo` against the real service on a managed anvil: the three scenes play through, and every
claim the closing report makes with a proof is verified against the chain (exit 0)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_service import Service, _need_anvil  # noqa: F401 - the anvil requirement applies here too

pytestmark = pytest.mark.slow


def test_the_three_scenes_play_and_their_proofs_verify(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    service = Service(data_dir, f"sqlite:///{data_dir}/ledger.sqlite3")
    data_dir.mkdir()
    try:
        service.start()
        service.env["COLUMNS"] = "400"  # rich folds lines at 80 columns without a terminal
        run = service.cli("demo", "--url", service.url, timeout=600)
        out = run.stdout + run.stderr
        assert run.returncode == 0, out[-5000:]
        for claim in (
            "pledged to Pudong Commercial Bank",
            "the outflow raised weight_drop and froze the lot on chain",
            "evidence package",
            "kWh of weaving-hall-meter",
            "the insurer's endpoint received alert.raised (smoke_alarm)",
        ):
            assert claim in out, out[-5000:]
        assert "FAILED" not in out and "stopped" not in out
    finally:
        service.stop()
