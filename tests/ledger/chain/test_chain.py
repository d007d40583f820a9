"""Conformance of the chain layer on every backend, and crash recovery of the managed node.

One suite (:class:`TestChainConformance`) runs on ``embedded`` (py-evm), ``managed`` (our own
anvil) and ``rpc`` (an anvil started here, reached by URL). anvil-based tests skip when the
binary is missing, except in CI (``CI=true``) where that is a failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import keccak
from web3 import Web3
from web3.exceptions import ContractLogicError

from attestation.bundle import AnchorQuery
from ledger.chain import (
    ANCHOR,
    COLLATERAL,
    ANVIL_DEV_KEY,
    OPEN_UNTIL,
    REGISTRY,
    AnchorReceipt,
    ChainClient,
    ChainError,
    ChainHandle,
    ChainReader,
    ChainRevert,
    ChainUnavailable,
    Deployment,
    DeviceKey,
    NonceConsumed,
    SignedTx,
    decode_revert,
    deploy_to,
    deployment_path,
    ensure_deployment,
    find_anvil,
    load_artifact,
    open_chain,
    read_deployment,
)
from ledger.chain.backends import _free_port

IN_CI = os.environ.get("CI", "").lower() == "true"
ZERO = bytes(32)


def need_anvil() -> Path:
    binary = find_anvil()
    if binary is None:
        if IN_CI:
            pytest.fail("anvil is required in CI (npm install puts it in node_modules)")
        pytest.skip("anvil binary not installed (npm install)")
    return binary


#: Issue 4: a checkpoint's receipt shows at most this much gas, the link and the stored root included.
CHECKPOINT_GAS_BUDGET = 48_000
#: anvil's funded dev account 1 (public default mnemonic).
ANVIL_DEV_KEY_1 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"


def leaf(salt: bytes, digest: bytes) -> bytes:
    return keccak(keccak(abi_encode(["bytes32", "bytes32"], [salt, digest])))


def unique(tag: str) -> str:
    """A device id no other test on the same (class-scoped) chain uses."""
    return f"{tag}-{time.monotonic_ns()}"


def fp(n: int) -> bytes:
    return n.to_bytes(32, "big")


@dataclass
class Chain:
    handle: ChainHandle
    data_dir: Path
    deployment: Deployment

    @property
    def client(self) -> ChainClient:
        return self.handle.client

    def reader(self) -> ChainReader:
        """A reader as a third-party verifier builds it: from the RPC URL alone where there is one."""
        if self.handle.rpc_url is None:
            return ChainReader(self.handle.w3)
        return ChainReader(Web3(Web3.HTTPProvider(self.handle.rpc_url)))


def start_anvil(log_dir: Path, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    """A plain anvil we start ourselves (no state file), answering on the returned URL."""
    binary = need_anvil()
    port = _free_port()
    with open(log_dir / "anvil.log", "wb") as log:
        cmd = [str(binary), "--host", "127.0.0.1", "--port", str(port), "--quiet", *args]
        proc = subprocess.Popen(cmd, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    w3 = Web3(Web3.HTTPProvider(url))
    for _ in range(200):
        try:
            w3.eth.chain_id
            return proc, url
        except Exception:
            time.sleep(0.05)
    proc.kill()
    pytest.fail(f"anvil did not start: {(log_dir / 'anvil.log').read_text()}")


@pytest.fixture(scope="module")
def rpc_anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The node of the ``rpc`` backend."""
    proc, url = start_anvil(tmp_path_factory.mktemp("rpc-anvil"))
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(
    scope="class",
    params=["embedded", pytest.param("managed", marks=pytest.mark.anvil), pytest.param("rpc", marks=pytest.mark.anvil)],
)
def chain(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    kind = request.param
    data_dir = tmp_path_factory.mktemp(kind)
    if kind == "embedded":
        handle = open_chain("embedded", data_dir)
    elif kind == "managed":
        need_anvil()
        handle = open_chain("managed", data_dir)
    else:
        handle = open_chain(request.getfixturevalue("rpc_anvil"), data_dir, relayer_key=ANVIL_DEV_KEY)
    try:
        assert handle.kind == kind
        yield Chain(handle, data_dir, ensure_deployment(handle.client, data_dir))
    finally:
        handle.close()


class TestChainConformance:
    """The same behaviour on every backend."""

    def test_deployment_is_recorded_and_reused(self, chain: Chain) -> None:
        client, deployment = chain.client, chain.deployment
        assert deployment.chain_id == client.chain_id
        assert set(deployment.contracts) == {ANCHOR, REGISTRY, COLLATERAL}
        assert all(client.has_code(address) for address in deployment.contracts.values())
        assert not client.has_code(client.address)
        assert read_deployment(chain.data_dir, client.chain_id) == deployment
        record = json.loads(deployment_path(chain.data_dir, client.chain_id).read_text())
        assert record["contracts"] == deployment.contracts
        assert chain.reader().device_registry_of(deployment.contracts[ANCHOR]) == deployment.contracts[REGISTRY]

        block = client.block_number()
        assert ensure_deployment(client, chain.data_dir) == deployment  # no second deployment
        assert client.block_number() == block
        if chain.handle.rpc_url is not None:
            assert chain.handle.rpc_url.startswith("http://127.0.0.1:")

    def test_checkpoints_extend_the_head(self, chain: Chain) -> None:
        client = chain.client
        size, _ = client.head()
        first = client.checkpoint(size, fp(0xA1))
        assert isinstance(first, AnchorReceipt)
        assert (first.index, first.root) == (size, fp(0xA1))
        assert first.tx_hash.startswith("0x") and len(first.tx_hash) == 66
        assert first.block_hash.startswith("0x") and len(first.block_hash) == 66
        assert first.block_number <= client.block_number()
        assert Web3.to_hex(chain.handle.w3.eth.get_block(first.block_number)["hash"]) == first.block_hash
        assert client.block_hash(first.block_number) == first.block_hash
        assert client.block_hash(client.block_number() + 1_000) is None

        second = client.checkpoint(size + 1, fp(0xA2))
        assert second.index == size + 1
        assert client.head() == (size + 2, fp(0xA2))
        assert client.size() == size + 2
        assert client.root_of(size) == fp(0xA1)
        assert client.root_of(size + 1) == fp(0xA2)

    def test_checkpoint_gas_is_within_budget(self, chain: Chain) -> None:
        """Receipt gas of a checkpoint that pays for the link (index >= 1), on every backend."""
        client = chain.client
        if client.size() == 0:
            client.checkpoint(0, fp(0x60))
        for _ in range(3):
            receipt = client.checkpoint(client.size(), keccak(fp(client.size())))
            assert receipt.index >= 1
            assert receipt.gas_used <= CHECKPOINT_GAS_BUDGET - 100, receipt.gas_used
            assert chain.handle.w3.eth.get_transaction_receipt(receipt.tx_hash)["gasUsed"] == receipt.gas_used

    def test_checkpoints_that_do_not_extend_the_head_revert_with_decoded_errors(self, chain: Chain) -> None:
        client = chain.client
        size, root = client.head()
        if size == 0:
            client.checkpoint(0, fp(1))
            size, root = client.head()
        with pytest.raises(ChainRevert) as stale:
            client.checkpoint(size - 1, fp(0xB1))
        assert stale.value.error == "ReadingAnchorAlreadyAnchored"
        assert stale.value.params == {"index": size - 1, "root": root}
        assert f"ReadingAnchorAlreadyAnchored(index={size - 1}, root=0x{root.hex()})" in str(stale.value)

        with pytest.raises(ChainRevert) as gap:
            client.checkpoint(size + 1, fp(0xB2))
        assert (gap.value.error, gap.value.params) == ("ReadingAnchorMissingPrevious", {"index": size + 1})
        with pytest.raises(ChainRevert, match=r"ReadingAnchorEmptyRoot\(\)"):
            client.checkpoint(size, ZERO)
        with pytest.raises(ChainRevert) as missing:
            client.root_of(size + 5)
        assert (missing.value.error, missing.value.params) == ("ReadingAnchorUnknownIndex", {"index": size + 5})
        with pytest.raises(ValueError):
            client.checkpoint(size, b"short")
        with pytest.raises(ValueError):
            client.send_checkpoint(-1, fp(0xB3))
        assert client.head() == (size, root)  # nothing was anchored by the failures

    def test_split_send_and_receipt(self, chain: Chain) -> None:
        client = chain.client
        size = client.size()
        tx_hash = client.send_checkpoint(size, fp(0xC1)).tx_hash
        assert Web3.to_hex(chain.handle.w3.eth.get_transaction(tx_hash)["hash"]) == tx_hash
        receipt = client.checkpoint_receipt(tx_hash)
        assert receipt is not None
        assert (receipt.index, receipt.root, receipt.tx_hash) == (size, fp(0xC1), tx_hash)
        assert client.checkpoint_receipt(tx_hash, timeout=0) == receipt  # looking again is fine
        assert client.wait_checkpoint(tx_hash) == receipt
        assert client.find_checkpoint(size) == receipt
        assert client.find_checkpoint(size + 100) is None
        assert client.checkpoint_receipt("0x" + "ab" * 32, timeout=0) is None

        tx_hash = client.send_checkpoint(size, fp(0xC2)).tx_hash  # taken now: reverts once mined
        with pytest.raises(ChainRevert) as stale:
            client.checkpoint_receipt(tx_hash)
        assert stale.value.error == "ReadingAnchorAlreadyAnchored"
        assert stale.value.params == {"index": size, "root": fp(0xC1)}
        assert stale.value.tx_hash == tx_hash
        with pytest.raises(ChainRevert, match="reverted"):
            client.reader.checkpoint_receipt(client.anchor_address, tx_hash)

    def test_sent_transactions_are_recorded_first_and_can_be_looked_up_and_sent_again(self, chain: Chain) -> None:
        client = chain.client
        size = client.size()
        recorded: list[SignedTx] = []
        sent = client.send_checkpoint(size, fp(0xD1), record=recorded.append)
        assert recorded == [sent]
        assert Web3.to_hex(keccak(sent.raw)) == sent.tx_hash and sent.fee_cap >= (sent.tip or 0) > 0
        client.wait_checkpoint(sent.tx_hash)
        assert client.transaction_status(sent.tx_hash) == "mined"
        assert client.transaction_status("0x" + "cd" * 32) == "unknown"
        assert client.account_nonces() == (sent.nonce + 1, sent.nonce + 1)
        with pytest.raises(NonceConsumed):
            client.rebroadcast(sent.raw)
        with pytest.raises(NonceConsumed):
            client.replace_checkpoint(size, fp(0xD1), sent)

        def fail(signed: SignedTx) -> None:
            raise RuntimeError("the database is gone")

        with pytest.raises(RuntimeError):
            client.send_checkpoint(size + 1, fp(0xD2), record=fail)  # not recorded: not sent
        assert client.account_nonces()[1] == sent.nonce + 1 and client.size() == size + 1
        assert client.checkpoint(size + 1, fp(0xD2)).index == size + 1  # the nonce was not lost
        finalized = client.finalized_block()
        assert finalized is None or 0 <= finalized <= client.block_number()

    def test_device_lifecycle(self, chain: Chain) -> None:
        client = chain.client
        device = unique("dev")
        now = client.w3.eth.get_block("latest")["timestamp"]
        t0, t1, t2 = now - 86_400, now, now + 3_600  # registered yesterday, rotated now, revoked in an hour
        tx_hash = client.register_device(device, fp(1), "ES256", t0)
        assert tx_hash.startswith("0x")
        assert client.key_at(device, t0 - 1) is None
        assert client.key_at(device, t0) == DeviceKey(fp(1), "ES256", t0, OPEN_UNTIL)

        with pytest.raises(ChainRevert) as backdated:  # would take readings already signed from the old key
            client.rotate_device(device, fp(2), "EdDSA", t0 + 1)
        # (web3's eth-tester provider decodes a mined transaction's revert data as a string, which
        # loses the custom error's name on the embedded chain; real nodes keep it)
        assert backdated.value.error == "DeviceRegistryInvalidTime" or chain.handle.kind == "embedded"
        client.rotate_device(device, fp(2), "EdDSA", t1)
        assert client.key_at(device, t1 - 1) == DeviceKey(fp(1), "ES256", t0, t1)
        assert client.key_at(device, t1) == DeviceKey(fp(2), "EdDSA", t1, OPEN_UNTIL)
        assert not client.is_revoked(device)

        client.revoke_device(device, t2)
        assert client.key_at(device, t2 - 1) == DeviceKey(fp(2), "EdDSA", t1, t2)
        assert client.key_at(device, t2) is None
        assert client.is_revoked(device)
        assert client.device_keys(device) == [
            DeviceKey(fp(1), "ES256", t0, t1),
            DeviceKey(fp(2), "EdDSA", t1, t2),
        ]
        assert client.device_keys(unique("nobody")) == []

    def test_device_errors_are_decoded(self, chain: Chain) -> None:
        client = chain.client
        device = unique("err")
        client.register_device(device, fp(3), "ES256K", 10, 100)
        cases = [
            (lambda: client.register_device(device, fp(3), "ES256K", 10), "DeviceRegistryAlreadyRegistered", None),
            (lambda: client.register_device("bad id", fp(3), "ES256", 10), "DeviceRegistryInvalidId", {"id": "bad id"}),
            (lambda: client.register_device(unique("z"), ZERO, "ES256", 10), "DeviceRegistryInvalidKey", None),
            (lambda: client.rotate_device(unique("ghost"), fp(4), "ES256", 50), "DeviceRegistryUnknownDevice", None),
            (lambda: client.rotate_device(device, fp(4), "ES256", 100), "DeviceRegistryInvalidTime", None),
        ]
        for action, error, params in cases:
            with pytest.raises(ChainRevert) as caught:
                action()
            assert caught.value.error == error, str(caught.value)
            assert error in str(caught.value)
            if params is not None:
                assert caught.value.params == params
        with pytest.raises(ChainRevert) as late:
            client.rotate_device(device, fp(4), "ES256", 100)  # validUntil of the current key is 100
        assert late.value.params == {"id": device, "at": 100}
        client.revoke_device(device, 50)
        with pytest.raises(ChainRevert, match=r"DeviceRegistryRevoked\(id='err-"):
            client.revoke_device(device, 60)
        with pytest.raises(ValueError, match="unknown algorithm"):
            client.register_device(unique("alg"), fp(5), "RS256", 10)

    def test_reader_needs_only_rpc_and_addresses(self, chain: Chain) -> None:
        client = chain.client
        anchor, registry = chain.deployment.contracts[ANCHOR], chain.deployment.contracts[REGISTRY]
        salt, digest = fp(0x5A17), fp(0xD16E57)
        size = client.size()
        anchored = client.checkpoint(size, leaf(salt, digest))  # a one-leaf tree: root = leaf
        device = unique("rd")
        client.register_device(device, fp(9), "ES256", 500)

        reader = chain.reader()
        assert reader.chain_id == client.chain_id
        assert reader.head(anchor) == (size + 1, leaf(salt, digest))
        assert reader.size(anchor) == size + 1
        assert reader.writer_of(anchor) == client.address
        assert reader.root_of(anchor, size) == leaf(salt, digest)
        assert reader.device_registry_of(anchor) == registry
        assert reader.verify_reading(anchor, size, salt, digest, [])
        assert not reader.verify_reading(anchor, size, salt, fp(1), [])
        assert reader.key_at(registry, device, 600) == DeviceKey(fp(9), "ES256", 500, OPEN_UNTIL)
        assert reader.device_keys(registry, device) == [DeviceKey(fp(9), "ES256", 500, OPEN_UNTIL)]
        assert not reader.is_revoked(registry, device)
        assert reader.find_checkpoint(anchor, size, from_block=chain.deployment.block_number) == anchored
        assert reader.find_checkpoint(anchor, size + 100) is None
        assert reader.block_timestamp(anchored.block_number) > 0

        facts = reader.chain_facts(AnchorQuery(client.chain_id, anchor, size, device, 600, anchored.tx_hash))
        assert facts.root == leaf(salt, digest)
        assert facts.anchored == (size, leaf(salt, digest))  # what the named transaction checkpointed
        assert (facts.previous_root is not None) == (size > 0)
        assert reader.chain_facts(AnchorQuery(client.chain_id, anchor, size, device, 600, "0x" + "00" * 32)).anchored is None
        assert facts.device_key is not None and facts.device_key.fingerprint == fp(9)
        assert reader.chain_facts(AnchorQuery(client.chain_id, anchor, size + 100, device, 1, anchored.tx_hash)).root is None
        assert reader.chain_facts(AnchorQuery(client.chain_id + 1, anchor, 0, device, 1, anchored.tx_hash)).chain_id == client.chain_id
        with pytest.raises(ChainError, match="no contract"):
            reader.chain_facts(AnchorQuery(client.chain_id, client.address, 0, device, 1, anchored.tx_hash))

    def test_nonce_resyncs_after_a_foreign_transaction(self, chain: Chain) -> None:
        client, w3 = chain.client, chain.handle.w3
        client.register_device(unique("n"), fp(6), "ES256", 1)  # the local nonce is initialised
        nonce = w3.eth.get_transaction_count(client.address, "pending")
        fees = client._fee_fields()
        tx = {"chainId": client.chain_id, "nonce": nonce, "to": client.address, "value": 0, "gas": 21_000, **fees}
        w3.eth.wait_for_transaction_receipt(
            w3.eth.send_raw_transaction(client.account.sign_transaction(tx).raw_transaction), poll_latency=0.01
        )
        size = client.size()
        assert client.checkpoint(size, fp(0xE1)).index == size  # "nonce too low" -> resync -> sent

    def test_fees_are_read_again_when_the_node_refuses_them(self, chain: Chain) -> None:
        client = chain.client
        assert chain.handle.w3.eth.get_block("latest")["baseFeePerGas"] > 0
        client._fees = {"maxFeePerGas": 0, "maxPriorityFeePerGas": 0}  # below the base fee
        size = client.size()
        assert client.checkpoint(size, fp(0xE2)).index == size
        assert client._fees["maxFeePerGas"] > 0

    def test_concurrent_sends_keep_nonces_in_order(self, chain: Chain) -> None:
        client = chain.client
        devices = [unique(f"c{i}") for i in range(8)]
        errors: list[BaseException] = []

        def register(device: str) -> None:
            try:
                client.register_device(device, fp(7), "ES256", 1)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=register, args=(d,)) for d in devices]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert all(client.key_at(d, 1) is not None for d in devices)


