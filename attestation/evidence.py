"""The evidence package of a goods lot (``pledgeledger.evidence/1``) and its verifier.

A bank hands a court one zip file. Besides ``manifest.json`` it holds:

- ``lot.json``: the lot as the ledger records it (parties, the documents whose hashes are on chain);
- ``chain/events.json``: the lot's CollateralRegistry events, oldest first, each decoded and with its
  raw log; ``chain/transactions/<tx hash>.json``: each of their transactions with its receipt;
- ``actions/<n>-<action id>.json``: every action proposed on the lot (SPEC §8) with its EIP-712 typed
  data, the parties required, each party's signature, and what became of it;
- ``devices/<n>-<device id>.json``: each supervising device's keys (public key, fingerprint, validity);
- ``readings/batch-<index>.json``: for each anchored batch holding readings about the lot, those
  readings with one OpenZeppelin multiproof (``pledgeledger.multiproof/1``, :mod:`attestation.bundle`),
  each file also checkable on its own by ``pledgeledger verify``;
- ``timeline.json`` where the ledger has one: the lot's history as the API shows it (informative only).

``manifest.json`` names the lot, the chain and its three contracts, the block the package was made at,
what the package claims (the lot's state at that block; how many events, transactions, actions,
devices and readings), and the SHA-256 and size of every other file.

:func:`verify_evidence` checks a package against a chain it reads only through :class:`EvidenceChain`
(a verifying client handed fetch functions, not a store): nothing the chain can say is taken from the
package or the ledger. Each check is named (:data:`CHECKS`) and, when it fails, says what is wrong
and where. :func:`open_package` reads the zip from a file object.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from eth_utils import is_address, to_checksum_address

from attestation.bundle import (
    MULTIPROOF_FORMAT,
    AnchorQuery,
    ChainFacts,
    OnChainKey,
    VerificationReport,
    chain_queries,
    verify_any,
)
from attestation.collateral import (
    LotEvent,
    LotState,
    check_typed_data,
    decode_call,
    decode_lot_event,
    encode_call,
    keccak,
    recover_signer,
    replay,
)
from attestation.devices import key_fingerprint
from attestation.documents import document_hash, identifier_hash
from attestation.errors import AttestationError
from attestation.readings import parse_reading

__all__ = [
    "CHECKS",
    "EVIDENCE_FORMAT",
    "MANIFEST",
    "EvidenceChain",
    "PackageError",
    "action_path",
    "batch_path",
    "device_path",
    "file_entry",
    "normalise_log",
    "normalise_receipt",
    "normalise_transaction",
    "open_package",
    "transaction_path",
    "verify_evidence",
]

EVIDENCE_FORMAT = "pledgeledger.evidence/1"
MANIFEST = "manifest.json"
LOT_FILE = "lot.json"
EVENTS_FILE = "chain/events.json"
TIMELINE_FILE = "timeline.json"
COLLATERAL, ANCHOR, REGISTRY = "CollateralRegistry", "ReadingAnchor", "DeviceRegistry"
#: A file in a package is read only up to this size (a zip names its sizes; a bomb is refused unread).
MAX_FILE_BYTES = 1 << 30

#: The checks of a package, in the order they run and are reported.
CHECKS = (
    "files",  # every file has the SHA-256 and size the manifest lists; no file is unlisted
    "manifest",  # the manifest is well formed; the lot id hashes to the on-chain lot; counts match the files
    "chain",  # the node is the package's chain, and the block the package was made at is in its history
    "contracts",  # the three contracts exist there and belong together; everything names them
    "receipts",  # each event's transaction and receipt in the package is the node's, successful
    "events",  # each event is the log at its index in its transaction's receipt, at its block and time
    "events_complete",  # the package holds every event of the lot up to its block (eth_getLogs)
    "lot_state",  # the events imply the claimed state, and with any later events the chain's lotOf now
    "documents",  # the lot's and the actions' documents hash to what the chain and the typed data hold
    "action_typed_data",  # each action's typed data is a transition of this lot on this contract and chain
    "action_signatures",  # each signature recovers to its required signer; confirmed actions are complete
    "action_transactions",  # each confirmed action's transaction carried exactly its typed data and signatures
    "devices",  # each device's keys are DeviceRegistry's keysOf; they are the devices the lot was registered with
    "readings",  # every reading bundle verifies against the chain (signature, digest, proof, root, key)
)
#: A failure of one of these makes the rest meaningless (they would read another chain or nothing).
_GATES = {
    "manifest": "the manifest is unusable",
    "chain": "the node is not on the package's chain",
    "contracts": "the package's contracts are not these",
}
_FAILURES = (AttestationError, ValueError, TypeError, KeyError, IndexError, AttributeError)
_SHOWN = 3  # findings quoted in one check's message


class PackageError(AttestationError):
    code = "invalid_evidence"


# --- deterministic file names ------------------------------------------------------------------------------


def transaction_path(tx_hash: str) -> str:
    return f"chain/transactions/{tx_hash.lower()}.json"


def action_path(position: int, action_id: str) -> str:
    return f"actions/{position:04d}-{action_id}.json"


def device_path(position: int, device_id: str) -> str:
    """``devices/<n>-<id>.json``; characters that some file systems refuse (``:``) become ``_``."""
    return f"devices/{position:03d}-{re.sub(r'[^A-Za-z0-9._-]', '_', device_id)}.json"


def batch_path(index: int) -> str:
    return f"readings/batch-{index:010d}.json"


def file_entry(path: str, data: bytes) -> dict[str, Any]:
    """The manifest's entry for one file."""
    return {"path": path, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


# --- chain records in one JSON form -------------------------------------------------------------------------


def _quantity(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("a quantity is an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.startswith("0x"):
        return int(value, 16)
    raise TypeError(f"not a quantity: {value!r}")


def _data(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, str) and re.fullmatch(r"0x([0-9a-fA-F]{2})*", value):
        return value.lower()
    raise TypeError(f"not 0x hex data: {value!r}")


def _address(value: Any) -> str | None:
    return None if value is None else to_checksum_address(value)


def normalise_log(log: Mapping[str, Any]) -> dict[str, Any]:
    """A log as web3 or the JSON-RPC returns it, in the package's form (hex strings, integers)."""
    return {
        "address": _address(log["address"]),
        "topics": [_data(t) for t in log["topics"]],
        "data": _data(log["data"]),
        "logIndex": _quantity(log["logIndex"]),
        "blockNumber": _quantity(log["blockNumber"]),
        "blockHash": _data(log["blockHash"]),
        "transactionHash": _data(log["transactionHash"]),
    }


def normalise_receipt(receipt: Mapping[str, Any]) -> dict[str, Any]:
    """A transaction receipt in the package's form: the fields every node returns alike."""
    return {
        "transactionHash": _data(receipt["transactionHash"]),
        "blockHash": _data(receipt["blockHash"]),
        "blockNumber": _quantity(receipt["blockNumber"]),
        "transactionIndex": _quantity(receipt["transactionIndex"]),
        "from": _address(receipt["from"]),
        "to": _address(receipt.get("to")),
        "status": _quantity(receipt["status"]),
        "gasUsed": _quantity(receipt["gasUsed"]),
        "logs": [normalise_log(log) for log in receipt["logs"]],
    }


def normalise_transaction(tx: Mapping[str, Any]) -> dict[str, Any]:
    """A mined transaction in the package's form."""
    return {
        "hash": _data(tx["hash"]),
        "from": _address(tx["from"]),
        "to": _address(tx.get("to")),
        "nonce": _quantity(tx["nonce"]),
        "input": _data(tx["input"]),
        "blockNumber": _quantity(tx["blockNumber"]),
        "blockHash": _data(tx["blockHash"]),
    }


# --- what the verifier reads from the chain ---------------------------------------------------------------------


class EvidenceChain(Protocol):
    """The chain as :func:`verify_evidence` reads it. Each method reads the node the verifier trusts;
    a node that cannot be read raises (any exception but :class:`ValueError`), which aborts the
    verification rather than failing a check."""

    def chain_id(self) -> int: ...

    def block(self, number: int) -> tuple[str, int] | None:
        """``(hash, timestamp)`` of the block ``number`` now, ``None`` if there is none."""

    def has_code(self, address: str) -> bool: ...

    def device_registry_of(self, anchor: str) -> str:
        """``ReadingAnchor.deviceRegistry()``."""

    def transaction(self, tx_hash: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """``(transaction, receipt)``, normalised (:func:`normalise_transaction`, :func:`normalise_receipt`);
        ``None`` if the node has no such mined transaction."""

    def lot_logs(self, registry: str, lot: str, from_block: int) -> list[dict[str, Any]]:
        """Every log of ``registry`` whose first indexed topic is ``lot``, from ``from_block`` to the latest
        block, oldest first, normalised (:func:`normalise_log`)."""

    def lot_state(self, registry: str, lot: str) -> LotState:
        """``lotOf(lot)`` now."""

    def device_keys(self, registry: str, device: str) -> list[OnChainKey]:
        """``DeviceRegistry.keysOf(device)``, oldest first."""

    def bundle_facts(self, queries: Sequence[AnchorQuery]) -> list[ChainFacts]:
        """What :func:`attestation.bundle.verify_any` needs for each of a bundle's readings."""


# --- the package -------------------------------------------------------------------------------------------------


class _ZipFiles(Mapping[str, bytes]):
    def __init__(self, archive: zipfile.ZipFile) -> None:
        self._archive = archive
        self._names = [i.filename for i in archive.infolist() if not i.is_dir()]

    def __getitem__(self, name: str) -> bytes:
        try:
            info = self._archive.getinfo(name)
        except KeyError:
            raise KeyError(name) from None
        if info.file_size > MAX_FILE_BYTES:
            raise PackageError(f"{name} is {info.file_size} bytes, more than a package file may be")
        return self._archive.read(info)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def open_package(fileobj: IO[bytes]) -> Mapping[str, bytes]:
    """The files of a zipped package, read on demand from ``fileobj`` (which must stay open).

    Raises :class:`PackageError` if it is not a zip file."""
    try:
        return _ZipFiles(zipfile.ZipFile(fileobj))
    except (zipfile.BadZipFile, OSError) as exc:
        raise PackageError(f"not a zip file: {exc}") from None


def _json(files: Mapping[str, bytes], path: str) -> Any:
    try:
        return json.loads(files[path])
    except KeyError:
        raise PackageError(f"the package has no {path}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise PackageError(f"{path} is not JSON: {exc}") from None


def _findings(found: Sequence[str], what: str) -> None:
    """Raise one error quoting the first findings, if there are any."""
    if found:
        more = f"; and {len(found) - _SHOWN} more" if len(found) > _SHOWN else ""
        raise ValueError(f"{len(found)} {what}: " + "; ".join(found[:_SHOWN]) + more)


def _same_address(a: Any, b: Any) -> bool:
    return isinstance(a, str) and isinstance(b, str) and a.lower() == b.lower()


@dataclass
class _Event:
    """One entry of ``chain/events.json``, its log, and its decoding."""

    entry: dict[str, Any]
    key: tuple[str, int]  # (tx hash, log index)
    block: int
    decoded: LotEvent | None = None


@dataclass
class _Package:
    files: Mapping[str, bytes]
    chain: EvidenceChain
    manifest: dict[str, Any] = field(default_factory=dict)
    later: list[dict[str, Any]] = field(default_factory=list)  # lot logs on chain after the package's block
    _cache: dict[str, Any] = field(default_factory=dict)

    # what the manifest says

    @property
    def lot_id(self) -> str:
        return self.manifest["lot"]["id"]

    @property
    def chain_lot(self) -> str:
        return self.manifest["lot"]["chain_lot"].lower()

    @property
    def chain_id(self) -> int:
        return self.manifest["chain"]["chain_id"]

    def contract(self, name: str) -> str:
        return self.manifest["chain"]["contracts"][name]

    @property
    def head(self) -> dict[str, Any]:
        return self.manifest["chain"]["head"]

    def listed(self, prefix: str) -> list[str]:
        return sorted(f["path"] for f in self.manifest.get("files", []) if f["path"].startswith(prefix))

    def load(self, path: str) -> Any:
        """A file's JSON, parsed once; reading bundles (the bulk of a large package) are parsed each time
        they are read, so that one batch at a time is in memory."""
        if path.startswith("readings/"):
            return _json(self.files, path)
        if path not in self._cache:
            self._cache[path] = _json(self.files, path)
        return self._cache[path]

    # what the files say

    @property
    def events(self) -> list[_Event]:
        if "events" not in self._cache:
            raw = self.load(EVENTS_FILE)
            if not isinstance(raw, list):
                raise PackageError(f"{EVENTS_FILE} is not a list")
            self._cache["events"] = [
                _Event(e, (str(e["tx_hash"]).lower(), int(e["log_index"])), int(e["block_number"])) for e in raw
            ]
        return self._cache["events"]

    def decoded_events(self) -> list[LotEvent]:
        return [decode_lot_event(e.entry["topics"], e.entry["data"]) for e in self.events]

    @property
    def actions(self) -> list[tuple[str, dict[str, Any]]]:
        return [(path, self.load(path)) for path in self.listed("actions/")]

    @property
    def devices(self) -> list[tuple[str, dict[str, Any]]]:
        return [(path, self.load(path)) for path in self.listed("devices/")]


# --- the checks -------------------------------------------------------------------------------------------------


def _check_files(pkg: _Package) -> str:
    manifest = _json(pkg.files, MANIFEST)
    entries = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise PackageError("the manifest has no list of files")
    found, seen = [], set()
    for entry in entries:
        path = entry.get("path")
        if not isinstance(path, str) or path == MANIFEST or path.startswith("/") or ".." in path.split("/") or "\\" in path:
            found.append(f"{path!r} is not a file name a package may list")
            continue
        if path in seen:
            found.append(f"{path} is listed twice")
        seen.add(path)
        try:
            data = pkg.files[path]
        except KeyError:
            found.append(f"{path} is listed but not in the package")
            continue
        digest = hashlib.sha256(data).hexdigest()
        if not hmac.compare_digest(digest, str(entry.get("sha256", "")).lower()) or entry.get("size") != len(data):
            found.append(f"{path} has SHA-256 {digest} ({len(data)} bytes), the manifest lists {entry.get('sha256')} ({entry.get('size')} bytes)")
    found += [f"{name} is in the package but not in the manifest" for name in pkg.files if name != MANIFEST and name not in seen]
    _findings(found, "files differ from the manifest")
    return f"{len(entries)} files, each with the SHA-256 and size the manifest lists; no other file"


def _require(node: Any, path: str, kind: type | tuple[type, ...]) -> Any:
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise PackageError(f"the manifest has no {path}")
        node = node[part]
    if not isinstance(node, kind) or (isinstance(node, bool) and kind is not bool):
        raise PackageError(f"the manifest's {path} has the wrong type")
    return node


def _check_manifest(pkg: _Package) -> str:
    manifest = _json(pkg.files, MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != EVIDENCE_FORMAT:
        raise PackageError(f"the manifest's format is not {EVIDENCE_FORMAT}")
    lot_id = _require(manifest, "lot.id", str)
    chain_lot = _require(manifest, "lot.chain_lot", str)
    if chain_lot.lower() != "0x" + keccak(lot_id.encode()).hex():
        raise PackageError(f"lot.chain_lot {chain_lot} is not keccak256({lot_id!r})")
    _require(manifest, "chain.chain_id", int)
    for name in (COLLATERAL, ANCHOR, REGISTRY):
        if not is_address(_require(manifest, f"chain.contracts.{name}", str)):
            raise PackageError(f"chain.contracts.{name} is not an address")
    _require(manifest, "chain.from_block", int)
    _require(manifest, "chain.head.number", int)
    _require(manifest, "chain.head.hash", str)
    LotState.from_dict(_require(manifest, "claims.state", dict))
    pkg.manifest = manifest
    counts = {
        "events": len(pkg.events),
        "transactions": len(pkg.listed("chain/transactions/")),
        "actions": len(pkg.listed("actions/")),
        "devices": len(pkg.listed("devices/")),
        "reading_batches": len(pkg.listed("readings/")),
    }
    wrong = [f"claims.{k} is {manifest['claims'].get(k)}, the package holds {v}" for k, v in counts.items() if manifest["claims"].get(k) != v]
    _findings(wrong, "counts differ from the files")
    if LOT_FILE not in pkg.listed(LOT_FILE) or pkg.load(LOT_FILE).get("id") != lot_id:
        raise PackageError(f"{LOT_FILE} is missing or about another lot")
    return f"{EVIDENCE_FORMAT} of lot {lot_id} ({chain_lot}), made at block {pkg.head['number']} of chain {pkg.chain_id}"


def _check_chain(pkg: _Package) -> str:
    node = pkg.chain.chain_id()
    if node != pkg.chain_id:
        raise ValueError(f"the package is evidence on chain {pkg.chain_id}, the node is chain {node}")
    block = pkg.chain.block(pkg.head["number"])
    if block is None or block[0].lower() != str(pkg.head["hash"]).lower():
        now = "no such block" if block is None else f"block {block[0]}"
        raise ValueError(f"the package was made at block {pkg.head['number']} {pkg.head['hash']}; the node has {now} "
                         "(another chain with the same id, or a reorganisation since)")  # fmt: skip
    return f"chain {node}; block {pkg.head['number']} is {pkg.head['hash']} on the node"


def _check_contracts(pkg: _Package) -> str:
    found = [f"no contract at {name} {pkg.contract(name)}" for name in (COLLATERAL, ANCHOR, REGISTRY) if not pkg.chain.has_code(pkg.contract(name))]
    _findings(found, "contracts missing on chain")
    registry = pkg.chain.device_registry_of(pkg.contract(ANCHOR))
    if not _same_address(registry, pkg.contract(REGISTRY)):
        raise ValueError(f"ReadingAnchor {pkg.contract(ANCHOR)} uses DeviceRegistry {registry}, not {pkg.contract(REGISTRY)}")
    found = [f"event {e.key[0]}#{e.key[1]} is from {e.entry.get('address')}" for e in pkg.events if not _same_address(e.entry.get("address"), pkg.contract(COLLATERAL))]
    for path in pkg.listed("readings/"):
        anchor = pkg.load(path).get("anchor", {})
        if anchor.get("chain_id") != pkg.chain_id or not _same_address(anchor.get("contract"), pkg.contract(ANCHOR)):
            found.append(f"{path} is anchored in {anchor.get('contract')} on chain {anchor.get('chain_id')}")
    _findings(found, "records name other contracts than the manifest's")
    return f"{COLLATERAL} {pkg.contract(COLLATERAL)}, {ANCHOR} {pkg.contract(ANCHOR)} (its registry {registry}) all on chain"


def _check_receipts(pkg: _Package) -> str:
    found = []
    listed = pkg.listed("chain/transactions/")
    needed = {transaction_path(e.key[0]) for e in pkg.events}
    found += [f"{p} is missing (an event's transaction)" for p in sorted(needed - set(listed))]
    found += [f"{p} belongs to no event" for p in sorted(set(listed) - needed)]
    for path in sorted(needed & set(listed)):
        record = pkg.load(path)
        tx_hash = path.rsplit("/", 1)[1].removesuffix(".json")
        tx, receipt = normalise_transaction(record["transaction"]), normalise_receipt(record["receipt"])
        if tx["hash"] != tx_hash or receipt["transactionHash"] != tx_hash:
            found.append(f"{path} holds transaction {tx['hash']} with the receipt of {receipt['transactionHash']}")
            continue
        on_chain = pkg.chain.transaction(tx_hash)
        if on_chain is None:
            found.append(f"transaction {tx_hash} is not mined on the node")
            continue
        if on_chain[1] != receipt:
            found.append(f"the receipt of {tx_hash} differs from the node's ({_first_difference(receipt, on_chain[1])})")
        elif on_chain[0] != tx:
            found.append(f"transaction {tx_hash} differs from the node's ({_first_difference(tx, on_chain[0])})")
        elif receipt["status"] != 1:
            found.append(f"transaction {tx_hash} failed")
        elif not _same_address(tx["to"], pkg.contract(COLLATERAL)):
            found.append(f"transaction {tx_hash} was sent to {tx['to']}, not {COLLATERAL}")
    _findings(found, "transactions do not match the chain")
    return f"{len(needed)} transactions and receipts, each as the node has it, successful, sent to {COLLATERAL}"


def _first_difference(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> str:
    for key in sorted(set(ours) | set(theirs)):
        if ours.get(key) != theirs.get(key):
            return f"{key}: package {json.dumps(ours.get(key))[:80]}, chain {json.dumps(theirs.get(key))[:80]}"
    return "no field differs"  # pragma: no cover


def _check_events(pkg: _Package) -> str:
    found = []
    keys = [e.key for e in pkg.events]
    if len(set(keys)) != len(keys):
        found.append("an event is listed twice")
    if keys and sorted(pkg.events, key=lambda e: (e.block, e.key[1])) != pkg.events:
        found.append("the events are not in chain order")
    receipts: dict[str, dict[str, Any]] = {}
    times: dict[int, tuple[str, int] | None] = {}
    for event in pkg.events:
        where = f"event {event.entry.get('name')} in {event.key[0]}#{event.key[1]}"
        path = transaction_path(event.key[0])
        if path not in pkg.files:
            found.append(f"{where}: no receipt in the package")
            continue
        receipt = receipts.setdefault(path, normalise_receipt(pkg.load(path)["receipt"]))
        log = next((log for log in receipt["logs"] if log["logIndex"] == event.key[1]), None)
        entry = event.entry
        if log is None:
            found.append(f"{where}: the receipt has no log {event.key[1]}")
            continue
        claimed = {"address": _address(entry.get("address")), "topics": [str(t).lower() for t in entry.get("topics", [])],
                   "data": str(entry.get("data", "")).lower(), "blockNumber": event.block, "blockHash": str(entry.get("block_hash")).lower()}  # fmt: skip
        actual = {k: log[k] for k in claimed}
        if claimed != actual:
            found.append(f"{where}: not the receipt's log ({_first_difference(claimed, actual)})")
            continue
        if len(log["topics"]) < 2 or log["topics"][1] != pkg.chain_lot:
            found.append(f"{where}: is not about lot {pkg.chain_lot}")
            continue
        event.decoded = decode_lot_event(log["topics"], log["data"])
        if (event.decoded.name, event.decoded.args) != (entry.get("name"), entry.get("args")):
            found.append(f"{where}: decodes to {event.decoded.name} {event.decoded.args}, the package says {entry.get('name')} {entry.get('args')}")
        if event.block not in times:
            times[event.block] = pkg.chain.block(event.block)
        if times[event.block] is None or times[event.block][1] != entry.get("block_timestamp"):  # type: ignore[index]
            found.append(f"{where}: block {event.block} has time {times[event.block] and times[event.block][1]}, the package says {entry.get('block_timestamp')}")  # type: ignore[index]
    for path, receipt in receipts.items():
        listed = {e.key for e in pkg.events}
        for log in receipt["logs"]:
            if _same_address(log["address"], pkg.contract(COLLATERAL)) and log["topics"][1:2] == [pkg.chain_lot] and (log["transactionHash"], log["logIndex"]) not in listed:
                found.append(f"the receipt in {path} has a lot event (log {log['logIndex']}) the package does not list")
    _findings(found, "events do not match their receipts")
    names = Counter(e.entry.get("name") for e in pkg.events)
    return f"{len(pkg.events)} events, each the log at its index in its receipt, at its block and time: " + ", ".join(f"{n} {k}" for k, n in names.items())


def _check_events_complete(pkg: _Package) -> str:
    events = pkg.events
    from_block = min([pkg.manifest["chain"]["from_block"], *(e.block for e in events)])
    logs = pkg.chain.lot_logs(pkg.contract(COLLATERAL), pkg.chain_lot, from_block)
    upto = [log for log in logs if log["blockNumber"] <= pkg.head["number"]]
    pkg.later = [log for log in logs if log["blockNumber"] > pkg.head["number"]]
    on_chain = {(log["transactionHash"], log["logIndex"]): log for log in upto}
    listed = {e.key for e in events}
    found = [f"{_event_name(on_chain[k])} in {k[0]} (block {on_chain[k]['blockNumber']}) is on chain but not in the package" for k in sorted(set(on_chain) - listed, key=lambda k: on_chain[k]["blockNumber"])]
    found += [f"the package's event {k[0]}#{k[1]} is not a log of this lot on chain" for k in sorted(listed - set(on_chain))]
    _findings(found, f"events of the lot up to block {pkg.head['number']} differ from the chain's")
    later = f"; {len(pkg.later)} later event(s) on chain since" if pkg.later else "; none since"
    return f"all {len(upto)} events of lot {pkg.chain_lot} from block {from_block} to {pkg.head['number']} (eth_getLogs){later}"


def _event_name(log: Mapping[str, Any]) -> str:
    try:
        return decode_lot_event(log["topics"], log["data"]).name
    except ValueError:
        return "an unknown event"


def _describe(state: LotState) -> str:
    frozen = f" (from {state.frozen_from})" if state.status == "frozen" else ""
    return f"{state.status}{frozen}, {state.quantity} {state.unit}"


def _check_lot_state(pkg: _Package) -> str:
    at_head = replay(pkg.decoded_events())
    claimed = LotState.from_dict(pkg.manifest["claims"]["state"])
    if at_head != claimed:
        raise ValueError(f"the events imply {at_head.as_dict()}, the package claims {claimed.as_dict()}")
    later = [decode_lot_event(log["topics"], log["data"]) for log in pkg.later]
    expected = replay(later, at_head) if later else at_head
    now = pkg.chain.lot_state(pkg.contract(COLLATERAL), pkg.chain_lot)
    if now != expected:
        raise ValueError(f"lotOf on chain is {now.as_dict()}, the events imply {expected.as_dict()}")
    if not later:
        return f"{_describe(at_head)} at block {pkg.head['number']}, as claimed, and as lotOf says now"
    since = ", ".join(e.name for e in later)
    return f"{_describe(at_head)} at block {pkg.head['number']}, as claimed; {len(later)} later event(s) ({since}) make it {_describe(now)}, as lotOf says now"


def _document_problems(where: str, values: Mapping[str, Any]) -> list[str]:
    """``X`` with ``X_hash`` in ``values``: the document hashes to it (the registration number as an identifier)."""
    found = []
    for name, value in values.items():
        claimed = values.get(f"{name}_hash")
        if value is None or not isinstance(claimed, str):
            continue
        computed = "0x" + (identifier_hash(value) if name == "registration" else document_hash(value)).hex()
        if computed != claimed.lower():
            how = "keccak256(its UTF-8)" if name == "registration" else "keccak256(JCS(document))"
            found.append(f"{where}: {name} hashes to {computed} ({how}), not {name}_hash {claimed}")
    return found


def _check_documents(pkg: _Package) -> str:
    lot = pkg.load(LOT_FILE)
    if lot.get("registration") is not None and "registration_hash" not in lot:
        lot = {**lot, "registration_hash": "0x" + identifier_hash(lot["registration"]).hex()}
    found = _document_problems(LOT_FILE, lot)
    state = LotState.from_dict(pkg.manifest["claims"]["state"])
    pledged = [e for e in pkg.decoded_events() if e.name == "LotPledged"]
    on_chain: dict[str, str | None] = {}  # nothing of a lot not registered on chain yet
    if state.status != "none":
        on_chain.update(goods_hash=state.goods, assay_hash=state.assay if int(state.assay, 16) else None)
    if pledged:
        on_chain.update(terms_hash=pledged[-1].args["terms"], registration_hash=pledged[-1].args["registration"])
    for name, value in on_chain.items():
        if value is not None and str(lot.get(name)).lower() != value:
            found.append(f"{LOT_FILE}: {name} is {lot.get(name)}, on chain {value}")
    checked = 0
    for path, action in pkg.actions:
        params, message = action.get("params") or {}, action["typed_data"]["message"]
        found += _document_problems(path, params)
        for name in params:
            if f"{name}_hash" in params and name in message and str(message[name]).lower() != str(params[f"{name}_hash"]).lower():
                found.append(f"{path}: the signed {name} is {message[name]}, not the hash of the params' {name}")
            checked += f"{name}_hash" in params
    _findings(found, "documents do not hash to what was signed and recorded")
    named = [n.removesuffix("_hash") for n, v in on_chain.items() if v is not None]
    lot_part = f"the lot's {', '.join(named)} hash to what the chain holds" if named else "the lot is not on chain yet"
    return f"{lot_part}; {checked} documents in actions hash to what their parties signed"


def _for_actions(pkg: _Package, test: Callable[[str, dict[str, Any]], str | None], what: str, summary: str) -> str:
    found = []
    for path, action in pkg.actions:
        try:
            problem = test(path, action)
        except _FAILURES as exc:
            problem = str(getattr(exc, "message", None) or exc)
        if problem:
            found.append(f"{path}: {problem}")
    _findings(found, what)
    return summary.format(n=len(pkg.actions))


def _check_action_typed_data(pkg: _Package) -> str:
    def test(path: str, action: dict[str, Any]) -> str | None:
        if action.get("lot") != pkg.lot_id:
            return f"is about lot {action.get('lot')!r}"
        check_typed_data(action["typed_data"], chain_id=pkg.chain_id, contract=pkg.contract(COLLATERAL), lot=pkg.chain_lot)
        return None

    return _for_actions(pkg, test, "actions are not transitions of this lot on this contract",
                        f"{{n}} actions: each a lot transition in {COLLATERAL}'s EIP-712 domain on chain {pkg.chain_id}")  # fmt: skip


def _signatures(action: dict[str, Any]) -> list[dict[str, Any]]:
    """The action's signatures in signature order, each with its ``position`` among the required parties
    (the one whose signer it names; a signature naming no required signer gets none)."""
    signers = [str(p["signer"]).lower() for p in action["required"]]
    placed = []
    for s in action.get("signatures", []):
        signer = str(s.get("signer")).lower()
        placed.append({**s, "position": signers.index(signer) if signer in signers else None})
    return sorted(placed, key=lambda s: (s["position"] is None, s["position"] or 0))


def _check_action_signatures(pkg: _Package) -> str:
    total = 0

    def test(path: str, action: dict[str, Any]) -> str | None:
        nonlocal total
        required = action["required"]
        signatures = _signatures(action)
        positions = [s["position"] for s in signatures]
        if None in positions:
            return f"a signature names {signatures[-1]['signer']}, who is not a required signer"
        if len(set(positions)) != len(positions):
            return "a required party has signed twice"
        for s in signatures:
            party = required[s["position"]]
            signer = recover_signer(action["typed_data"], s["signature"])
            if not _same_address(signer, party["signer"]) or not _same_address(s["signer"], party["signer"]):
                return f"the {party['role']}'s signature (position {s['position']}) recovers to {signer}, not the required {party['signer']}"
        if action.get("status") in ("submitted", "confirmed") and len(signatures) != len(required):
            return f"{action['status']} with {len(signatures)} of {len(required)} signatures"
        total += len(signatures)
        return None

    summary = _for_actions(pkg, test, "actions have signatures that are not their parties'", "{n} actions")
    return f"{summary}: all {total} signatures recover to the required signers; every submitted action has all of them"


def _check_action_transactions(pkg: _Package) -> str:
    event_txs = {e.key[0] for e in pkg.events}
    confirmed: set[str] = set()

    def test(path: str, action: dict[str, Any]) -> str | None:
        if action.get("status") != "confirmed":
            return None
        tx_hash = str(action.get("tx_hash")).lower()
        if tx_hash not in event_txs:
            return f"confirmed in {tx_hash}, which emitted no event of the lot"
        tx = normalise_transaction(pkg.load(transaction_path(tx_hash))["transaction"])
        expected = "0x" + encode_call(action["typed_data"], [s["signature"] for s in _signatures(action)]).hex()
        if tx["input"] != expected:
            return f"transaction {tx_hash} did not carry this typed data and these signatures"
        if action.get("block_number") != tx["blockNumber"]:
            return f"says block {action.get('block_number')}, the transaction is in block {tx['blockNumber']}"
        confirmed.add(tx_hash)
        return None

    summary = _for_actions(pkg, test, "confirmed actions are not the chain's transactions", "{n} actions")
    outside = [_signed_outside(pkg, tx_hash) for tx_hash in sorted(event_txs - confirmed)]
    note = f"; {len(outside)} transaction(s) without a confirmed action in the package: " + "; ".join(outside) if outside else ""
    return f"{summary}: each of the {len(confirmed)} confirmed carried exactly its typed data and signatures on chain{note}"


def _signed_outside(pkg: _Package, tx_hash: str) -> str:
    """Who signed a transition the package has no confirmed action for, read from its calldata alone."""
    tx = normalise_transaction(pkg.load(transaction_path(tx_hash))["transaction"])
    try:
        typed, signatures = decode_call(bytes.fromhex(tx["input"][2:]), chain_id=pkg.chain_id, contract=pkg.contract(COLLATERAL))
        signers = ", ".join(recover_signer(typed, s) for s in signatures)
    except ValueError:
        return f"{tx_hash} (its calldata is no transition: sent through another contract)"
    return f"{tx_hash} {typed['primaryType']} signed by {signers}"


def _check_devices(pkg: _Package) -> str:
    found = []
    ids = []
    for path, device in pkg.devices:
        device_id = device["id"]
        ids.append(device_id)
        keys = device["keys"]
        for i, key in enumerate(keys):
            if "0x" + key_fingerprint(key["public_key"]).hex() != str(key["fingerprint"]).lower():
                found.append(f"{path}: key {i}'s fingerprint is not SHA-256 of its public key")
        claimed = [OnChainKey(bytes.fromhex(k["fingerprint"][2:]), k["alg"], k["valid_from"], k["valid_until"]) for k in keys]
        on_chain = pkg.chain.device_keys(pkg.contract(REGISTRY), device_id)
        if claimed != on_chain:
            found.append(f"{path}: keys {[_key_text(k) for k in claimed]} are not keysOf({device_id!r}) on chain {[_key_text(k) for k in on_chain]}")
    registered = next((e.decoded for e in pkg.events if e.decoded is not None and e.decoded.name == "LotRegistered"), None)
    if registered is None:
        registered = next((d for d in pkg.decoded_events() if d.name == "LotRegistered"), None)
    if registered is not None:
        hashes = {"0x" + keccak(i.encode()).hex() for i in ids}
        if hashes != set(registered.args["devices"]):
            found.append(f"the devices {sorted(ids)} are not the {len(registered.args['devices'])} the lot was registered with on chain")
    _findings(found, "device records differ from the chain")
    return f"{len(ids)} devices ({', '.join(ids)}): keys as DeviceRegistry.keysOf has them; the devices LotRegistered names"


def _key_text(key: OnChainKey) -> str:
    return f"{key.alg} 0x{key.fingerprint.hex()[:12]}… [{key.valid_from}, {key.valid_until})"


def _check_readings(pkg: _Package) -> str:
    found: list[str] = []
    seen: dict[str, str] = {}
    by_device: dict[str, list[tuple[int, str, str | None]]] = {}
    paths = pkg.listed("readings/")
    for path in paths:
        bundle = pkg.load(path)
        if not isinstance(bundle, dict) or bundle.get("format") != MULTIPROOF_FORMAT or bundle.get("lot") != pkg.lot_id:
            found.append(f"{path}: not a {MULTIPROOF_FORMAT} bundle of lot {pkg.lot_id}")
            continue
        try:
            facts = pkg.chain.bundle_facts(chain_queries(bundle))
        except AttestationError as exc:
            found.append(f"{path}: {exc.message}")
            continue
        report = verify_any(bundle, facts)
        if not report.ok:
            failed = "; ".join(f"{c.name}: {c.detail}" for c in report.checks if not c.ok)
            found.append(f"{path} (checkpoint {bundle['anchor'].get('index')}): {failed}")
            continue
        for entry in bundle["readings"]:
            # the bundle verified: each digest is its reading's; a JSON reading's payload is read as it stands
            digest = entry["digest"][2:].lower()
            payload = entry["reading"]["payload"] if "payload" in entry["reading"] else parse_reading(entry["reading"]).payload
            if digest in seen:
                found.append(f"reading {digest} is in {seen[digest]} and {path}")
            seen[digest] = path
            by_device.setdefault(payload["device"], []).append((payload["seq"], digest, payload.get("prev")))
    claimed = pkg.manifest["claims"].get("readings")
    if claimed != len(seen) and not found:
        found.append(f"the manifest claims {claimed} readings, the bundles hold {len(seen)}")
    _findings(found, "reading bundles fail")
    known = {device["id"] for _, device in pkg.devices}
    outside = sorted(set(by_device) - known)
    note = f"; from devices not registered with the lot: {', '.join(outside)}" if outside else ""
    return f"{len(seen)} readings in {len(paths)} anchored batches: every signature, digest, multiproof, anchored root and device key holds; {_links(by_device)}{note}"


def _links(by_device: Mapping[str, list[tuple[int, str, str | None]]]) -> str:
    """How each device's hash chain runs through the readings in the package (informative: readings of a
    device that are not about this lot, heartbeats say, sit in between and are not in the package)."""
    parts = []
    for device, readings in sorted(by_device.items()):
        readings.sort()
        breaks = sum(1 for (_, previous, _), (_, _, prev) in zip(readings, readings[1:]) if prev != previous)
        span = f"seq {readings[0][0]}..{readings[-1][0]}"
        parts.append(f"{device} {len(readings)} ({span}, " + ("hash chain unbroken)" if not breaks else f"{breaks} break(s) in the hash chain)"))
    return "by device: " + "; ".join(parts) if parts else "no readings"


_CHECK_FUNCTIONS: dict[str, Callable[[_Package], str]] = {
    "files": _check_files,
    "manifest": _check_manifest,
    "chain": _check_chain,
    "contracts": _check_contracts,
    "receipts": _check_receipts,
    "events": _check_events,
    "events_complete": _check_events_complete,
    "lot_state": _check_lot_state,
    "documents": _check_documents,
    "action_typed_data": _check_action_typed_data,
    "action_signatures": _check_action_signatures,
    "action_transactions": _check_action_transactions,
    "devices": _check_devices,
    "readings": _check_readings,
}


def verify_evidence(files: Mapping[str, bytes], chain: EvidenceChain) -> VerificationReport:
    """Check an unzipped evidence package against the chain. Never raises on bad input: every problem
    is a failed, named check. A node that cannot be read raises whatever ``chain`` raises."""
    pkg = _Package(files, chain)
    report = VerificationReport(expected=CHECKS)
    for name in CHECKS:
        if not report.run(name, _malformed_is_a_finding(_CHECK_FUNCTIONS[name], pkg)) and name in _GATES:
            return report.skip_rest(_GATES[name])
    return report


def _malformed_is_a_finding(check: Callable[[_Package], str], pkg: _Package) -> Callable[[], str]:
    """A record of the wrong shape (a list where an object belongs, a missing entry) fails the check
    that read it, as :class:`PackageError`, instead of escaping."""

    def run() -> str:
        try:
            return check(pkg)
        except (IndexError, AttributeError) as exc:
            raise PackageError(f"a record is malformed: {exc}") from None

    return run
