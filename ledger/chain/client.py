"""Reading and writing the pledgeledger contracts over any web3 provider.

:class:`ChainReader` needs nothing but a :class:`web3.Web3`: it is what a verifier with only an
RPC URL and the contract address from a proof bundle uses. :class:`ChainClient` adds the
service's relayer account and sends transactions the fast way (see ``TOOLCHAIN.md``):

- signed locally, with a nonce kept in memory (read once from ``eth_getTransactionCount``
  with ``pending``, guarded by a lock, read again when the node rejects a nonce);
- fees read once (EIP-1559 ``2 * baseFee + tip`` where blocks carry a base fee, legacy
  ``gasPrice`` otherwise; read again when the node says they are too low);
- a gas limit per kind of call, estimated once and padded, never below a generous floor;
- receipts polled every 10 ms instead of web3's default 100 ms.

Checkpoints are sent so that a caller can keep track of them across crashes: each is a
:class:`SignedTx` (hash, nonce, raw bytes, fees) handed to a ``record`` callback *before* it is
broadcast, and can later be looked up (:meth:`ChainClient.transaction_status`), sent again
(:meth:`ChainClient.rebroadcast`) or replaced with the same nonce and higher fees
(:meth:`ChainClient.replace_checkpoint`).

Every failure surfaces as :class:`ChainError`: :class:`ChainRevert` with the decoded custom
error (``ReadingAnchorAlreadyAnchored(index=7, root=0x..)``), :class:`ChainUnavailable` when
the node cannot be reached, :class:`NonceConsumed` when a transaction's nonce was used by
another one. Each failed public operation is
counted once in ``pledgeledger_chain_errors_total{operation, kind}`` (:mod:`ledger.metrics`),
under the method the caller called.
"""

from __future__ import annotations

import ast
import functools
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from functools import cache
from typing import Any, Literal, TypeVar

from eth_abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from eth_utils.exceptions import ValidationError as EthValidationError
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import (
    BlockNotFound,
    ContractLogicError,
    ProviderConnectionError,
    TimeExhausted,
    TransactionNotFound,
    Web3Exception,
    Web3RPCError,
)

from attestation.bundle import AnchorQuery, ChainFacts, OnChainKey, key_valid_at
from ledger.chain.artifacts import load_artifact
from ledger.chain.base import (
    ALG_CODES,
    ANCHOR,
    COLLATERAL,
    OPEN_UNTIL,
    REGISTRY,
    AnchorReceipt,
    ChainError,
    ChainRevert,
    ChainUnavailable,
    Deployment,
    DeviceKey,
    NonceConsumed,
    SignedTx,
)
from ledger.metrics import count_chain_error

try:  # only present with the embedded (py-evm) backend installed
    from eth_tester.exceptions import TransactionFailed as _TesterTransactionFailed
except ImportError:  # pragma: no cover

    class _TesterTransactionFailed(Exception):  # type: ignore[no-redef]
        pass


__all__ = ["ChainClient", "ChainReader", "CHECKPOINTED_TOPIC", "CHECKPOINT_SELECTOR", "decode_revert"]

#: topic0 of ``Checkpointed(uint256 indexed index)``.
CHECKPOINTED_TOPIC: bytes = keccak(text="Checkpointed(uint256)")
#: The selector of ``checkpoint(uint256 index, bytes32 root)``.
CHECKPOINT_SELECTOR: bytes = keccak(text="checkpoint(uint256,bytes32)")[:4]

#: Gas limits are never below these, whatever the node estimates (unused gas is not charged).
DEFAULT_GAS_FLOORS: dict[str, int] = {
    "checkpoint": 200_000,
    "register": 300_000,
    "rotate": 300_000,
    "revoke": 200_000,
}
SEND_ATTEMPTS = 4  # signing anew after the node refused a nonce or a fee
GAS_MARGIN = 1.5  # estimate * margin, for calls whose cost varies (string lengths, fresh slots)
MAX_FEE_BUMPS = 5  # replacements signed in a row while the node calls them underpriced
DEFAULT_TIP_WEI = 10**9  # used when the node cannot suggest a priority fee
#: CollateralRegistry: how long a change of its default admin waits (OpenZeppelin AccessControlDefaultAdminRules)
COLLATERAL_ADMIN_DELAY_S = 2 * 24 * 3600

_ALG_NAMES = {code: name for name, code in ALG_CODES.items()}
# Exceptions raised by web3, its providers (requests, sockets) and eth-tester for chain failures.
_NODE_EXCEPTIONS = (Web3Exception, OSError, EthValidationError, _TesterTransactionFailed)


# --- revert decoding -------------------------------------------------------------------------


