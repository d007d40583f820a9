"""The closing check of every reliability test: whatever fault was made, the ledger is sound.

:func:`assert_sound` checks, against the chain and nothing the service says:

1. **stored**: every reading the ledger acknowledged (``accepted`` or ``duplicate`` in an HTTP or
   MQTT answer) is in the database;
2. **provable**: its proof bundle, built from the database, verifies with
   :func:`attestation.verify_bundle` against facts read from the chain (every check, the link to
   the checkpoint's transaction included);
3. **nothing anchored twice**: the stored batches are indexes ``0..n-1`` with distinct roots,
   the anchor holds exactly ``n`` checkpoints whose ``rootOf`` are those roots, and the chain
   emitted exactly one ``Checkpointed`` event per index;
4. **the audit is clean**: :func:`ledger.audit.run_audit` reports no error.

:func:`wait_anchored` first waits until the service has batched and anchored everything;
:func:`assert_service_sound` does both.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from attestation import chain_query, verify_bundle
from ledger.audit import open_audit_chain, run_audit
from ledger.chain.client import ChainClient
from ledger.proofs import proof_bundle
from ledger.store.db import Database
from ledger.store.models import ANCHORED_STATES, Batch, Reading
from tests.ledger.test_anchoring import checkpoint_events
from tests.reliability.harness import say

__all__ = ["Soundness", "assert_service_sound", "assert_sound", "wait_anchored"]

_CHUNK = 500


@dataclass(frozen=True)
class Soundness:
    readings: int  # stored readings, in all
    acknowledged: int  # of which the test saw acknowledged
    batches: int
    checkpoints: int
    audit_warnings: int

    def __str__(self) -> str:
        return (f"sound: {self.acknowledged} acknowledged readings stored and provable ({self.readings} stored), "
                f"{self.batches} batches = {self.checkpoints} checkpoints, each anchored once, audit clean "
                f"({self.audit_warnings} warnings)")  # fmt: skip


def wait_anchored(db: Database, *, timeout: float = 120.0, states: tuple[str, ...] = ANCHORED_STATES) -> None:
    """Wait until every stored reading is in a batch and every batch is in ``states`` (included or final)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        with db.session() as session:
            loose = session.scalar(select(func.count()).select_from(Reading).where(Reading.batch_index.is_(None)))
            behind = dict(session.execute(
                select(Batch.status, func.count()).where(Batch.status.not_in(states)).group_by(Batch.status)
            ).all())  # fmt: skip
        last = (loose, behind)
        if not loose and not behind:
            return
        time.sleep(0.25)
    raise AssertionError(f"not anchored within {timeout} s: {last[0]} readings not batched, batches behind: {last[1]}")


def assert_service_sound(db: Database, rpc_url: str, data_dir: Path, acknowledged: Iterable[str], *, timeout: float = 120.0) -> Soundness:
    """At the end of a test against the service: wait until it anchored everything, then
    :func:`assert_sound` against the chain at ``rpc_url`` (the deployment recorded in
    ``data_dir``), the ledger holding exactly the ``acknowledged`` readings."""
    wait_anchored(db, timeout=timeout)
    return assert_sound(db, open_audit_chain(rpc_url, data_dir), acknowledged, exact=True)


def assert_sound(db: Database, chain: ChainClient, acknowledged: Iterable[str], *, exact: bool = False,
                 quiet: bool = False) -> Soundness:
    """Check 1-4 of the module doc for the readings ``acknowledged`` (ids); call after
    :func:`wait_anchored`. ``exact``: no other reading may be stored."""
    ids = sorted(set(acknowledged))
    with db.session() as session:
        stored = set()
        for i in range(0, len(ids), _CHUNK):
            stored.update(session.scalars(select(Reading.id).where(Reading.id.in_(ids[i : i + _CHUNK]))))
        total = session.scalar(select(func.count()).select_from(Reading)) or 0
        batches = list(session.execute(select(Batch.index, Batch.root, Batch.status).order_by(Batch.index)))
    lost = [i for i in ids if i not in stored]
    assert not lost, f"{len(lost)} acknowledged readings are not stored, e.g. {lost[:3]}"
    assert not exact or total == len(ids), f"{total} readings stored, {len(ids)} acknowledged"

    # nothing anchored twice: batches 0..n-1, distinct roots, one checkpoint each and no other
    indexes = [b.index for b in batches]
    assert indexes == list(range(len(batches))), f"batch indexes are not contiguous: {indexes}"
    roots = [bytes(b.root) for b in batches]
    assert len(set(roots)) == len(roots), "two batches have the same root"
    size, _ = chain.head()
    assert size == len(batches), f"the chain has {size} checkpoints for {len(batches)} batches"
    assert [chain.root_of(i) for i in range(size)] == roots, "a checkpoint on chain holds another root than its batch"
    events = Counter(checkpoint_events(chain))
    assert events == Counter(range(size)), f"Checkpointed events by index are not one each: {dict(events)}"

    # provable: every acknowledged reading's bundle verifies against the chain
    facts = functools.lru_cache(maxsize=None)(chain.reader.chain_facts)  # many readings share an anchor, device and second
    with db.session() as session:
        for reading_id in ids:
            bundle = proof_bundle(session, reading_id, interval_s=1.0)
            report = verify_bundle(bundle, facts(chain_query(bundle)))
            assert report.ok, f"the proof of {reading_id} does not verify: {report.as_dict()}"

    audit = run_audit(db, chain)
    assert audit.ok, f"audit found errors: {audit.as_dict()['findings']}"
    result = Soundness(total, len(ids), len(batches), size, audit.warnings)
    if not quiet:
        say(str(result))
    return result
