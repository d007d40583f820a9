"""The real ``pledgeledger serve`` process set up for a fault test, and small waits and reads around it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import func, select

from ledger.chain import ANVIL_DEV_KEY, deploy_to, open_chain
from ledger.orgs import create_organisation
from ledger.settings import normalise_db_url
from ledger.store.db import Database
from ledger.store.models import Reading
from tests.e2e.test_service import Service

__all__ = ["count_readings", "health", "organisations", "running_service", "say", "start_service", "stored_ids", "wait_for"]

T = TypeVar("T")
_T0 = time.monotonic()


def say(message: str) -> None:
    """One line of what the test does, with the seconds since the suite began (read it with ``pytest -s``)."""
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", flush=True)


def start_service(data_dir: Path, node: Any, db_url: str, **env: str) -> Service:
    """``pledgeledger serve`` on ``db_url``, anchoring to ``node`` (contracts deployed first, as
    ``pledgeledger deploy`` does), sealing every 0.5 s, final at one confirmation, with no
    per-device rate limit (the load client is one gateway sending as fast as it can); running."""
    with open_chain(node.url, data_dir, relayer_key=ANVIL_DEV_KEY) as handle:
        deploy_to(handle.client, data_dir)
    service = Service(data_dir, db_url)
    service.env.update(PLEDGELEDGER_CHAIN=node.url, PLEDGELEDGER_RELAYER_KEY=ANVIL_DEV_KEY, PLEDGELEDGER_CONFIRMATIONS="1",
                       PLEDGELEDGER_DEVICE_RATE_PER_S="1000000", PLEDGELEDGER_DEVICE_BURST="1000000", **env)  # fmt: skip
    service.start()
    return service


@contextmanager
def running_service(data_dir: Path, node: Any, db_url: str, **env: str) -> Iterator[tuple[Service, Database]]:
    """:func:`start_service`, with the test's own connection to its database; both closed at the end."""
    service = start_service(data_dir, node, db_url, **env)
    db = Database(normalise_db_url(db_url))
    try:
        yield service, db
    finally:
        service.stop()
        db.dispose()


def organisations(db: Database) -> tuple[str, str]:
    """API keys of a new operator and a new bank (made in the database, as ``pledgeledger org create`` does)."""
    with db.session() as session:
        return (create_organisation(session, name="Warehouse", role="operator").api_key,
                create_organisation(session, name="Bank", role="bank").api_key)  # fmt: skip


def health(service: Service) -> dict[str, Any]:
    return httpx.get(f"{service.url}/healthz", timeout=10).raise_for_status().json()


def wait_for(condition: Callable[[], T], what: str, timeout: float = 30.0, every: float = 0.1) -> T:
    """Poll ``condition`` until it returns something true (returned); an exception counts as not yet."""
    deadline = time.monotonic() + timeout
    error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - e.g. the service not answering yet
            error = exc
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}" + (f" (last error: {error!r})" if error else ""))


def stored_ids(db: Database, ids: Iterable[str]) -> set[str]:
    with db.session() as session:
        return set(session.scalars(select(Reading.id).where(Reading.id.in_(list(ids)))))


def count_readings(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(Reading)) or 0
