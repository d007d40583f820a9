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

Every failure surfaces as :class:`ChainError`: :class:`ChainRevert` with the decoded custom
error (``ReadingAnchorStaleHead(currentHead=0x.., claimedHead=0x..)``) or
:class:`ChainUnavailable` when the node cannot be reached.
"""

from __future__ import annotations

import ast
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any

from eth_abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from eth_utils.exceptions import ValidationError as EthValidationError
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import (
    ContractLogicError,
    ProviderConnectionError,
    TimeExhausted,
    TransactionNotFound,
    Web3Exception,
    Web3RPCError,
)

from attestation.bundle import AnchorQuery, ChainFacts, OnChainKey
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
)

try:  # only present with the embedded (py-evm) backend installed
    from eth_tester.exceptions import TransactionFailed as _TesterTransactionFailed
except ImportError:  # pragma: no cover

    class _TesterTransactionFailed(Exception):  # type: ignore[no-redef]
        pass


__all__ = ["ChainClient", "ChainReader", "CHECKPOINTED_TOPIC", "decode_revert"]

#: topic0 of ``Checkpointed(uint256 indexed index, bytes32 indexed root, uint64 count, bytes32 prevHead,
#: bytes32 head)``.
CHECKPOINTED_TOPIC: bytes = keccak(text="Checkpointed(uint256,bytes32,uint64,bytes32,bytes32)")

#: Gas limits are never below these, whatever the node estimates (unused gas is not charged).
DEFAULT_GAS_FLOORS: dict[str, int] = {
    "checkpoint": 200_000,
    "register": 300_000,
    "rotate": 300_000,
    "revoke": 200_000,
}
GAS_MARGIN = 1.5  # estimate * margin, for calls whose cost varies (string lengths, fresh slots)
DEFAULT_TIP_WEI = 10**9  # used when the node cannot suggest a priority fee

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


def _is_nonce_error(exc: ChainError) -> bool:
    text = str(exc).lower()
    return "nonce" in text or "already known" in text or "replacement transaction underpriced" in text


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


def _anchor_receipt(log: Any, tx_hash: str) -> AnchorReceipt:
    count, _prev_head, head = abi_decode(["uint64", "bytes32", "bytes32"], bytes(log["data"]))
    return AnchorReceipt(
        index=int.from_bytes(bytes(log["topics"][1]), "big"),
        root=bytes(log["topics"][2]),
        count=count,
        head=head,
        tx_hash=tx_hash,
        block_number=int(log["blockNumber"]),
    )


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

    def block_number(self) -> int:
        with _chain_errors("reading the block number"):
            return int(self.w3.eth.block_number)

    def block_timestamp(self, block_number: int) -> int:
        """Unix time of a block."""
        with _chain_errors(f"reading block {block_number}"):
            return int(self.w3.eth.get_block(block_number)["timestamp"])

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

    def root_of(self, anchor: str, index: int) -> bytes:
        """``rootOf(index)``; raises :class:`ChainRevert` (``ReadingAnchorUnknownIndex``) if none."""
        fn = self.contract(ANCHOR, anchor).functions.rootOf(index)
        return bytes(self._call(f"rootOf({index})", fn))

    def head(self, anchor: str) -> tuple[int, bytes]:
        """``(number of checkpoints, current head)``."""
        size, head = self._call("head()", self.contract(ANCHOR, anchor).functions.head())
        return int(size), bytes(head)

    def device_registry_of(self, anchor: str) -> str:
        """The DeviceRegistry address the anchor was deployed with (checksummed)."""
        fn = self.contract(ANCHOR, anchor).functions.deviceRegistry()
        return to_checksum_address(self._call("deviceRegistry()", fn))

    def verify_reading(self, anchor: str, index: int, salt: bytes, digest: bytes, proof: Sequence[bytes]) -> bool:
        """``verifyReading``: is ``(salt, digest)`` a leaf of checkpoint ``index``'s tree?"""
        fn = self.contract(ANCHOR, anchor).functions.verifyReading(
            index, _bytes32(salt, "salt"), _bytes32(digest, "digest"), [_bytes32(p, "proof node") for p in proof]
        )
        return bool(self._call(f"verifyReading({index})", fn))

    def find_checkpoint(self, anchor: str, index: int, *, from_block: int = 0) -> AnchorReceipt | None:
        """The ``Checkpointed`` event of checkpoint ``index`` (its transaction and block), if any.

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
        return _anchor_receipt(logs[0], Web3.to_hex(logs[0]["transactionHash"])) if logs else None

    # DeviceRegistry

    def key_at(self, registry: str, device_id: str, ts: int) -> DeviceKey | None:
        """The device's key valid at Unix time ``ts``, or ``None``."""
        fn = self.contract(REGISTRY, registry).functions.keyAt(device_id, _uint64(ts, "ts"))
        return _device_key(self._call(f"keyAt({device_id!r}, {ts})", fn))

    def device_keys(self, registry: str, device_id: str) -> list[DeviceKey]:
        """Every key the device has had, oldest first (empty for an unknown device)."""
        raw = self._call(f"keysOf({device_id!r})", self.contract(REGISTRY, registry).functions.keysOf(device_id))
        return [key for key in map(_device_key, raw) if key is not None]

    def is_revoked(self, registry: str, device_id: str) -> bool:
        fn = self.contract(REGISTRY, registry).functions.isRevoked(device_id)
        return bool(self._call(f"isRevoked({device_id!r})", fn))

    # for attestation.verify_bundle

    def chain_facts(self, query: AnchorQuery) -> ChainFacts:
        """Read what :func:`attestation.verify_bundle` needs for one bundle.

        On the wrong chain nothing else is read (the verifier reports the mismatch). Raises
        :class:`ChainError` if no contract exists at the bundle's address.
        """
        if self.chain_id != query.chain_id:
            return ChainFacts(chain_id=self.chain_id, contract=query.contract, root=None, device_key=None)
        if not self.has_code(query.contract):
            raise ChainError(f"no contract at {query.contract} on chain {self.chain_id}")
        try:
            root: bytes | None = self.root_of(query.contract, query.index)
        except ChainRevert as exc:
            if exc.error != "ReadingAnchorUnknownIndex":
                raise
            root = None
        registry = self.device_registry_of(query.contract)
        key = self.key_at(registry, query.device, query.timestamp)
        on_chain = None if key is None else OnChainKey(key.fingerprint, key.alg, key.valid_from, key.valid_until)
        return ChainFacts(chain_id=self.chain_id, contract=query.contract, root=root, device_key=on_chain)


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

    def block_number(self) -> int:
        return self.reader.block_number()

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
            with _chain_errors("reading fees"):
                base_fee = self.w3.eth.get_block("latest").get("baseFeePerGas")
                if base_fee is None:
                    self._fees = {"gasPrice": self.w3.eth.gas_price * 5 // 4}
                else:
                    tip = self._tip_wei if self._tip_wei is not None else self._suggested_tip()
                    self._fees = {"maxFeePerGas": 2 * base_fee + tip, "maxPriorityFeePerGas": tip}
        return self._fees

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

    def _send_raw(self, what: str, to: str | None, data: str, gas: int) -> tuple[str, int]:
        """Sign and send with the local nonce; if the node objects to the nonce or the fees,
        read them again and retry once. Call with the lock held."""
        try:
            return self._sign_and_send(what, to, data, gas)
        except ChainRevert:
            raise
        except ChainError as exc:
            if _is_nonce_error(exc):
                self._nonce = None
            elif _is_fee_error(exc):
                self._fees = None
            else:
                raise
        return self._sign_and_send(what, to, data, gas)

    def _sign_and_send(self, what: str, to: str | None, data: str, gas: int) -> tuple[str, int]:
        with _chain_errors(what):
            if self._nonce is None:
                self._nonce = int(self.w3.eth.get_transaction_count(self.address, "pending"))
            tx: dict[str, Any] = {
                "chainId": self.chain_id,
                "nonce": self._nonce,
                "gas": gas,
                "value": 0,
                "data": data,
                **self._fee_fields(),
            }
            if to is not None:
                tx["to"] = to
            signed = self.account.sign_transaction(tx)
            tx_hash = Web3.to_hex(self.w3.eth.send_raw_transaction(signed.raw_transaction))
        nonce = self._nonce
        self._nonce += 1
        return tx_hash, nonce

    def _send(self, kind: str, to: str, data: str) -> tuple[str, int]:
        with self._lock:
            return self._send_raw(kind, to, data, self._gas_limit(kind, to, data))

    def transact(self, what: str, to: str, data: str) -> Any:
        """Send ``data`` to ``to`` from the relayer, wait until mined, and return the receipt.

        Gas is estimated for this very call (padded by ``GAS_MARGIN``), so a call that would revert
        raises :class:`ChainRevert` with the decoded error before anything is sent; ``what`` names the
        call in errors. For calls whose cost varies with their arguments and that are rare enough to
        afford the extra ``eth_estimateGas`` (the collateral lifecycle).
        """
        with self._lock:
            gas = int(self._estimate(what, to, data) * GAS_MARGIN)
            tx_hash, _ = self._send_raw(what, to, data, gas)
        return self._mined_or_raise(what, tx_hash)

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
            tx_hash, _ = self._send_raw(f"deploying {name}", None, data, gas)
        return self._mined_or_raise(f"deploying {name}", tx_hash)

    def deploy(self) -> Deployment:
        """Deploy DeviceRegistry and ReadingAnchor, the relayer as admin, registrar and writer.

        Sets and returns :attr:`deployment`; recording it is the caller's job (see
        :func:`ledger.chain.backends.ensure_deployment`).
        """
        registry = self._deploy_contract(REGISTRY, [self.address, self.address])
        registry_address = to_checksum_address(registry["contractAddress"])
        anchor = self._deploy_contract(ANCHOR, [self.address, self.address, registry_address])
        self.deployment = Deployment(
            chain_id=self.chain_id,
            contracts={REGISTRY: registry_address, ANCHOR: to_checksum_address(anchor["contractAddress"])},
            block_number=int(registry["blockNumber"]),
        )
        return self.deployment

    # ReadingAnchor

    def send_checkpoint(self, prev_head: bytes, root: bytes, count: int) -> tuple[str, int]:
        """Send ``checkpoint(prevHead, root, count)`` without waiting; returns ``(tx_hash, nonce)``.

        The first call of a process estimates gas, so a stale head may already raise here.
        """
        anchor = self.reader.contract(ANCHOR, self.anchor_address)
        data = anchor.encode_abi(
            "checkpoint", [_bytes32(prev_head, "prev_head"), _bytes32(root, "root"), _uint64(count, "count")]
        )
        return self._send("checkpoint", anchor.address, data)

    def checkpoint_receipt(self, tx_hash: str, *, timeout: float | None = None) -> AnchorReceipt | None:
        """The anchored checkpoint of a sent transaction, or ``None`` if it is not mined yet.

        Waits up to ``timeout`` seconds (default :attr:`receipt_timeout`; 0 looks once). Raises
        :class:`ChainRevert` if it reverted (e.g. ``ReadingAnchorStaleHead``).
        """
        receipt = self._mined("checkpoint", tx_hash, timeout)
        if receipt is None:
            return None
        anchor = self.anchor_address.lower()
        for log in receipt["logs"]:
            topics = log["topics"]
            if log["address"].lower() == anchor and topics and bytes(topics[0]) == CHECKPOINTED_TOPIC:
                return _anchor_receipt(log, Web3.to_hex(receipt["transactionHash"]))
        raise ChainError(f"transaction {tx_hash} emitted no Checkpointed event of {self.anchor_address}")

    def wait_checkpoint(self, tx_hash: str) -> AnchorReceipt:
        """Like :meth:`checkpoint_receipt`, but not being mined within the timeout is an error."""
        receipt = self.checkpoint_receipt(tx_hash)
        if receipt is None:
            raise ChainError(f"checkpoint: transaction {tx_hash} not mined within {self.receipt_timeout} s")
        return receipt

    def checkpoint(self, prev_head: bytes, root: bytes, count: int) -> AnchorReceipt:
        """Anchor a batch root on top of ``prev_head`` and wait until it is mined."""
        tx_hash, _ = self.send_checkpoint(prev_head, root, count)
        return self.wait_checkpoint(tx_hash)

    def find_checkpoint(self, index: int) -> AnchorReceipt | None:
        """The ``Checkpointed`` event of checkpoint ``index`` (searched from the deployment block)."""
        deployment = self._require_deployment()
        return self.reader.find_checkpoint(self.anchor_address, index, from_block=deployment.block_number)

    def head(self) -> tuple[int, bytes]:
        """``(number of checkpoints, current head)``."""
        return self.reader.head(self.anchor_address)

    def root_of(self, index: int) -> bytes:
        return self.reader.root_of(self.anchor_address, index)

    # DeviceRegistry

    def _registry_tx(self, kind: str, function: str, args: list[Any]) -> str:
        registry = self.reader.contract(REGISTRY, self.registry_address)
        tx_hash, _ = self._send(kind, registry.address, registry.encode_abi(function, args))
        self._mined_or_raise(f"{function}({args[0]!r})", tx_hash)
        return tx_hash

    def register_device(
        self, device_id: str, fingerprint: bytes, alg: str, valid_from: int, valid_until: int = OPEN_UNTIL
    ) -> str:
        """Record a device's first key; waits for the receipt and returns the transaction hash."""
        args = [device_id, _bytes32(fingerprint, "fingerprint"), _alg_code(alg), _uint64(valid_from, "valid_from")]
        return self._registry_tx("register", "register", [*args, _uint64(valid_until, "valid_until")])

    def rotate_device(
        self, device_id: str, fingerprint: bytes, alg: str, at: int, valid_until: int = OPEN_UNTIL
    ) -> str:
        """Close the current key at ``at`` and open ``fingerprint`` from then; returns the tx hash."""
        args = [device_id, _bytes32(fingerprint, "fingerprint"), _alg_code(alg), _uint64(at, "at")]
        return self._registry_tx("rotate", "rotate", [*args, _uint64(valid_until, "valid_until")])

    def revoke_device(self, device_id: str, at: int) -> str:
        """Close the current key at ``at`` and the device for good; returns the tx hash."""
        return self._registry_tx("revoke", "revoke", [device_id, _uint64(at, "at")])

    def device_keys(self, device_id: str) -> list[DeviceKey]:
        return self.reader.device_keys(self.registry_address, device_id)

    def key_at(self, device_id: str, ts: int) -> DeviceKey | None:
        return self.reader.key_at(self.registry_address, device_id, ts)

    def is_revoked(self, device_id: str) -> bool:
        return self.reader.is_revoked(self.registry_address, device_id)