@cache
def _error_table() -> dict[bytes, tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """Selector -> (error name, parameter names, parameter types) for every error we may see."""
    entries = [
        {"name": "Error", "inputs": [{"name": "message", "type": "string"}]},
        {"name": "Panic", "inputs": [{"name": "code", "type": "uint256"}]},
    ]
    for contract in (ANCHOR, REGISTRY, COLLATERAL):
        entries += [item for item in load_artifact(contract)["abi"] if item["type"] == "error"]
    table = {}
    for entry in entries:
        types = tuple(i["type"] for i in entry["inputs"])
        selector = keccak(text=f"{entry['name']}({','.join(types)})")[:4]
        table[selector] = (entry["name"], tuple(i["name"] for i in entry["inputs"]), types)
    return table


def decode_revert(data: bytes) -> tuple[str, dict[str, Any]] | None:
    """Decode revert data into ``(error name, {param: value})``; ``None`` if not ours or malformed."""
    entry = _error_table().get(bytes(data[:4]))
    if entry is None:
        return None
    name, names, types = entry
    try:
        values = abi_decode(list(types), bytes(data[4:]))
    except Exception:  # malformed payload: report it as unknown rather than fail
        return None
    return name, dict(zip(names, values))


def _format_value(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _format_error(name: str, params: dict[str, Any]) -> str:
    return f"{name}({', '.join(f'{k}={_format_value(v)}' for k, v in params.items())})"


def _revert_data(exc: BaseException) -> bytes | None:
    """Dig the raw revert data out of whatever web3 / eth-tester raised."""
    data: Any = None
    if isinstance(exc, ContractLogicError):
        data = exc.data.get("data") if isinstance(exc.data, dict) else exc.data
    elif isinstance(exc, Web3RPCError) and isinstance(exc.rpc_response, dict):
        error = exc.rpc_response.get("error") or {}
        data = error.get("data") if isinstance(error, dict) else None
    elif isinstance(exc, _TesterTransactionFailed) and exc.args:
        # eth-tester via web3: "execution reverted: b'\xa3\xd2KX...'" (a Python bytes repr)
        data = exc.args[0]
        if isinstance(data, str) and data.startswith("execution reverted: b"):
            try:
                data = ast.literal_eval(data.removeprefix("execution reverted: "))
            except (ValueError, SyntaxError):
                data = None
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    return data if isinstance(data, bytes) else None


def _node_message(exc: BaseException) -> str:
    if isinstance(exc, Web3RPCError) and isinstance(exc.rpc_response, dict):
        error = exc.rpc_response.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return str(exc) or type(exc).__name__


def _revert_error(what: str, data: bytes | None, *, fallback: str, tx_hash: str | None = None) -> ChainRevert:
    decoded = decode_revert(data) if data else None
    if decoded is not None:
        name, params = decoded
        message = f"{what} reverted: {_format_error(name, params)}"
        return ChainRevert(message, error=name, params=params, tx_hash=tx_hash)
    detail = f"unknown error data 0x{data.hex()}" if data else fallback
    return ChainRevert(f"{what} reverted: {detail}", tx_hash=tx_hash)


def _translate(exc: BaseException, what: str) -> ChainError:
    """Map an exception from web3 / requests / eth-tester to a :class:`ChainError`."""
    data = _revert_data(exc)
    reverted = isinstance(exc, (ContractLogicError, _TesterTransactionFailed)) or (
        data is not None and "revert" in _node_message(exc).lower()
    )
    if reverted:
        return _revert_error(what, data, fallback=_node_message(exc))
    if isinstance(exc, (OSError, ProviderConnectionError)):
        return ChainUnavailable(f"{what}: node unreachable ({type(exc).__name__}: {exc})")
    return ChainError(f"{what}: {_node_message(exc)}")


@contextmanager
def _chain_errors(what: str) -> Iterator[None]:
    """Re-raise chain failures inside the block as :class:`ChainError`."""
    try:
        yield
    except ChainError:
        raise
    except _NODE_EXCEPTIONS as exc:
        raise _translate(exc, what) from exc


_F = TypeVar("_F", bound=Callable[..., Any])
_depth = threading.local()


def _observed(method: _F) -> _F:
    """Count a :class:`ChainError` escaping ``method`` in the chain-error metric.

    Only the outermost observed call of a thread counts, under its own name: a failure is
    counted once, as the operation the caller asked for, and an inner failure the outer
    method handles (``chain_facts`` reading an unknown checkpoint) is not counted at all.
    """

    @functools.wraps(method)
    def observed(*args: Any, **kwargs: Any) -> Any:
        depth = getattr(_depth, "n", 0)
        _depth.n = depth + 1
        try:
            return method(*args, **kwargs)
        except ChainError as exc:
            if depth == 0:
                kind = "unavailable" if isinstance(exc, ChainUnavailable) else "revert" if isinstance(exc, ChainRevert) else "error"
                count_chain_error(method.__name__, kind)
            raise
        finally:
            _depth.n = depth

    return observed  # type: ignore[return-value]


def _is_nonce_error(exc: ChainError) -> bool:
    text = str(exc).lower()
    return "nonce" in text or "already known" in text or "replacement transaction underpriced" in text


def _is_nonce_too_low(exc: ChainError) -> bool:
    """A transaction with this nonce was mined already (geth, anvil, Nethermind; py-evm says
    "Invalid transaction nonce: Expected 13, but got 12")."""
    text = str(exc).lower()
    if "nonce too low" in text or "nonce is too low" in text or "oldnonce" in text:
        return True
    expected = re.search(r"invalid transaction nonce: expected (\d+), but got (\d+)", text)
    return expected is not None and int(expected.group(2)) < int(expected.group(1))


def _is_already_known(exc: ChainError) -> bool:
    """The node already holds this very transaction (geth, anvil, Nethermind, Besu wordings)."""
    text = str(exc).lower()
    return any(s in text for s in ("already known", "already imported", "known transaction", "alreadyknown"))


def _is_underpriced(exc: ChainError) -> bool:
    return "underpriced" in str(exc).lower()


def _bumped(fees: dict[str, int]) -> dict[str, int]:
    """Every fee field raised by at least 12.5% (rounded up, at least 1 wei): what nodes ask of a
    replacement (geth and Besu 10%, others up to 12.5%)."""
    return {name: max(value + 1, value + (value + 7) // 8) for name, value in fees.items()}


def _fees_of(signed: SignedTx) -> dict[str, int]:
    if signed.tip is None:
        return {"gasPrice": signed.fee_cap}
    return {"maxFeePerGas": signed.fee_cap, "maxPriorityFeePerGas": signed.tip}


def _is_fee_error(exc: ChainError) -> bool:
    text = str(exc).lower()
    return any(s in text for s in ("base fee", "underpriced", "fee cap", "gas price too low", "feecap"))


# --- argument checks ---------------------------------------------------------------------------


def _bytes32(value: bytes, name: str) -> bytes:
    value = bytes(value)
    if len(value) != 32:
        raise ValueError(f"{name} must be 32 bytes, got {len(value)}")
    return value


def _uint64(value: int, name: str) -> int:
    if not 0 <= value <= OPEN_UNTIL:
        raise ValueError(f"{name} must fit in uint64, got {value}")
    return value


def _alg_code(alg: str) -> int:
    try:
        return ALG_CODES[alg]
    except KeyError:
        raise ValueError(f"unknown algorithm {alg!r}; expected one of {sorted(ALG_CODES)}") from None


def _device_key(raw: Sequence[Any]) -> DeviceKey | None:
    fingerprint, alg, valid_from, valid_until = raw
    if alg == 0:  # keyAt's zero Key: no key at that time
        return None
    return DeviceKey(bytes(fingerprint), _ALG_NAMES.get(alg, str(alg)), int(valid_from), int(valid_until))


def _checkpoint_call(data: bytes) -> tuple[int, bytes] | None:
    """``(index, root)`` from the input of a ``checkpoint`` transaction; ``None`` for any other input."""
    data = bytes(data)
    if data[:4] != CHECKPOINT_SELECTOR or len(data) != 4 + 64:
        return None
    index, root = abi_decode(["uint256", "bytes32"], data[4:])
    return int(index), bytes(root)


# --- reading -----------------------------------------------------------------------------------


class ChainReader:
    """Read-only access to any deployment of the contracts; needs no key.

    Every method takes the contract address it reads, so one reader serves any bundle.
    """

    def __init__(self, w3: Web3) -> None:
        self.w3 = w3
        self._chain_id: int | None = None
        self._contracts: dict[tuple[str, str], Contract] = {}

    # generic

    @property
    def chain_id(self) -> int:
        """The node's chain id (read once)."""
        if self._chain_id is None:
            with _chain_errors("reading the chain id"):
                self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    @_observed
    def block_number(self) -> int:
        with _chain_errors("reading the block number"):
            return int(self.w3.eth.block_number)

    @_observed
    def block_timestamp(self, block_number: int) -> int:
        """Unix time of a block."""
        with _chain_errors(f"reading block {block_number}"):
            return int(self.w3.eth.get_block(block_number)["timestamp"])

    @_observed
    def has_code(self, address: str) -> bool:
        """True when a contract is deployed at ``address``."""
        with _chain_errors(f"reading the code at {address}"):
            return len(self.w3.eth.get_code(to_checksum_address(address))) > 0

    def contract(self, name: str, address: str) -> Contract:
        """A web3 contract object for contract ``name`` (artifact name) at ``address`` (cached)."""
        key = (name, address.lower())
        if key not in self._contracts:
            abi = load_artifact(name)["abi"]
            self._contracts[key] = self.w3.eth.contract(address=to_checksum_address(address), abi=abi)
        return self._contracts[key]

    def _call(self, what: str, function: Any) -> Any:
        with _chain_errors(what):
            return function.call()

    # ReadingAnchor

    @_observed
    def root_of(self, anchor: str, index: int) -> bytes:
        """``rootOf(index)``; raises :class:`ChainRevert` (``ReadingAnchorUnknownIndex``) if none."""
        fn = self.contract(ANCHOR, anchor).functions.rootOf(index)
        return bytes(self._call(f"rootOf({index})", fn))

    @_observed
    def head(self, anchor: str) -> tuple[int, bytes]:
        """``(number of checkpoints, root of the last one)``; the root is 32 zero bytes on an empty chain."""
        size, root = self._call("head()", self.contract(ANCHOR, anchor).functions.head())
        return int(size), bytes(root)

    def size(self, anchor: str) -> int:
        """The number of checkpoints, which is also the index the next one must have."""
        return int(self._call("size()", self.contract(ANCHOR, anchor).functions.size()))

    def writer_of(self, anchor: str) -> str:
        """The only account the anchor accepts checkpoints from (checksummed)."""
        return to_checksum_address(self._call("writer()", self.contract(ANCHOR, anchor).functions.writer()))

    @_observed
    def device_registry_of(self, anchor: str) -> str:
        """The DeviceRegistry address the anchor was deployed with (checksummed)."""
        fn = self.contract(ANCHOR, anchor).functions.deviceRegistry()
        return to_checksum_address(self._call("deviceRegistry()", fn))

    @_observed
    def verify_reading(self, anchor: str, index: int, salt: bytes, digest: bytes, proof: Sequence[bytes]) -> bool:
        """``verifyReading``: is ``(salt, digest)`` a leaf of checkpoint ``index``'s tree?"""
        fn = self.contract(ANCHOR, anchor).functions.verifyReading(
            index, _bytes32(salt, "salt"), _bytes32(digest, "digest"), [_bytes32(p, "proof node") for p in proof]
        )
        return bool(self._call(f"verifyReading({index})", fn))

    @_observed
    def find_checkpoint(self, anchor: str, index: int, *, from_block: int = 0) -> AnchorReceipt | None:
        """The transaction that anchored checkpoint ``index`` (found by its ``Checkpointed`` event), if any.

        Public RPC providers limit ``eth_getLogs`` ranges: pass the deployment block as ``from_block``.
        """
        params = {
            "address": to_checksum_address(anchor),
            "fromBlock": from_block,
            "toBlock": "latest",
            "topics": [Web3.to_hex(CHECKPOINTED_TOPIC), Web3.to_hex(index.to_bytes(32, "big"))],
        }
        with _chain_errors(f"reading the Checkpointed event of checkpoint {index}"):
            logs = self.w3.eth.get_logs(params)  # type: ignore[arg-type]
        return self.checkpoint_receipt(anchor, Web3.to_hex(logs[0]["transactionHash"])) if logs else None

    @_observed
    def get_logs(self, address: str, *, topics: Sequence[Any] = (), from_block: int = 0) -> list[Any]:
        """``eth_getLogs`` of ``address`` from ``from_block`` to the latest block (pass the deployment block:
        public RPC providers limit ranges)."""
        params: dict[str, Any] = {"address": to_checksum_address(address), "fromBlock": from_block, "toBlock": "latest"}
        if topics:
            params["topics"] = list(topics)
        with _chain_errors(f"reading the logs of {address}"):
            return list(self.w3.eth.get_logs(params))  # type: ignore[arg-type]

    def checkpoint_receipt(self, anchor: str, tx_hash: str) -> AnchorReceipt | None:
        """What a mined transaction anchored in ``anchor``: ``None`` if it is unknown or not mined yet.

        Raises :class:`ChainRevert` if it reverted (:meth:`ChainClient.checkpoint_receipt` also recovers
        the reason) and :class:`ChainError` if it emitted no ``Checkpointed`` event of ``anchor``.
        """
        with _chain_errors(f"reading the receipt of {tx_hash}"):
            try:
                receipt = self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            except TransactionNotFound:
                return None
        return self.checkpoint_of_receipt(anchor, receipt)

    def checkpoint_of_receipt(self, anchor: str, receipt: Any) -> AnchorReceipt:
        """The checkpoint a mined transaction's receipt shows (the root is read from its input)."""
        tx_hash = Web3.to_hex(receipt["transactionHash"])
        if receipt["status"] != 1:
            raise ChainRevert(f"checkpoint transaction {tx_hash} reverted", tx_hash=tx_hash)
        logged = [
            int.from_bytes(bytes(log["topics"][1]), "big")
            for log in receipt["logs"]
            if log["address"].lower() == anchor.lower() and log["topics"] and bytes(log["topics"][0]) == CHECKPOINTED_TOPIC
        ]
        if not logged:
            raise ChainError(f"transaction {tx_hash} emitted no Checkpointed event of {anchor}")
        index = logged[0]
        with _chain_errors(f"reading transaction {tx_hash}"):
            tx = self.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        call = _checkpoint_call(tx["input"])
        # A writer that is itself a contract (a multisig) calls the anchor from inside its transaction.
        root = call[1] if call is not None and call[0] == index else self.root_of(anchor, index)
        return AnchorReceipt(
            index=index,
            root=root,
            tx_hash=tx_hash,
            block_number=int(receipt["blockNumber"]),
            block_hash=Web3.to_hex(receipt["blockHash"]),
            gas_used=int(receipt["gasUsed"]),
        )

    # DeviceRegistry

    @_observed
    def key_at(self, registry: str, device_id: str, ts: int) -> DeviceKey | None:
        """The device's key valid at Unix time ``ts``, or ``None``."""
        fn = self.contract(REGISTRY, registry).functions.keyAt(device_id, _uint64(ts, "ts"))
        return _device_key(self._call(f"keyAt({device_id!r}, {ts})", fn))

    @_observed
    def device_keys(self, registry: str, device_id: str) -> list[DeviceKey]:
        """Every key the device has had, oldest first (empty for an unknown device)."""
        raw = self._call(f"keysOf({device_id!r})", self.contract(REGISTRY, registry).functions.keysOf(device_id))
        return [key for key in map(_device_key, raw) if key is not None]

    @_observed
    def is_revoked(self, registry: str, device_id: str) -> bool:
        fn = self.contract(REGISTRY, registry).functions.isRevoked(device_id)
        return bool(self._call(f"isRevoked({device_id!r})", fn))

    # for attestation.verify_bundle

    @_observed
    def chain_facts(self, query: AnchorQuery) -> ChainFacts:
        """Read what :func:`attestation.verify_bundle` needs for one bundle.

        On the wrong chain nothing else is read (the verifier reports the mismatch). Raises
        :class:`ChainError` if no contract exists at the bundle's address.
        """
        facts = self._checkpoint_facts(query)
        if facts.chain_id != query.chain_id:
            return facts
        key = self.key_at(self.device_registry_of(query.contract), query.device, query.timestamp)
        on_chain = None if key is None else OnChainKey(key.fingerprint, key.alg, key.valid_from, key.valid_until)
        return replace(facts, device_key=on_chain)

    def _checkpoint_facts(self, query: AnchorQuery) -> ChainFacts:
        """The checkpoint's facts (root, previous root, the anchoring transaction), no device key."""
        if self.chain_id != query.chain_id:
            return ChainFacts(chain_id=self.chain_id, contract=query.contract, root=None, device_key=None)
        if not self.has_code(query.contract):
            raise ChainError(f"no contract at {query.contract} on chain {self.chain_id}")
        return ChainFacts(
            chain_id=self.chain_id,
            contract=query.contract,
            root=self._root_or_none(query.contract, query.index),
            device_key=None,
            previous_root=self._root_or_none(query.contract, query.index - 1) if query.index > 0 else None,
            anchored=self._anchored_by(query.contract, query.tx_hash),
        )

    def _root_or_none(self, anchor: str, index: int) -> bytes | None:
        try:
            return self.root_of(anchor, index)
        except ChainRevert as exc:
            if exc.error != "ReadingAnchorUnknownIndex":
                raise
            return None

    def _anchored_by(self, anchor: str, tx_hash: str) -> tuple[int, bytes] | None:
        """(index, root) that transaction ``tx_hash`` checkpointed in ``anchor``; None if it did not."""
        try:
            receipt = self.checkpoint_receipt(anchor, tx_hash)
        except (ChainError, ValueError):
            return None
        return None if receipt is None else (receipt.index, receipt.root)

    @_observed
    def chain_facts_many(self, queries: Sequence[AnchorQuery]) -> list[ChainFacts]:
        """:meth:`chain_facts` for every reading of a bundle (``attestation.chain_queries``).

        Each checkpoint the queries name is read once (a proof or multiproof bundle names one, a
        production answer one per batch of its evidence); each device's key history is read once
        per registry with ``keysOf`` and resolved at each reading's time as ``keyAt`` resolves it.
        """
        checkpoints: dict[tuple[int, str, int, str], ChainFacts] = {}
        registries: dict[str, str] = {}
        histories: dict[tuple[str, str], list[OnChainKey]] = {}
        out = []
        for q in queries:
            where = (q.chain_id, q.contract.lower(), q.index, q.tx_hash.lower())
            if where not in checkpoints:
                checkpoints[where] = self._checkpoint_facts(q)
            facts = checkpoints[where]
            if facts.chain_id != q.chain_id:  # the wrong chain: nothing more is read
                out.append(facts)
                continue
            if facts.contract.lower() not in registries:
                registries[facts.contract.lower()] = self.device_registry_of(facts.contract)
            registry = registries[facts.contract.lower()]
            if (registry, q.device) not in histories:
                histories[registry, q.device] = [
                    OnChainKey(k.fingerprint, k.alg, k.valid_from, k.valid_until) for k in self.device_keys(registry, q.device)
                ]
            out.append(replace(facts, device_key=key_valid_at(histories[registry, q.device], q.timestamp)))
        return out


# --- writing -----------------------------------------------------------------------------------


class ChainClient:
    """The service's access to its own deployment: reads plus transactions from the relayer key.

    Thread-safe: sends are serialised by a lock (nonce order); waits for receipts are not.
    """

    def __init__(
        self,
        w3: Web3,
        account: LocalAccount,
        deployment: Deployment | None = None,
        *,
        receipt_timeout: float = 60.0,
        poll_latency: float = 0.01,
        tip_wei: int | None = None,
        gas_floors: dict[str, int] | None = None,
    ) -> None:
        """``tip_wei`` fixes the EIP-1559 priority fee (default: the node's suggestion, else 1 gwei)."""
        self.w3 = w3
        self.account = account
        self.deployment = deployment
        self.reader = ChainReader(w3)
        self.receipt_timeout = receipt_timeout
        self.poll_latency = poll_latency
        self._tip_wei = tip_wei
        self._gas_floors = {**DEFAULT_GAS_FLOORS, **(gas_floors or {})}
        self._gas_limits: dict[str, int] = {}
        self._fees: dict[str, int] | None = None
        self._nonce: int | None = None
        self._lock = threading.Lock()

    # basics

    @property
    def address(self) -> str:
        """The relayer's address."""
        return self.account.address

    @property
    def chain_id(self) -> int:
        return self.reader.chain_id

    @_observed
    def block_number(self) -> int:
        return self.reader.block_number()

    @_observed
    def has_code(self, address: str) -> bool:
        return self.reader.has_code(address)

    def _require_deployment(self) -> Deployment:
        if self.deployment is None:
            raise ChainError("no contracts deployed: call deploy() or ensure_deployment() first")
        return self.deployment

    @property
    def anchor_address(self) -> str:
        return self._require_deployment().contracts[ANCHOR]

    @property
    def registry_address(self) -> str:
        return self._require_deployment().contracts[REGISTRY]

    # transactions

    def resync_nonce(self) -> None:
        """Forget the local nonce; the next send reads it from the node (``pending``)."""
        with self._lock:
            self._nonce = None

    def _fee_fields(self) -> dict[str, int]:
        if self._fees is None:
            self._fees = self._node_fees()
        return self._fees

    def _node_fees(self) -> dict[str, int]:
        """Fees for a transaction now: EIP-1559 ``2 * baseFee + tip`` where blocks carry a base fee, else
        the node's gas price plus 25%."""
        with _chain_errors("reading fees"):
            base_fee = self.w3.eth.get_block("latest").get("baseFeePerGas")
            if base_fee is None:
                return {"gasPrice": self.w3.eth.gas_price * 5 // 4}
        tip = self._tip_wei if self._tip_wei is not None else self._suggested_tip()
        return {"maxFeePerGas": 2 * base_fee + tip, "maxPriorityFeePerGas": tip}

    def _suggested_tip(self) -> int:
        try:
            return int(self.w3.eth.max_priority_fee)
        except _NODE_EXCEPTIONS:
            return DEFAULT_TIP_WEI

    def _estimate(self, what: str, to: str | None, data: str) -> int:
        params: dict[str, Any] = {"from": self.address, "data": data}
        if to is not None:
            params["to"] = to
        with _chain_errors(what):
            return int(self.w3.eth.estimate_gas(params))  # type: ignore[arg-type]

    def _gas_limit(self, kind: str, to: str, data: str) -> int:
        """The gas limit for ``kind`` calls: estimated on first use, padded, at least the floor."""
        if kind not in self._gas_limits:
            estimate = self._estimate(kind, to, data)
            self._gas_limits[kind] = max(self._gas_floors.get(kind, 0), int(estimate * GAS_MARGIN))
        return self._gas_limits[kind]

    def _sign(self, to: str | None, data: str, gas: int, *, nonce: int, fees: dict[str, int]) -> SignedTx:
        tx: dict[str, Any] = {"chainId": self.chain_id, "nonce": nonce, "gas": gas, "value": 0, "data": data, **fees}
        if to is not None:
            tx["to"] = to
        signed = self.account.sign_transaction(tx)
        legacy = "gasPrice" in fees
        return SignedTx(
            tx_hash=Web3.to_hex(signed.hash),
            nonce=nonce,
            raw=bytes(signed.raw_transaction),
            fee_cap=fees["gasPrice"] if legacy else fees["maxFeePerGas"],
            tip=None if legacy else fees["maxPriorityFeePerGas"],
        )

    def _broadcast(self, what: str, raw: bytes) -> None:
        """Hand a signed transaction to the node; one the node already has counts as sent."""
        try:
            with _chain_errors(what):
                self.w3.eth.send_raw_transaction(raw)
        except ChainRevert:
            raise
        except ChainError as exc:
            if not _is_already_known(exc):
                raise

    def _send_new(
        self, what: str, to: str | None, data: str, gas: int, record: Callable[[SignedTx], None] | None = None
    ) -> SignedTx:
        """Sign with the local nonce and fees, ``record`` it, then broadcast; if the node objects to the
        nonce or the fees, read them again and sign anew (recorded again), up to ``SEND_ATTEMPTS``
        times: worker processes and instances share the relayer key, so another process may have
        taken the nonce meanwhile. Call with the lock held.

        ``record`` runs before the broadcast (write-ahead): if it raises, nothing was sent.
        """
        for attempt in range(1, SEND_ATTEMPTS + 1):
            if self._nonce is None:
                with _chain_errors(what):
                    self._nonce = int(self.w3.eth.get_transaction_count(self.address, "pending"))
            signed = self._sign(to, data, gas, nonce=self._nonce, fees=self._fee_fields())
            if record is not None:
                record(signed)
            try:
                self._broadcast(what, signed.raw)
            except ChainRevert:
                raise
            except ChainUnavailable:
                self._nonce = None  # the node may or may not have it: ask again next time
                raise
            except ChainError as exc:
                if attempt == SEND_ATTEMPTS:
                    raise
                if _is_nonce_error(exc):
                    self._nonce = None
                elif _is_fee_error(exc):
                    self._fees = None
                else:
                    raise
                continue
            self._nonce = signed.nonce + 1
            return signed
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, kind: str, to: str, data: str) -> SignedTx:
        with self._lock:
            return self._send_new(kind, to, data, self._gas_limit(kind, to, data))

    def rebroadcast(self, raw: bytes) -> bool:
        """Hand an already signed transaction to the node again (it was never sent before a crash, or a
        reorganisation or the node's pool dropped it); a node that still has it is fine.

        Returns ``False`` if the node refuses its fees now (below the base fee, underpriced): replace
        it. Raises :class:`NonceConsumed` if another transaction with its nonce was mined meanwhile.
        """
        try:
            self._broadcast("sending a transaction again", raw)
        except ChainRevert:
            raise
        except ChainError as exc:
            if _is_nonce_too_low(exc):
                raise NonceConsumed(str(exc)) from exc
            if _is_fee_error(exc):
                return False
            raise
        return True

    def transaction_status(self, tx_hash: str) -> Literal["mined", "pending", "unknown"]:
        """Whether the node has mined ``tx_hash``, holds it in its pool, or does not know it."""
        with _chain_errors(f"looking up {tx_hash}"):
            try:
                tx = self.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
            except TransactionNotFound:
                return "unknown"
        return "pending" if tx.get("blockNumber") is None else "mined"

    def account_nonces(self) -> tuple[int, int]:
        """``(mined, pending)``: the relayer's next nonce counting mined transactions, and counting the
        node's pool too."""
        with _chain_errors("reading the relayer's nonce"):
            mined = int(self.w3.eth.get_transaction_count(self.address, "latest"))
            pending = int(self.w3.eth.get_transaction_count(self.address, "pending"))
        return mined, pending

    def block_hash(self, number: int) -> str | None:
        """The hash of the chain's block ``number`` now, or ``None`` if there is no such block (yet)."""
        with _chain_errors(f"reading block {number}"):
            try:
                block = self.w3.eth.get_block(number)
            except BlockNotFound:
                return None
        return None if block is None else Web3.to_hex(block["hash"])

    def finalized_block(self) -> int | None:
        """The number of the node's ``finalized`` block, or ``None`` if the node has no such tag."""
        try:
            with _chain_errors("reading the finalized block"):
                block = self.w3.eth.get_block("finalized")
        except ChainUnavailable:
            raise
        except ChainError:
            return None
        return None if block is None else int(block["number"])

    def transact(self, what: str, to: str, data: str) -> Any:
        """Send ``data`` to ``to`` from the relayer, wait until mined, and return the receipt.

        Gas is estimated for this very call (padded by ``GAS_MARGIN``), so a call that would revert
        raises :class:`ChainRevert` with the decoded error before anything is sent; ``what`` names the
        call in errors. For calls whose cost varies with their arguments and that are rare enough to
        afford the extra ``eth_estimateGas`` (the collateral lifecycle).
        """
        return self._mined_or_raise(what, self.send_transaction(what, to, data).tx_hash)

    def send_transaction(
        self, what: str, to: str, data: str, *, record: Callable[[SignedTx], None] | None = None
    ) -> SignedTx:
        """The sending half of :meth:`transact`: estimate (a call that would revert raises
        :class:`ChainRevert` and sends nothing), sign, ``record(signed)`` (write-ahead: persist it there;
        if it raises, nothing is sent), broadcast. Does not wait; see :meth:`receipt`."""
        with self._lock:
            gas = int(self._estimate(what, to, data) * GAS_MARGIN)
            return self._send_new(what, to, data, gas, record)

    def receipt(self, what: str, tx_hash: str, *, timeout: float = 0) -> Any | None:
        """The receipt of a sent transaction, or ``None`` if not mined within ``timeout`` seconds (0: look
        once). Raises :class:`ChainRevert` with the decoded error if it reverted."""
        return self._mined(what, tx_hash, timeout)

    def _wait(self, tx_hash: str, timeout: float) -> Any | None:
        """The receipt, or ``None`` if not mined within ``timeout`` seconds (0: look once)."""
        with _chain_errors(f"waiting for {tx_hash}"):
            if timeout <= 0:
                try:
                    return self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
                except TransactionNotFound:
                    return None
            try:
                return self.w3.eth.wait_for_transaction_receipt(
                    tx_hash, timeout=timeout, poll_latency=self.poll_latency  # type: ignore[arg-type]
                )
            except TimeExhausted:
                return None

    def _mined(self, what: str, tx_hash: str, timeout: float | None = None) -> Any | None:
        """Wait for a receipt; raise :class:`ChainRevert` if the transaction failed."""
        receipt = self._wait(tx_hash, self.receipt_timeout if timeout is None else timeout)
        if receipt is not None and receipt["status"] != 1:
            raise self._explain_failure(what, tx_hash, receipt)
        return receipt

    def _mined_or_raise(self, what: str, tx_hash: str) -> Any:
        receipt = self._mined(what, tx_hash)
        if receipt is None:
            raise ChainError(f"{what}: transaction {tx_hash} not mined within {self.receipt_timeout} s")
        return receipt

    def _explain_failure(self, what: str, tx_hash: str, receipt: Any) -> ChainError:
        """Replay a failed transaction as a call to recover its revert reason."""
        with _chain_errors(f"reading failed transaction {tx_hash}"):
            tx = self.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        call: dict[str, Any] = {"from": tx["from"], "data": tx["input"], "gas": tx["gas"]}
        if tx.get("to"):
            call["to"] = tx["to"]
        block = int(receipt["blockNumber"])
        for block_id in (block - 1, "latest"):  # state before the block; latest if history is pruned
            try:
                self.w3.eth.call(call, block_identifier=block_id)  # type: ignore[arg-type]
            except _NODE_EXCEPTIONS as exc:
                error = _translate(exc, what)
                if isinstance(error, ChainRevert):
                    error.tx_hash = tx_hash
                    return error
                continue
            break
        if int(receipt["gasUsed"]) >= int(tx["gas"]):
            return ChainRevert(f"{what} ran out of gas ({tx['gas']}) in {tx_hash}", tx_hash=tx_hash)
        return ChainRevert(f"{what} reverted in {tx_hash} (reason not recoverable)", tx_hash=tx_hash)

    # deployment

    def deploy_contract(self, name: str, args: list[Any]) -> Any:
        """Deploy the shipped contract ``name`` with constructor ``args``; returns the receipt
        (``contractAddress``, ``blockNumber``). :meth:`deploy` uses it for the core contracts."""
        return self._deploy_contract(name, args)

    def _deploy_contract(self, name: str, args: list[Any]) -> Any:
        artifact = load_artifact(name)
        factory = self.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        data = factory.constructor(*args).data_in_transaction
        with self._lock:
            gas = int(self._estimate(f"deploying {name}", None, data) * 1.25) + 20_000
            tx_hash = self._send_new(f"deploying {name}", None, data, gas).tx_hash
        return self._mined_or_raise(f"deploying {name}", tx_hash)

    @_observed
    def deploy(self) -> Deployment:
        """Deploy DeviceRegistry, ReadingAnchor and CollateralRegistry.

        The relayer is the device registry's admin and registrar, the anchor's writer (fixed for the
        anchor's life: a new relayer key needs a new anchor), and CollateralRegistry's delayed default
        admin (:data:`COLLATERAL_ADMIN_DELAY_S`), registrar and supervision key (it signs the system's
        freezes and margin calls).

        Sets and returns :attr:`deployment`; recording it is the caller's job (see
        :func:`ledger.chain.backends.ensure_deployment`).
        """
        registry = self._deploy_contract(REGISTRY, [self.address, self.address])
        registry_address = to_checksum_address(registry["contractAddress"])
        anchor = self._deploy_contract(ANCHOR, [self.address, registry_address])
        collateral = self._deploy_contract(
            COLLATERAL, [COLLATERAL_ADMIN_DELAY_S, self.address, self.address, self.address]
        )
        self.deployment = Deployment(
            chain_id=self.chain_id,
            contracts={
                REGISTRY: registry_address,
                ANCHOR: to_checksum_address(anchor["contractAddress"]),
                COLLATERAL: to_checksum_address(collateral["contractAddress"]),
            },
            block_number=int(registry["blockNumber"]),
        )
        return self.deployment

    # ReadingAnchor

    @_observed
    def send_checkpoint(
        self, index: int, root: bytes, *, record: Callable[[SignedTx], None] | None = None
    ) -> SignedTx:
        """Send ``checkpoint(index, root)`` without waiting for it to be mined.

        ``index`` should be the anchor's :meth:`size` by the time the transaction runs (transactions
        of the relayer run in nonce order, so it may extend checkpoints still in the pool).
        ``record(signed)`` runs before the broadcast, with the nonce reserved: persist the
        transaction there, and a crash can never leave a sent checkpoint unknown (if ``record``
        raises, nothing is sent).
        """
        if index < 0:
            raise ValueError(f"index must be >= 0, got {index}")
        data = self._checkpoint_data(index, root)
        with self._lock:
            return self._send_new("checkpoint", self.anchor_address, data, self._checkpoint_gas(), record)

    def replace_checkpoint(
        self, index: int, root: bytes, previous: SignedTx, *, record: Callable[[SignedTx], None] | None = None
    ) -> SignedTx:
        """Send ``checkpoint(index, root)`` again with ``previous``'s nonce, to replace a transaction that is
        not being mined: every fee at least 12.5% above ``previous`` and no lower than the node's fees now
        (bumped again, up to :data:`MAX_FEE_BUMPS` times, while the node calls it underpriced).

        ``record`` as for :meth:`send_checkpoint`. Raises :class:`NonceConsumed` if a transaction with that
        nonce was mined meanwhile (``previous`` itself, perhaps: look at the chain).
        """
        data = self._checkpoint_data(index, root)
        with self._lock:
            gas = self._checkpoint_gas()
            now = self._node_fees()
            base = _fees_of(previous)
            if not previous.fee_cap or set(base) != set(now):  # fees unknown, or of another kind than now
                base = now
            fees = {name: max(value, now[name]) for name, value in _bumped(base).items()}
            for _ in range(MAX_FEE_BUMPS):
                signed = self._sign(self.anchor_address, data, gas, nonce=previous.nonce, fees=fees)
                if record is not None:
                    record(signed)
                try:
                    self._broadcast("replacing a checkpoint transaction", signed.raw)
                except ChainRevert:
                    raise
                except ChainError as exc:
                    if _is_nonce_too_low(exc):
                        raise NonceConsumed(str(exc)) from exc
                    if not _is_underpriced(exc):
                        raise
                    fees = _bumped(fees)
                    continue
                self._fees = None  # the fees read at start were too low: read them again for new sends
                return signed
        raise ChainError(f"replacing checkpoint {index}: still underpriced after {MAX_FEE_BUMPS} fee bumps")

    def _checkpoint_data(self, index: int, root: bytes) -> str:
        anchor = self.reader.contract(ANCHOR, self.anchor_address)
        return anchor.encode_abi("checkpoint", [index, _bytes32(root, "root")])

    def _checkpoint_gas(self) -> int:
        """The checkpoint gas limit, estimated once on a checkpoint valid now (the current size): the
        index being sent may extend checkpoints still in the pool, which an estimate would refuse."""
        if "checkpoint" not in self._gas_limits:
            data = self._checkpoint_data(self.size(), b"\x01" * 32)
            self._gas_limit("checkpoint", self.anchor_address, data)
        return self._gas_limits["checkpoint"]

    @_observed
    def checkpoint_receipt(self, tx_hash: str, *, timeout: float | None = None) -> AnchorReceipt | None:
        """The anchored checkpoint of a sent transaction, or ``None`` if it is not mined yet.

        Waits up to ``timeout`` seconds (default :attr:`receipt_timeout`; 0 looks once). Raises
        :class:`ChainRevert` if it reverted (e.g. ``ReadingAnchorAlreadyAnchored``).
        """
        receipt = self._mined("checkpoint", tx_hash, timeout)
        if receipt is None:
            return None
        return self.reader.checkpoint_of_receipt(self.anchor_address, receipt)

    @_observed
    def wait_checkpoint(self, tx_hash: str) -> AnchorReceipt:
        """Like :meth:`checkpoint_receipt`, but not being mined within the timeout is an error."""
        receipt = self.checkpoint_receipt(tx_hash)
        if receipt is None:
            raise ChainError(f"checkpoint: transaction {tx_hash} not mined within {self.receipt_timeout} s")
        return receipt

    @_observed
    def checkpoint(self, index: int, root: bytes) -> AnchorReceipt:
        """Anchor ``root`` as checkpoint ``index`` (the current size) and wait until it is mined."""
        return self.wait_checkpoint(self.send_checkpoint(index, root).tx_hash)

    @_observed
    def find_checkpoint(self, index: int) -> AnchorReceipt | None:
        """The transaction of checkpoint ``index`` (its ``Checkpointed`` event, searched from the deployment block)."""
        deployment = self._require_deployment()
        return self.reader.find_checkpoint(self.anchor_address, index, from_block=deployment.block_number)

    @_observed
    def head(self) -> tuple[int, bytes]:
        """``(number of checkpoints, root of the last one)``."""
        return self.reader.head(self.anchor_address)

    def size(self) -> int:
        """The number of checkpoints: the index the next checkpoint must have."""
        return self.reader.size(self.anchor_address)

    @_observed
    def root_of(self, index: int) -> bytes:
        return self.reader.root_of(self.anchor_address, index)

    # DeviceRegistry

    def _registry_tx(self, kind: str, function: str, args: list[Any]) -> str:
        registry = self.reader.contract(REGISTRY, self.registry_address)
        tx_hash = self._send(kind, registry.address, registry.encode_abi(function, args)).tx_hash
        self._mined_or_raise(f"{function}({args[0]!r})", tx_hash)
        return tx_hash

    @_observed
    def register_device(
        self, device_id: str, fingerprint: bytes, alg: str, valid_from: int, valid_until: int = OPEN_UNTIL
    ) -> str:
        """Record a device's first key; waits for the receipt and returns the transaction hash."""
        args = [device_id, _bytes32(fingerprint, "fingerprint"), _alg_code(alg), _uint64(valid_from, "valid_from")]
        return self._registry_tx("register", "register", [*args, _uint64(valid_until, "valid_until")])

    @_observed
    def rotate_device(
        self, device_id: str, fingerprint: bytes, alg: str, at: int, valid_until: int = OPEN_UNTIL
    ) -> str:
        """Close the current key at ``at`` and open ``fingerprint`` from then; returns the tx hash."""
        args = [device_id, _bytes32(fingerprint, "fingerprint"), _alg_code(alg), _uint64(at, "at")]
        return self._registry_tx("rotate", "rotate", [*args, _uint64(valid_until, "valid_until")])

    @_observed
    def revoke_device(self, device_id: str, at: int) -> str:
        """Close the current key at ``at`` and the device for good; returns the tx hash."""
        return self._registry_tx("revoke", "revoke", [device_id, _uint64(at, "at")])

    @_observed
    def device_keys(self, device_id: str) -> list[DeviceKey]:
        return self.reader.device_keys(self.registry_address, device_id)

    @_observed
    def key_at(self, device_id: str, ts: int) -> DeviceKey | None:
        return self.reader.key_at(self.registry_address, device_id, ts)

    @_observed
    def is_revoked(self, device_id: str) -> bool:
        return self.reader.is_revoked(self.registry_address, device_id)
