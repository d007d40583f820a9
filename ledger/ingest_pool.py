"""Ingestion on every core: ``POST /v1/readings`` batches handed, as the request's bytes, to a
pool of worker processes that decode, check and store them.

One Python process runs Python on one core at a time, and a batch of readings is mostly
Python-bound work around the signature checks (parsing, canonical form, sequencing, the
``COPY``). With ``PLEDGELEDGER_INGEST_PROCESSES=N`` (``pledgeledger serve --ingest-processes
N``) the service starts N worker processes; each has its own database connections and takes
whole batches, so two gateways posting at once keep two cores busy, and the process serving
HTTP only moves bytes. Nothing is decided differently: a worker runs exactly
:func:`ledger.ingest.ingest_batch`, and its answer is returned after its transaction commits.

Per-device rate limits are kept in each worker (like ``--workers`` and several instances, a
device can reach N times the rate; see :mod:`ledger.ratelimit`). A worker that dies (killed,
out of memory) breaks the pool: the request is answered 503 (send it again; a batch that was
stored after all comes back ``duplicate``) and a fresh pool is started.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import multiprocessing
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ledger import errors, ingest
from ledger.errors import Unavailable
from ledger.ratelimit import DeviceRateLimiter
from ledger.settings import Settings
from ledger.store.db import Database, database_unavailable, database_unavailable_error, first_line

__all__ = ["IngestPool"]

log = logging.getLogger(__name__)


class IngestPool:
    """``processes`` worker processes (spawned, so each is a fresh interpreter) taking batches."""

    def __init__(self, settings: Settings, processes: int) -> None:
        self.processes = processes
        self._settings = settings
        self._lock = threading.Lock()
        self._executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        s = self._settings
        executor = ProcessPoolExecutor(
            self.processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(s.database_url, s.max_future_skew_s, s.device_rate_per_s, s.device_burst, s.max_batch_request),
        )
        for _ in range(self.processes):  # start them now, not on the first batch
            executor.submit(_ready)
        return executor

    def ingest_batch(self, body: bytes) -> bytes:
        """What :func:`ledger.ingest.ingest_batch` answers for ``body`` (the results as JSON: this
        process only passes bytes on), computed in a worker."""
        executor = self._executor
        try:
            kind, value = executor.submit(_ingest_batch, body).result()
        except BrokenProcessPool:
            with self._lock:
                if self._executor is executor:
                    log.error("an ingestion worker process died; starting a new pool")
                    self._executor = self._start()
            raise Unavailable(
                "an ingestion worker stopped while handling this batch; send the same batch again "
                "(readings stored after all are answered duplicate)",
                code="ingest_worker_lost",
                retry_after=1,
            ) from None
        if kind == "ok":
            return value
        if kind == "database_unavailable":
            raise database_unavailable_error()
        name, code, message = value
        raise getattr(errors, name)(message, code=code)

    def pids(self) -> list[int]:
        """The worker processes' ids (for monitoring, and the tests that kill one)."""
        return list(self._executor._processes or {})

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


# -- in the worker processes -----------------------------------------------------------------

_worker: dict[str, Any] = {}


def _start_worker(db_url: str, max_future_skew_s: float, rate_per_s: float, burst: int, max_batch: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent shuts us down
    _worker.update(
        db=Database(db_url),
        max_future_skew_s=max_future_skew_s,
        limiter=DeviceRateLimiter(rate_per_s=rate_per_s, burst=burst),
        max_batch=max_batch,
    )
    tune_worker_process()


def tune_worker_process() -> None:
    """Set this process up to take batches as a worker does (the benchmark's profile uses it too)."""
    ingest.verify_in_threads(False)  # this process is one of N already: no GIL hand-offs per signature
    # A batch allocates tens of thousands of short-lived, acyclic objects (freed by reference
    # counting): collecting at every 700th allocation over the whole start-up heap costs a fifth
    # of a batch. Start-up objects are frozen out of collections; young ones are collected rarely.
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000)
    _keep_freed_heap()


#: glibc's mallopt parameters, and what a worker sets them to.
_MALLOPT = ((-1, 64 << 20), (-2, 4 << 20), (-3, 16 << 20))  # M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD


def _keep_freed_heap() -> None:
    """Keep up to 64 MB of freed heap instead of handing it back to the kernel at once.

    By default glibc trims the top of the heap on nearly every free in a batch's pattern (many
    buffers of about 1 KB, kept until the batch is stored), so the next allocation takes a
    fresh page fault: ``orjson.dumps`` of a payload cost 2.7 µs instead of 0.2 µs, about 5 µs
    per reading in all. Buffers up to 16 MB (a whole request body) come from the heap too.
    A C library without ``mallopt`` (musl, macOS) is left as it is.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    for param, value in _MALLOPT:
        mallopt(param, value)


def _ready() -> None:
    return None


def _ingest_batch(body: bytes) -> tuple[str, Any]:
    """``("ok", results as JSON)``, ``("error", (ledger.errors class name, code, message))`` or
    ``("database_unavailable", None)``: plain values, so nothing depends on pickling exception classes."""
    try:
        results = ingest.ingest_batch(
            _worker["db"], body, max_batch=_worker["max_batch"], max_future_skew_s=_worker["max_future_skew_s"],
            limiter=_worker["limiter"],
        )
    except errors.LedgerError as exc:
        return "error", (type(exc).__name__, exc.code, exc.message)
    except Exception as exc:
        if not database_unavailable(exc):
            raise
        log.warning("database unavailable: %s", first_line(exc))
        return "database_unavailable", None
    return "ok", results
