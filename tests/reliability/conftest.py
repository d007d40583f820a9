"""Fixtures of the reliability suite: an anvil node of the test's own, and private PostgreSQL and
Mosquitto servers that a test may stop and restart (never the machine's shared ones).

Each is skipped when its binary is absent, and fails the run instead under ``CI=true``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.chain import AnvilNode
from tests.conftest import IN_CI
from tests.reliability.servers import PrivateMosquitto, PrivatePostgres, find_mosquitto, postgres_bin_dir


def _missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} not installed")


@pytest.fixture
def node(tmp_path: Path) -> Iterator[AnvilNode]:
    """An anvil of this test alone, its state in ``tmp_path/node`` (so it survives a stop and start)."""
    from ledger.chain import find_anvil

    if find_anvil() is None:
        _missing("anvil (npm install puts it in node_modules)")
    node = AnvilNode(tmp_path / "node")
    node.start()
    yield node
    node.stop()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A running PostgreSQL cluster of this test alone (``.url``, ``.restart()``)."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        _missing("PostgreSQL's server binaries (/usr/lib/postgresql/*/bin/initdb, pg_ctl)")
    server = PrivatePostgres(bin_dir)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def private_mosquitto(tmp_path: Path) -> Iterator[PrivateMosquitto]:
    """A running Mosquitto of this test alone, persisting its sessions (``.url``, ``.stop()``, ``.start()``)."""
    binary = find_mosquitto()
    if binary is None:
        _missing("the mosquitto binary")
    broker = PrivateMosquitto(binary, tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.stop()
