"""The audit: everything the ledger stored, recomputed, and compared with the chain.

An auditor trusts neither the database nor this service, only the chain:

- **readings**: every stored envelope is parsed again, its digest recomputed (it must be the
  reading's id), its stored columns compared with what the device signed, and its signature
  verified with the device key the database holds for the reading's time, which must also be
  the key ``DeviceRegistry`` records on chain for that time; the proof stored for it must lead
  from its leaf (its salt and recomputed digest) to its batch's root;
- **batches**: every root is recomputed from its readings' salts and digests and compared
  with the stored root and with ``rootOf(index)`` on chain;
- **checkpoints**: checkpoints ``0 .. size-1`` on chain and the stored batches must match one
  to one (a checkpoint no batch explains, or a batch recorded as anchored that the chain does
  not have, is a finding), and each checkpoint must link to the one before
  (:func:`check_checkpoint_link`);
- **devices**: each device's stored readings are walked in order: sequence gaps are listed
  (allowed: secure-element counters skip), and every broken ``prev`` link must be one that was
  recorded when the reading arrived; a link broken in storage but not at ingest means a
  reading was deleted, inserted or altered since. The key history in the database must be the
  one ``keysOf`` returns on chain.

Readings are streamed in chunks, ordered by batch and then by insertion, so memory holds one
batch's leaves and a little state per device, whatever the number of readings. (Per device,
insertion order is sequence order: ingest serialises a device's readings under a row lock, and
sealing takes the oldest readings first.)

The chain side reads only the anchor's size (``head()``), ``rootOf(i)`` and the
``Checkpointed`` event of each checkpoint (``find_checkpoint(i)``), plus ``keysOf`` and
``isRevoked`` of each device.

Finding kinds (``error`` unless marked): ``reading_unparseable``, ``digest_mismatch``,
``column_mismatch``, ``salt_invalid``, ``unknown_device`` (the reading's device is not stored),
``key_not_valid`` (no stored key at the reading's time),
``key_mismatch`` (stored against another key), ``signature_invalid``, ``key_not_on_chain``,
``proof_invalid``, ``sequence_order``, ``link_unrecorded``, ``gap_healed``, ``batch_count_mismatch``,
``batch_root_mismatch``, ``batch_missing``, ``chain_root_mismatch``, ``anchor_contract_mismatch``,
``checkpoint_missing``, ``checkpoint_extra``, ``checkpoint_event_missing``,
``checkpoint_link_broken``, ``anchor_tx_mismatch`` (warning: re-anchored after a reorg),
``device_head_mismatch``, ``key_history_mismatch``, ``revocation_mismatch``.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from eth_account import Account
from eth_utils import to_checksum_address
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session
from web3 import Web3

from attestation.bundle import OnChainKey, check_device_key, key_valid_at
from attestation.devices import DEVICE_ID
from attestation.encoding import to_hex
from attestation.errors import AttestationError
from attestation.merkle import StandardTree, leaf_hash, process_proof
from attestation.readings import SignedReading, parse_reading
from ledger.chain.backends import read_deployment
from ledger.chain.base import ANCHOR, OPEN_UNTIL, REGISTRY, AnchorReceipt, ChainError, Deployment, DeviceKey
from ledger.chain.client import ChainClient, ChainReader
from ledger.devices import describe_device, device_gaps
from ledger.errors import NotFound
from ledger.proofs import split_proof
from ledger.store.db import Database
from ledger.store.models import ANCHORED_STATES, Batch, Device, DeviceGap, DeviceKeyRecord, Reading, naive_utc, utc

__all__ = ["AuditChain", "AuditReport", "Finding", "audit_device", "chain_form", "check_checkpoint_link", "open_audit_chain", "run_audit"]

Severity = Literal["error", "warning"]
#: ``progress(done, total)``: readings checked so far, of how many.
Progress = Callable[[int, int], None]
#: Sequence gaps and recorded gaps listed per device (all are counted).
MAX_LISTED = 100

_READING_COLUMNS = (
    Reading.pk, Reading.id, Reading.device_id, Reading.key_id, Reading.seq, Reading.ts, Reading.kind,
    Reading.lot, Reading.envelope, Reading.salt, Reading.prev_mismatch, Reading.batch_index, Reading.proof,
)


class AuditChain(Protocol):
    """What the audit reads from the chain (:class:`ledger.chain.client.ChainClient` has it all)."""

    @property
    def chain_id(self) -> int: ...
    @property
    def anchor_address(self) -> str: ...
    def head(self) -> tuple[int, bytes]: ...
    def root_of(self, index: int) -> bytes: ...
    def find_checkpoint(self, index: int) -> AnchorReceipt | None: ...
    def device_keys(self, device_id: str) -> list[DeviceKey]: ...
    def is_revoked(self, device_id: str) -> bool: ...


@dataclass(frozen=True)
class Finding:
    kind: str
    message: str
    severity: Severity = "error"
    batch: int | None = None
    reading: str | None = None
    device: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class AuditReport:
    chain_id: int
    contract: str
    checkpoints: int  # the anchor's size when the audit began
    max_findings: int = 1000
    counts: Counter[str] = field(default_factory=Counter)  # batches, readings, pending_*, devices
    findings: list[Finding] = field(default_factory=list)  # the first max_findings
    by_kind: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    warnings: int = 0
    devices: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def add(self, finding: Finding) -> None:
        self.by_kind[finding.kind] += 1
        if finding.severity == "error":
            self.errors += 1
        else:
            self.warnings += 1
        if len(self.findings) < self.max_findings:
            self.findings.append(finding)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "errors": self.errors,
            "warnings": self.warnings,
            "chain": {"id": self.chain_id, "contract": self.contract, "checkpoints": self.checkpoints},
            "counts": {k: self.counts[k] for k in ("batches", "readings", "pending_batches", "pending_readings", "devices")},
            "findings_by_kind": dict(sorted(self.by_kind.items())),
            "findings": [f.as_dict() for f in self.findings],
            "findings_truncated": self.errors + self.warnings > len(self.findings),
            "devices": self.devices,
        }


# --- the checkpoint link: the one place that knows how ReadingAnchor chains checkpoints ----------

def check_checkpoint_link(previous: AnchorReceipt | None, current: AnchorReceipt) -> str | None:
    """Why checkpoint ``current`` does not extend ``previous`` (``None`` for checkpoint 0), or ``None``.

    ReadingAnchor accepts checkpoint ``i`` only while ``i - 1`` exists and ``i`` does not, and
    never replaces a root (see ``IReadingAnchor``); so on an honest chain checkpoint ``i`` was
    mined no earlier than ``i - 1``, and its transaction names the root ``rootOf(i)`` returns
    (checked by the caller). Adapt this function, and only it, when the contract's link changes.
    """
    expected_index = 0 if previous is None else previous.index + 1
    if current.index != expected_index:
        return f"checkpoint {current.index} does not extend {'the empty chain' if previous is None else f'checkpoint {previous.index}'}"
    if previous is not None and current.block_number < previous.block_number:
        return (
            f"checkpoint {current.index} was mined in block {current.block_number}, before checkpoint "
            f"{previous.index} (block {previous.block_number}): the contract cannot have accepted it on top"
        )
    return None


# --- per device state -----------------------------------------------------------------------------


@dataclass
class _Device:
    row: Device
    keys: dict[OnChainKey, DeviceKeyRecord]  # the stored history, in the chain's terms
    chain_keys: list[OnChainKey]
    readings: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    last_digest: str | None = None
    seq_gaps: list[dict[str, Any]] = field(default_factory=list)  # the first MAX_LISTED
    seq_gap_count: int = 0
    key_checks: dict[tuple[int, OnChainKey | None], str | None] = field(default_factory=dict)


def _seconds(moment: datetime | None) -> int:
    return OPEN_UNTIL if moment is None else math.floor(utc(moment).timestamp())


def chain_form(key: DeviceKeyRecord) -> OnChainKey:
    """A stored key as ``DeviceRegistry`` records it: Unix seconds (floor), an open end as ``OPEN_UNTIL``."""
    return OnChainKey(bytes.fromhex(key.fingerprint), key.alg, _seconds(key.valid_from), _seconds(key.valid_until))


def _key_json(key: OnChainKey) -> dict[str, Any]:
    return {"fingerprint": to_hex(key.fingerprint), "alg": key.alg, "valid_from": key.valid_from,
            "valid_until": None if key.valid_until == OPEN_UNTIL else key.valid_until}


class _Auditor:
    def __init__(self, session: Session, chain: AuditChain, report: AuditReport) -> None:
        self.session = session
        self.chain = chain
        self.report = report
        self.devices: dict[str, _Device] = {}
        self._batch_root: tuple[int, bytes | None] | None = None  # the last batch root read
        self._previous_checkpoint: AnchorReceipt | None = None
        self._previous_known = True  # False after a checkpoint whose event could not be found

    def find(self, kind: str, message: str, **where: Any) -> None:
        self.report.add(Finding(kind, message, **where))

    # -- devices -------------------------------------------------------------------------------

    def device(self, device_id: str) -> _Device | None:
        if device_id not in self.devices:
            row = self.session.get(Device, device_id)
            if row is None:
                return None
            chain_keys = [OnChainKey(k.fingerprint, k.alg, k.valid_from, k.valid_until) for k in self.chain.device_keys(device_id)]
            self.devices[device_id] = _Device(row, {chain_form(k): k for k in row.keys}, chain_keys)
        return self.devices[device_id]

    def finish_device(self, state: _Device) -> None:
        """Checks of a device once all its readings are walked, and its part of the report."""
        row, where = state.row, {"device": state.row.id}
        if (row.last_digest, row.last_seq) != (state.last_digest, state.last_seq):
            self.find("device_head_mismatch", f"device {row.id} records its last reading as {row.last_digest} (seq {row.last_seq}), "
                      f"the last stored one is {state.last_digest} (seq {state.last_seq}): a reading was deleted or inserted", **where)
        stored = list(state.keys)
        if stored != state.chain_keys:
            self.find("key_history_mismatch", f"device {row.id}: the stored key history {[_key_json(k) for k in stored]} "
                      f"is not keysOf on chain {[_key_json(k) for k in state.chain_keys]}", **where)
        revoked_on_chain = self.chain.is_revoked(row.id)
        if (row.revoked_at is not None) != revoked_on_chain:
            self.find("revocation_mismatch", f"device {row.id} is {'' if row.revoked_at else 'not '}revoked in the database "
                      f"but {'not ' if row.revoked_at else ''}on chain", **where)
        self.report.devices.append({
            "id": row.id,
            "readings": state.readings,
            "first_seq": state.first_seq,
            "last_seq": state.last_seq,
            "seq_gap_count": state.seq_gap_count,
            "seq_gaps": state.seq_gaps,
            "gap_count": self.session.scalar(select(func.count()).select_from(DeviceGap).where(DeviceGap.device_id == row.id)),
            "gaps": device_gaps(self.session, row, limit=MAX_LISTED),
            "keys": describe_device(row)["keys"],
            "chain_keys": [_key_json(k) for k in state.chain_keys],
            "revoked_on_chain": revoked_on_chain,
        })

    # -- readings ------------------------------------------------------------------------------

    def batch_root(self, index: int) -> bytes | None:
        """The stored root of batch ``index`` (readings come batch by batch: one is kept)."""
        if self._batch_root is None or self._batch_root[0] != index:
            self._batch_root = (index, self.session.scalar(select(Batch.root).where(Batch.index == index)))
        return self._batch_root[1]

    def reading(self, row: Any) -> tuple[bytes, bytes] | None:
        """Check one stored reading; its ``(salt, digest)`` for the batch root, if usable."""
        self.report.counts["readings"] += 1
        where = {"reading": row.id, "device": row.device_id, "batch": row.batch_index}
        try:
            reading = parse_reading(json.loads(row.envelope))
        except (ValueError, AttestationError) as exc:
            self.find("reading_unparseable", f"the stored envelope of reading {row.id} is no longer a valid reading: {exc}", **where)
            return None
        if reading.id != row.id:
            self.find("digest_mismatch", f"reading {row.id}: the stored envelope's digest is {reading.id}: the envelope was altered", **where)
        signed = {"device_id": reading.device, "seq": reading.seq, "ts": naive_utc(reading.ts), "kind": reading.kind, "lot": reading.lot}
        altered = [name for name, value in signed.items() if getattr(row, name) != value]
        if altered:
            self.find("column_mismatch", f"reading {row.id}: stored {', '.join(altered)} differ from what the device signed "
                      f"({', '.join(f'{n}={signed[n]!r}' for n in altered)})", **where)
        state = self.device(reading.device)
        if state is None:  # readings keep no foreign key to devices (ingestion checks it under the device lock)
            self.find("unknown_device", f"reading {row.id}: device {reading.device} is not in the database: the reading "
                      "was inserted without its device, or the device's row was deleted", **where)
        else:
            self.check_key(state, row, reading, where)
            self.walk(state, row, reading, where)
        if len(row.salt) != 32:
            self.find("salt_invalid", f"reading {row.id}: the stored salt is {len(row.salt)} bytes, not 32", **where)
            return None
        if row.batch_index is not None:
            root = self.batch_root(row.batch_index)
            if root is None or process_proof(leaf_hash(row.salt, reading.digest), split_proof(row.proof)) != root:
                self.find("proof_invalid", f"reading {row.id}: its stored proof does not lead from its leaf (stored salt, "
                          f"recomputed digest) to batch {row.batch_index}'s root: its salt, envelope or proof was altered", **where)
        return row.salt, reading.digest

    def check_key(self, state: _Device, row: Any, reading: SignedReading, where: dict[str, Any]) -> None:
        at = math.floor(reading.ts.timestamp())
        key = state.keys.get(key_valid_at(list(state.keys), at))  # type: ignore[arg-type]
        if key is None:
            self.find("key_not_valid", f"reading {row.id}: no stored key of device {reading.device} is valid at {reading.payload['ts']}", **where)
            return
        if key.id != row.key_id:
            self.find("key_mismatch", f"reading {row.id} is stored against key {row.key_id}, the key valid at its time is {key.id}", **where)
        try:
            reading.verify(key.public_key)
        except AttestationError as exc:
            self.find("signature_invalid", f"reading {row.id}: {exc.message}", **where)
        on_chain = key_valid_at(state.chain_keys, at)
        cache = (key.id, on_chain)
        if cache not in state.key_checks:
            try:
                check_device_key(on_chain, key.public_key, reading, at)
                state.key_checks[cache] = None
            except ValueError as exc:
                state.key_checks[cache] = str(exc)
        if state.key_checks[cache] is not None:
            self.find("key_not_on_chain", f"reading {row.id}: {state.key_checks[cache]}", **where)

    def walk(self, state: _Device, row: Any, reading: SignedReading, where: dict[str, Any]) -> None:
        """One step along the device's stored readings: sequence gaps and ``prev`` links."""
        if state.last_seq is not None:
            if reading.seq <= state.last_seq:
                self.find("sequence_order", f"reading {row.id} (seq {reading.seq}) is stored after seq {state.last_seq} of device {reading.device}", **where)
            elif reading.seq != state.last_seq + 1:
                state.seq_gap_count += 1
                if len(state.seq_gaps) < MAX_LISTED:
                    state.seq_gaps.append({"after": state.last_seq, "next": reading.seq, "reading": row.id})
        broken = reading.prev is not None and reading.prev != state.last_digest
        if broken and not row.prev_mismatch:
            predecessor = f"{state.last_digest} (seq {state.last_seq})" if state.last_digest else "none"
            self.find("link_unrecorded", f"reading {row.id} (seq {reading.seq}) names prev {reading.prev}, but the stored predecessor is "
                      f"{predecessor} and the link was intact at ingest: a reading was deleted, inserted or altered", **where)
        elif row.prev_mismatch and not broken:
            self.find("gap_healed", f"reading {row.id} (seq {reading.seq}) broke device {reading.device}'s chain at ingest, yet its "
                      "stored predecessor now matches its prev: a reading was inserted", **where)
        state.readings += 1
        state.first_seq = reading.seq if state.first_seq is None else state.first_seq
        state.last_seq, state.last_digest = reading.seq, row.id

    # -- batches and checkpoints ---------------------------------------------------------------

    def batch(self, batch: Any, values: list[tuple[bytes, bytes]], complete: bool, size: int) -> None:
        self.report.counts["batches"] += 1
        where = {"batch": batch.index}
        if len(values) != batch.count or not complete:
            self.find("batch_count_mismatch", f"batch {batch.index} was sealed with {batch.count} readings, {len(values)} usable ones "
                      "are stored: readings were deleted, inserted or damaged", **where)
        recomputed = StandardTree.of(values).root if values else None
        if recomputed != batch.root:
            self.find("batch_root_mismatch", f"batch {batch.index}: the root recomputed from its stored readings is "
                      f"{to_hex(recomputed) if recomputed else 'none'}, the stored root is {to_hex(batch.root)}", **where)
        if batch.contract and batch.contract.lower() != self.chain.anchor_address.lower():
            self.find("anchor_contract_mismatch", f"batch {batch.index} says it was anchored by {batch.contract}, the audited "
                      f"anchor is {self.chain.anchor_address}", **where)
        if batch.index >= size:
            if batch.status in ANCHORED_STATES:
                self.find("checkpoint_missing", f"batch {batch.index} is recorded as anchored (tx {batch.tx_hash}), but the chain "
                          f"has only {size} checkpoints", **where)
            else:
                self.report.counts["pending_batches"] += 1
            return
        on_chain = self.chain.root_of(batch.index)
        if on_chain != batch.root:
            self.find("chain_root_mismatch", f"batch {batch.index}: rootOf({batch.index}) on chain is {to_hex(on_chain)}, the stored "
                      f"root is {to_hex(batch.root)}", **where)
        receipt = self.checkpoint(batch.index, on_chain)
        if receipt is not None and batch.status in ANCHORED_STATES and batch.tx_hash and receipt.tx_hash.lower() != batch.tx_hash.lower():
            self.report.add(Finding("anchor_tx_mismatch", f"batch {batch.index} is recorded in tx {batch.tx_hash}, the chain's "
                                    f"checkpoint {batch.index} is in tx {receipt.tx_hash}", "warning", **where))

    def checkpoint(self, index: int, root: bytes) -> AnchorReceipt | None:
        """Visit checkpoint ``index`` (in order): its event, and its link to the one before."""
        receipt = self.chain.find_checkpoint(index)
        if receipt is None:
            self.find("checkpoint_event_missing", f"checkpoint {index} has no Checkpointed event: its link cannot be checked", batch=index)
        else:
            if receipt.root != root:
                self.find("checkpoint_link_broken", f"checkpoint {index}'s event names root {to_hex(receipt.root)}, rootOf says {to_hex(root)}", batch=index)
            problem = check_checkpoint_link(self._previous_checkpoint, receipt) if self._previous_known else None
            if problem:
                self.find("checkpoint_link_broken", problem, batch=index)
        self._previous_checkpoint, self._previous_known = receipt, receipt is not None
        return receipt

    def unexplained_checkpoints(self, start: int, stop: int, size: int) -> None:
        """Batches ``start .. stop-1`` are not stored: on chain that is an extra checkpoint."""
        for index in range(start, min(stop, size)):
            root = self.chain.root_of(index)
            receipt = self.checkpoint(index, root)
            tx = f" (tx {receipt.tx_hash})" if receipt else ""
            self.find("checkpoint_extra", f"checkpoint {index} on chain{tx} with root {to_hex(root)} matches no stored batch", batch=index)
        if max(start, size) < stop:
            self.find("batch_missing", f"batches {max(start, size)}..{stop - 1} are not stored, yet later batches are", batch=max(start, size))


