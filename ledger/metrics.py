"""Prometheus metrics: the metric objects, incremented where things happen in the ledger, and
the exposition that ``GET /metrics`` serves.

::

    pledgeledger_readings_total{status,code}          counter   every reading decided (HTTP and MQTT):
                                                                status accepted | duplicate | rejected,
                                                                code the rejection's error code ("" otherwise)
    pledgeledger_anchored_readings_total              counter   readings in batches included on chain
    pledgeledger_anchor_latency_seconds               histogram a batch sealed → its checkpoint included
    pledgeledger_chain_errors_total{operation,kind}   counter   failed chain operations: operation a
                                                                ChainReader/ChainClient method (head,
                                                                send_checkpoint, register_device, ...),
                                                                kind unavailable | revert | error
    pledgeledger_alerts_total{rule,severity}          counter   supervision alerts raised: defined for the rules
                                                                of issue 6, which call ``ALERTS.labels(rule=...,
                                                                severity=...).inc()``; no samples until then
    pledgeledger_backlog_readings                     gauge     readings not yet in an anchored batch ┐ read from the
    pledgeledger_backlog_batches{status}              gauge     sealed / submitted batches             │ database at
    pledgeledger_backlog_oldest_seconds               gauge     age of the oldest reading not anchored │ each scrape
    pledgeledger_database_up                          gauge     1 if those could be read, else 0       ┘

The HTTP metrics (``pledgeledger_http_*``) are defined by the API (:mod:`api.middleware`).

**Several processes.** ``pledgeledger serve --workers N`` runs prometheus_client's multiprocess
mode: the serving process sets ``PROMETHEUS_MULTIPROC_DIR`` before any metric exists, every
process (the parent, which anchors and bridges MQTT, and each HTTP worker) writes its counters
and histograms to files there, and :func:`exposition` in whichever worker answers the scrape
adds them all up. So every scrape shows the whole service, as from one process; the
``process_*`` and ``python_*`` collectors do not exist in that mode. The database gauges are the
same whichever process reads them.
"""

from __future__ import annotations

import logging
import os
from collections import Counter as Tally
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from ledger.store.db import Database
from ledger.store.models import ANCHORED_STATES, Batch, Reading, utc

__all__ = [
    "ALERTS",
    "ANCHORED_READINGS",
    "ANCHOR_LATENCY",
    "CHAIN_ERRORS",
    "CONTENT_TYPE",
    "MULTIPROCESS",
    "READINGS",
    "BacklogCollector",
    "count_chain_error",
    "count_readings",
    "exposition",
    "observe_anchored",
]

log = logging.getLogger(__name__)

#: Whether this process writes its metrics to ``PROMETHEUS_MULTIPROC_DIR`` (decided when
#: prometheus_client is first imported, which is when this module is).
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

CONTENT_TYPE = CONTENT_TYPE_LATEST

disable_created_metrics()  # no *_created series: multiprocess mode has none either

READINGS = Counter(
    "pledgeledger_readings",
    "Readings decided, over HTTP and MQTT: status accepted, duplicate or rejected; code the rejection's error code",
    ["status", "code"],
)
ANCHORED_READINGS = Counter("pledgeledger_anchored_readings", "Readings in batches whose checkpoint was included on chain")
ANCHOR_LATENCY = Histogram(
    "pledgeledger_anchor_latency_seconds",
    "Seconds from a batch being sealed to its checkpoint being included in a block",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600),
)
CHAIN_ERRORS = Counter(
    "pledgeledger_chain_errors",
    "Failed chain operations by operation (the client method) and kind (unavailable, revert, error)",
    ["operation", "kind"],
)
ALERTS = Counter(
    "pledgeledger_alerts",
    "Supervision alerts raised, by rule and severity",
    ["rule", "severity"],
)


def count_readings(outcomes: Iterable[tuple[str, str]]) -> None:
    """Count decided readings, each as ``(status, code)`` (code ``""`` unless rejected)."""
    for (status, code), n in Tally(outcomes).items():
        READINGS.labels(status=status, code=code).inc(n)


def count_chain_error(operation: str, kind: str) -> None:
    """Count one failed chain operation (``kind``: unavailable, revert or error)."""
    CHAIN_ERRORS.labels(operation=operation, kind=kind).inc()


def observe_anchored(sealed_at: datetime, anchored_at: datetime, count: int) -> None:
    """A batch sealed at ``sealed_at`` (naive UTC, as stored) was included at ``anchored_at``."""
    ANCHOR_LATENCY.observe(max(0.0, (anchored_at - sealed_at).total_seconds()))
    ANCHORED_READINGS.inc(count)


class BacklogCollector:
    """What is waiting to be anchored, read from the database at each scrape.

    Three indexed lookups: unbatched readings (``ix_readings_unbatched``), the batches not yet
    anchored (``batches.status``), and the oldest waiting reading (the first by
    ``(batch_index, pk)``).
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("pledgeledger_database_up", "1 if the backlog gauges could be read from the database, else 0")
        try:
            readings, batches, oldest = self._read()
        except SQLAlchemyError as exc:
            log.warning("metrics: cannot read the anchoring backlog: %s", exc.__class__.__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily("pledgeledger_backlog_readings", "Readings not yet in a batch anchored on chain", value=readings)
        by_status = GaugeMetricFamily(
            "pledgeledger_backlog_batches", "Batches sealed or submitted, not yet anchored", labels=["status"]
        )
        for status in ("sealed", "submitted"):  # an "included" batch is anchored: its proofs are served
            by_status.add_metric([status], batches.get(status, 0))
        yield by_status
        yield GaugeMetricFamily(
            "pledgeledger_backlog_oldest_seconds",
            "Age of the oldest reading not yet in a batch anchored on chain (0 when none waits)",
            value=oldest,
        )

    def _read(self) -> tuple[int, dict[str, int], float]:
        with self.db.session() as session:
            unbatched = session.scalar(select(func.count()).select_from(Reading).where(Reading.batch_index.is_(None))) or 0
            rows = session.execute(
                select(Batch.status, func.count(), func.coalesce(func.sum(Batch.count), 0), func.min(Batch.index))
                .where(Batch.status.not_in(ANCHORED_STATES))
                .group_by(Batch.status)
            ).all()
            batches = {status: n for status, n, _, _ in rows}
            in_batches = sum(int(readings) for _, _, readings, _ in rows)
            first_batch = min((first for *_, first in rows), default=None)
            # the oldest waiting reading: the first of the oldest unanchored batch, else the first unbatched
            where = Reading.batch_index == first_batch if first_batch is not None else Reading.batch_index.is_(None)
            received = session.scalar(select(Reading.received_at).where(where).order_by(Reading.pk).limit(1))
        age = (datetime.now(timezone.utc) - utc(received)).total_seconds() if received is not None else 0.0
        return unbatched + in_batches, batches, max(0.0, age)


class _Registry:
    """Collects the process-wide registry (this process's metrics and its process_* collectors)."""

    def collect(self) -> Iterator[Metric]:
        return REGISTRY.collect()


def exposition(db: Database) -> bytes:
    """The Prometheus text exposition: every process's metrics (see the module doc) and the backlog."""
    registry = CollectorRegistry(auto_describe=False)
    if MULTIPROCESS:
        MultiProcessCollector(registry)
    else:
        registry.register(_Registry())  # type: ignore[arg-type]
    registry.register(BacklogCollector(db))  # type: ignore[arg-type]
    return generate_latest(registry)