# --- backend-independent behaviour ------------------------------------------------------------


def test_artifacts_load_from_the_package() -> None:
    for name in (ANCHOR, REGISTRY):
        artifact = load_artifact(name)
        assert {"abi", "bytecode", "deployedBytecode"} <= set(artifact)
    assert load_artifact(ANCHOR) is load_artifact(ANCHOR)  # cached
    with pytest.raises(FileNotFoundError):
        load_artifact("Nope")


def test_decode_revert() -> None:
    data = keccak(text="ReadingAnchorAlreadyAnchored(uint256,bytes32)")[:4] + abi_encode(["uint256", "bytes32"], [4, fp(2)])
    assert decode_revert(data) == ("ReadingAnchorAlreadyAnchored", {"index": 4, "root": fp(2)})
    error_string = keccak(text="Error(string)")[:4] + abi_encode(["string"], ["boom"])
    assert decode_revert(error_string) == ("Error", {"message": "boom"})
    assert decode_revert(b"\x01\x02\x03\x04") is None
    assert decode_revert(data[:10]) is None


def test_unreachable_node_raises_chain_unavailable(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(ChainUnavailable):
        ChainReader(Web3(Web3.HTTPProvider(url))).block_number()
    with pytest.raises(ChainUnavailable):
        open_chain(url, tmp_path, relayer_key=ANVIL_DEV_KEY)


def test_open_chain_rejects_bad_specs_and_keys(tmp_path: Path) -> None:
    with pytest.raises(ChainError, match="PLEDGELEDGER_RELAYER_KEY"):
        open_chain("http://127.0.0.1:8545", tmp_path)
    with pytest.raises(ChainError, match="not a valid") as bad_key:
        open_chain("http://127.0.0.1:8545", tmp_path, relayer_key="0xnot-a-key")
    assert "not-a-key" not in str(bad_key.value)
    with pytest.raises(ChainError, match="unknown chain"):
        open_chain("ganache", tmp_path)


def test_ensure_deployment_on_a_fresh_embedded_chain_redeploys(tmp_path: Path) -> None:
    with open_chain("embedded", tmp_path) as first:
        with pytest.raises(ChainError, match="pledgeledger deploy"):
            ensure_deployment(first.client, tmp_path, deploy_if_missing=False)
        recorded = ensure_deployment(first.client, tmp_path)
    with open_chain("embedded", tmp_path) as second:  # embedded keeps nothing: same record, no code
        assert not second.client.has_code(recorded.contracts[ANCHOR])
        with pytest.raises(ChainError, match="no code"):
            ensure_deployment(second.client, tmp_path, deploy_if_missing=False)
        again = ensure_deployment(second.client, tmp_path)
        assert second.client.has_code(again.contracts[ANCHOR])
        assert read_deployment(tmp_path, again.chain_id) == again
        replaced = deploy_to(second.client, tmp_path)  # explicit deploy always deploys
        assert replaced.contracts != again.contracts
        assert read_deployment(tmp_path, again.chain_id) == replaced == second.client.deployment


@pytest.mark.anvil
def test_an_anchor_written_by_another_key_is_not_used(tmp_path: Path, rpc_anvil: str) -> None:
    """The anchor's writer is fixed at deployment: a new relayer key needs new contracts."""
    with open_chain(rpc_anvil, tmp_path, relayer_key=ANVIL_DEV_KEY) as first:
        old = deploy_to(first.client, tmp_path)
    with open_chain(rpc_anvil, tmp_path, relayer_key=ANVIL_DEV_KEY_1) as second:
        with pytest.raises(ChainError, match="accepts checkpoints only from") as refused:
            ensure_deployment(second.client, tmp_path, deploy_if_missing=False)
        assert "pledgeledger deploy" in str(refused.value)
        new = ensure_deployment(second.client, tmp_path)  # a dev chain deploys anew
        assert new.contracts[ANCHOR] != old.contracts[ANCHOR]
        assert second.client.reader.writer_of(new.contracts[ANCHOR]) == second.client.address
        with pytest.raises(ContractLogicError) as unauthorized:
            second.client.reader.contract(ANCHOR, old.contracts[ANCHOR]).functions.checkpoint(0, fp(1)).call(
                {"from": second.client.address}
            )
        data = unauthorized.value.data
        assert decode_revert(bytes.fromhex(data[2:])) == ("ReadingAnchorUnauthorizedWriter", {"account": second.client.address.lower()})
        assert second.client.checkpoint(0, fp(1)).index == 0


def test_embedded_relayer_can_be_any_key(tmp_path: Path) -> None:
    """A custom relayer on the embedded chain must be funded first (eth-tester funds only its own)."""
    with open_chain("embedded", tmp_path) as handle:
        key = Account.create()
        client = handle.client
        tx = {"chainId": client.chain_id, "nonce": 0, "to": key.address, "value": 10**18, "gas": 21_000,
              **client._fee_fields()}  # fmt: skip
        handle.w3.eth.wait_for_transaction_receipt(
            handle.w3.eth.send_raw_transaction(client.account.sign_transaction(tx).raw_transaction)
        )
    with open_chain("embedded", tmp_path, relayer_key=Web3.to_hex(key.key)) as handle:
        assert handle.client.address == key.address
        with pytest.raises(ChainError, match="(?i)insufficient|funds|balance"):
            handle.client.deploy()  # a fresh chain: the key has no ether there


@pytest.mark.anvil
def test_legacy_fees_on_a_chain_without_base_fee(tmp_path: Path) -> None:
    proc, url = start_anvil(tmp_path, "--hardfork", "berlin")
    try:
        with open_chain(url, tmp_path, relayer_key=ANVIL_DEV_KEY) as handle:
            deploy_to(handle.client, tmp_path)
            anchored = handle.client.checkpoint(0, fp(0x1E))
            assert handle.w3.eth.get_transaction(anchored.tx_hash)["type"] == 0
            assert set(handle.client._fee_fields()) == {"gasPrice"}
    finally:
        proc.terminate()
        proc.wait(10)


# --- managed node crash recovery ----------------------------------------------------------------


def wait_for_state_dump(handle: ChainHandle, timeout: float = 5.0) -> None:
    """Wait until anvil's periodic dump includes the latest block."""
    assert handle.node is not None
    target = handle.client.block_number()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if json.loads(handle.node.state_path.read_bytes())["best_block_number"] >= target:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    pytest.fail("anvil did not dump its state in time")


@pytest.mark.anvil
def test_managed_state_survives_kill_9(tmp_path: Path) -> None:
    need_anvil()
    crashed = open_chain("managed", tmp_path)
    try:
        deployment = ensure_deployment(crashed.client, tmp_path)
        crashed.client.checkpoint(0, fp(0xF1))
        second = crashed.client.checkpoint(1, fp(0xF2))
        crashed.client.register_device("survivor", fp(8), "ES256", 100)
        wait_for_state_dump(crashed)
        assert crashed.node is not None and crashed.node.process is not None
        os.kill(crashed.node.process.pid, signal.SIGKILL)  # not close(): a crash
        crashed.node.process.wait(5)

        with open_chain("managed", tmp_path) as restarted:
            assert ensure_deployment(restarted.client, tmp_path, deploy_if_missing=False) == deployment
            assert restarted.client.head() == (2, fp(0xF2))
            assert restarted.client.root_of(0) == fp(0xF1)
            assert restarted.client.key_at("survivor", 100) == DeviceKey(fp(8), "ES256", 100, OPEN_UNTIL)
            assert restarted.client.reader.find_checkpoint(deployment.contracts[ANCHOR], 1) == second
            third = restarted.client.checkpoint(2, fp(0xF3))  # nonce picked up from the node
            assert third.index == 2
    finally:
        crashed.close()


@pytest.mark.anvil
def test_managed_node_of_a_killed_service_is_replaced(tmp_path: Path) -> None:
    need_anvil()
    orphaned = open_chain("managed", tmp_path)  # never closed before the next start: the service "died"
    try:
        ensure_deployment(orphaned.client, tmp_path)
        orphaned.client.checkpoint(0, fp(0xAB))  # no wait for the periodic dump
        assert orphaned.node is not None and orphaned.node.process is not None
        old_pid = orphaned.node.process.pid
        assert int(orphaned.node.pid_path.read_text()) == old_pid

        with open_chain("managed", tmp_path) as fresh:
            assert fresh.node is not None and fresh.node.process is not None
            assert fresh.node.process.pid != old_pid
            assert int(fresh.node.pid_path.read_text()) == fresh.node.process.pid
            with pytest.raises(ChainUnavailable):
                orphaned.client.block_number()  # the old node was stopped...
            ensure_deployment(fresh.client, tmp_path, deploy_if_missing=False)
            assert fresh.client.head() == (1, fp(0xAB))  # ...with SIGTERM, so it dumped its state
            orphaned.close()  # must not delete the new node's pid file
            assert fresh.node.pid_path.exists()
        assert not fresh.node.pid_path.exists()
    finally:
        orphaned.close()


@pytest.mark.anvil
def test_managed_truncated_state_is_restored_from_backup(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    need_anvil()
    with open_chain("managed", tmp_path) as handle:
        deployment = ensure_deployment(handle.client, tmp_path)
        anchored = handle.client.checkpoint(0, fp(0xCC))
    with open_chain("managed", tmp_path) as handle:  # a valid state file: copied to .bak on start
        assert handle.node is not None
        state, backup = handle.node.state_path, handle.node.backup_path
    assert json.loads(backup.read_bytes())["best_block_number"] >= anchored.block_number
    state.write_bytes(state.read_bytes()[:1000])  # anvil killed while rewriting its state file

    with open_chain("managed", tmp_path) as handle:
        assert ensure_deployment(handle.client, tmp_path, deploy_if_missing=False) == deployment
        assert handle.client.head() == (1, fp(0xCC))
    assert "restored the last complete copy" in caplog.text
    assert list(tmp_path.glob("chain/anvil-state.corrupt-*.json"))