# --- running it -------------------------------------------------------------------------------------

_BATCH_COLUMNS = (Batch.index, Batch.status, Batch.root, Batch.count, Batch.tx_hash, Batch.contract)


def _snapshot(session: Session) -> None:
    """One consistent, read-only view of the database for the whole audit."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))


def _stream(session: Session, statement: Any, chunk_size: int) -> Iterator[Any]:
    """Rows fetched ``chunk_size`` at a time (a server-side cursor on PostgreSQL)."""
    return iter(session.execute(statement.execution_options(yield_per=chunk_size)))


def run_audit(db: Database, chain: AuditChain, *, chunk_size: int = 2000, max_findings: int = 1000,
              progress: Progress | None = None) -> AuditReport:
    """Audit the whole ledger against ``chain``. The report counts every finding by kind and
    keeps the first ``max_findings``; ``progress(done, total)`` is called every chunk of readings."""
    size, _ = chain.head()  # read first: every checkpoint up to here was sealed before the snapshot below
    report = AuditReport(chain_id=chain.chain_id, contract=chain.anchor_address, checkpoints=size, max_findings=max_findings)
    with db.session() as session:
        _snapshot(session)
        auditor = _Auditor(session, chain, report)
        total = session.scalar(select(func.count()).select_from(Reading)) or 0
        done = 0

        def checked(row: Any) -> tuple[bytes, bytes] | None:
            nonlocal done
            value = auditor.reading(row)
            done += 1
            if progress and done % chunk_size == 0:
                progress(done, total)
            return value

        batched = select(*_READING_COLUMNS).where(Reading.batch_index.is_not(None)).order_by(Reading.batch_index, Reading.pk)
        readings = _stream(session, batched, chunk_size)
        row = next(readings, None)
        expected = 0
        for batch in _stream(session, select(*_BATCH_COLUMNS).order_by(Batch.index), chunk_size):
            auditor.unexplained_checkpoints(expected, batch.index, size)
            expected = batch.index + 1
            values, complete = [], True
            while row is not None and row.batch_index <= batch.index:  # (below: a batch that is not stored)
                value = checked(row)
                if value is not None and row.batch_index == batch.index:
                    values.append(value)
                complete = complete and value is not None
                row = next(readings, None)
            auditor.batch(batch, values, complete, size)
        auditor.unexplained_checkpoints(expected, size, size)
        unbatched = select(*_READING_COLUMNS).where(Reading.batch_index.is_(None)).order_by(Reading.pk)
        for row in itertools.chain([row] if row is not None else [], readings, _stream(session, unbatched, chunk_size)):
            checked(row)
            report.counts["pending_readings"] += row.batch_index is None
        for device_id in session.scalars(select(Device.id).order_by(Device.id).execution_options(yield_per=chunk_size)):
            auditor.finish_device(auditor.device(device_id))  # type: ignore[arg-type]
            report.counts["devices"] += 1
        if progress:
            progress(done, total)
    return report


def audit_device(db: Database, chain: AuditChain, device_id: str, *, chunk_size: int = 2000,
                 max_findings: int = 1000) -> AuditReport:
    """The device part of the audit for one device: its readings (digests, signatures, keys,
    stored proofs), sequence gaps, ``prev`` links and key history against the chain."""
    if not DEVICE_ID.fullmatch(device_id):  # an id no device can have (PostgreSQL would refuse a NUL in it)
        raise NotFound(f"no device {device_id}", code="device_not_found")
    report = AuditReport(chain_id=chain.chain_id, contract=chain.anchor_address, checkpoints=chain.head()[0], max_findings=max_findings)
    with db.session() as session:
        _snapshot(session)
        auditor = _Auditor(session, chain, report)
        state = auditor.device(device_id)
        if state is None:
            raise NotFound(f"no device {device_id}", code="device_not_found")
        for row in _stream(session, select(*_READING_COLUMNS).where(Reading.device_id == device_id).order_by(Reading.seq), chunk_size):
            auditor.reading(row)
            report.counts["pending_readings"] += row.batch_index is None
        auditor.finish_device(state)
        report.counts["devices"] = 1
    return report


def open_audit_chain(rpc_url: str, data_dir: Path, *, contract: str | None = None) -> ChainClient:
    """A client for auditing the anchor at ``contract`` through the node at ``rpc_url``.

    Without ``contract``, the deployment recorded in ``data_dir`` for the node's chain is used
    (the one the service anchors to). The client holds a throwaway key: the audit sends nothing.
    Raises :class:`ChainError` when the node or the contract cannot be read.
    """
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
    reader = ChainReader(w3)
    if contract is None:
        deployment = read_deployment(data_dir, reader.chain_id)
        if deployment is None:
            raise ChainError(f"no deployment of chain {reader.chain_id} is recorded in {data_dir}: pass the anchor's address")
    else:
        if not reader.has_code(contract):
            raise ChainError(f"no contract at {contract} on chain {reader.chain_id}")
        registry = reader.device_registry_of(contract)
        deployment = Deployment(reader.chain_id, {ANCHOR: to_checksum_address(contract), REGISTRY: registry})
    return ChainClient(w3, Account.create(), deployment)
