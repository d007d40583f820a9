"""Getting a chain to talk to: a managed anvil node, in-process py-evm, or any JSON-RPC URL.

``open_chain(spec, data_dir)`` understands three specs (``PLEDGELEDGER_CHAIN``):

``managed``
    Starts our own ``anvil`` with its state in ``<data_dir>/chain/anvil-state.json``, dumped
    every second (``--state-interval 1``), so a ``kill -9`` of the node or the service loses at
    most about a second of chain state. anvil rewrites that file in place, so a kill during a
    write can leave it truncated: a copy of the last complete dump is kept next to it
    (``.bak``) and restored on the next start. The node's pid is written to
    ``<data_dir>/chain/anvil.pid``; a node left behind by a killed service is stopped on the
    next start. The relayer is anvil's funded dev account 0.
``embedded``
    web3's ``EthereumTesterProvider`` (py-evm, in process, about 20 tx/s). It keeps NOTHING
    across restarts: every start is a fresh chain, and :func:`ensure_deployment` deploys anew.
    No JSON-RPC URL exists for third-party tools (``rpc_url`` is ``None``).
``http://...`` / ``https://...``
    Any EVM JSON-RPC endpoint; the relayer key must be passed in (the CLI reads it from
    ``PLEDGELEDGER_RELAYER_KEY``). Contracts are deployed explicitly with :func:`deploy_to`.

Deployment records live in ``<data_dir>/deployments/<chain_id>.json``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import EthereumTesterProvider, Web3
from web3.types import RPCEndpoint, RPCResponse

from ledger.chain.base import ANCHOR, COLLATERAL, REGISTRY, ChainError, ChainRevert, ChainUnavailable, Deployment
from ledger.chain.client import ChainClient

__all__ = [
    "ANVIL_DEV_KEY",
    "AnvilNode",
    "ChainHandle",
    "ChainKind",
    "deploy_to",
    "deployment_path",
    "ensure_deployment",
    "find_anvil",
    "open_chain",
    "read_deployment",
    "write_deployment",
]

log = logging.getLogger(__name__)

ChainKind = Literal["managed", "embedded", "rpc"]

#: anvil's dev account 0 (from its public default mnemonic): funded on every anvil chain.
ANVIL_DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
ANVIL_CHAIN_ID = 31337
ANVIL_ENV = "PLEDGELEDGER_ANVIL"
_ANVIL_CANDIDATES = (
    "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil",
    "node_modules/.bin/anvil",
)


@dataclass
class ChainHandle:
    """An open chain: web3, the relayer client, and how to shut it down."""

    kind: ChainKind
    w3: Web3
    client: ChainClient
    rpc_url: str | None  # JSON-RPC URL third-party tools can use; None for embedded
    node: AnvilNode | None = None  # the managed node, if any
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def close(self) -> None:
        """Release the chain (stops a managed node, which dumps its state on the way out)."""
        while self._closers:
            self._closers.pop()()

    def __enter__(self) -> ChainHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_chain(
    spec: str,
    data_dir: Path,
    *,
    relayer_key: str | None = None,
    port: int | None = None,
    anvil: str | Path | None = None,
    startup_timeout: float = 30.0,
    receipt_timeout: float = 60.0,
) -> ChainHandle:
    """Open the chain named by ``spec`` (``managed``, ``embedded`` or an ``http(s)://`` URL).

    ``relayer_key`` (hex private key) is required for a URL and optional otherwise (default: the
    dev chain's funded account). ``port`` and ``anvil`` (binary path) apply to ``managed`` only;
    without a port a free one is picked. Raises :class:`ChainError` if the chain cannot be opened.
    """
    spec = spec.strip()
    data_dir = Path(data_dir)
    if spec.lower() == "managed":
        node = AnvilNode(data_dir / "chain", binary=anvil, port=port)
        node.start(timeout=startup_timeout)
        try:
            w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 30}))
            client = ChainClient(w3, _account(relayer_key or ANVIL_DEV_KEY), receipt_timeout=receipt_timeout)
        except BaseException:
            node.stop()
            raise
        return ChainHandle("managed", w3, client, node.url, node, [node.stop])
    if spec.lower() == "embedded":
        provider = _LockedTesterProvider()
        w3 = Web3(provider)
        key = relayer_key or Web3.to_hex(provider.ethereum_tester.backend.account_keys[0].to_bytes())
        client = ChainClient(w3, _account(key), receipt_timeout=receipt_timeout)
        return ChainHandle("embedded", w3, client, None)
    if spec.startswith(("http://", "https://")):
        if not relayer_key:
            raise ChainError("a JSON-RPC chain needs a relayer key: set PLEDGELEDGER_RELAYER_KEY (hex private key)")
        w3 = Web3(Web3.HTTPProvider(spec, request_kwargs={"timeout": 30}))
        client = ChainClient(w3, _account(relayer_key), receipt_timeout=receipt_timeout)
        client.chain_id  # fail now, clearly, if the node does not answer
        return ChainHandle("rpc", w3, client, spec)
    raise ChainError(f"unknown chain {spec!r}: expected 'managed', 'embedded' or an http(s):// JSON-RPC URL")


def _account(key: str) -> LocalAccount:
    try:
        return Account.from_key(key)
    except Exception:  # never echo the key itself
        raise ChainError("the relayer key is not a valid hex secp256k1 private key") from None


class _LockedTesterProvider(EthereumTesterProvider):
    """``EthereumTesterProvider`` is not thread-safe; the service calls it from several threads."""

    def __init__(self) -> None:
        super().__init__()
        self._request_lock = threading.RLock()

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        with self._request_lock:
            return super().make_request(method, params)


# --- deployment records --------------------------------------------------------------------------


def deployment_path(data_dir: Path, chain_id: int) -> Path:
    return Path(data_dir) / "deployments" / f"{chain_id}.json"


def read_deployment(data_dir: Path, chain_id: int) -> Deployment | None:
    """The recorded deployment for ``chain_id``, or ``None`` if there is none."""
    path = deployment_path(data_dir, chain_id)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ChainError(f"unreadable deployment record {path}: {exc}") from exc
    return Deployment(
        chain_id=int(record["chain_id"]),
        contracts=dict(record["contracts"]),
        block_number=int(record.get("block_number", 0)),
    )


def write_deployment(data_dir: Path, deployment: Deployment) -> Path:
    """Record ``deployment`` atomically (write a temporary file, then rename it into place)."""
    path = deployment_path(data_dir, deployment.chain_id)
    record = {
        "chain_id": deployment.chain_id,
        "contracts": deployment.contracts,
        "block_number": deployment.block_number,
    }
    _atomic_write(path, json.dumps(record, indent=2, sort_keys=True).encode() + b"\n")
    return path


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def ensure_deployment(client: ChainClient, data_dir: Path, *, deploy_if_missing: bool = True) -> Deployment:
    """Use the recorded deployment for the client's chain, deploying (and recording) if needed.

    A record whose contracts have no code on chain (a fresh embedded chain, a reset node) counts
    as missing, and so does an anchor whose writer is not the client's relayer (the writer is
    fixed at deployment: a new relayer key needs new contracts). With ``deploy_if_missing=False``
    that raises :class:`ChainError` instead.
    """
    deployment = read_deployment(data_dir, client.chain_id)
    problem: str | None = "is not deployed"
    if deployment is not None and deployment.contracts:
        if missing := sorted({REGISTRY, ANCHOR, COLLATERAL} - set(deployment.contracts)):
            problem = f"has no {', '.join(missing)} in its recorded deployment"
        elif not all(map(client.has_code, deployment.contracts.values())):
            problem = "has no code at the recorded addresses"
        elif (problem := _anchor_problem(client, deployment.contracts[ANCHOR])) is None:
            client.deployment = deployment
            return deployment
    if not deploy_if_missing:
        raise ChainError(f"pledgeledger {problem} on chain {client.chain_id}: run `pledgeledger deploy`")
    if deployment is not None:
        log.warning("pledgeledger %s on chain %s: deploying new contracts", problem, client.chain_id)
    return deploy_to(client, data_dir)


def _anchor_problem(client: ChainClient, anchor: str) -> str | None:
    """Why the client cannot anchor at ``anchor`` (``None``: it can)."""
    try:
        writer = client.reader.writer_of(anchor)
    except ChainRevert:
        return f"has an anchor at {anchor} of an older, incompatible version"
    if writer != client.address:
        return f"has an anchor that accepts checkpoints only from {writer}, not from the relayer {client.address}"
    return None


def deploy_to(client: ChainClient, data_dir: Path) -> Deployment:
    """Deploy fresh contracts and record them, replacing any earlier record for the chain."""
    deployment = client.deploy()
    write_deployment(data_dir, deployment)
    log.info("deployed pledgeledger on chain %s: %s", deployment.chain_id, deployment.contracts)
    return deployment


# --- managed anvil -----------------------------------------------------------------------------


def _repo_roots() -> list[Path]:
    here = Path(__file__).resolve()
    return [*here.parents, Path.cwd()]


def find_anvil(explicit: str | Path | None = None) -> Path | None:
    """The anvil binary: ``explicit``, else ``$PLEDGELEDGER_ANVIL``, else the repository's
    ``node_modules`` (found by walking up from this file, then the working directory), else PATH."""
    named = explicit or os.environ.get(ANVIL_ENV)
    if named:
        path = Path(named)
        return path if path.is_file() else None
    for root in _repo_roots():
        for candidate in _ANVIL_CANDIDATES:
            if (root / candidate).is_file():
                return root / candidate
    found = shutil.which("anvil")
    return Path(found) if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _valid_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def _process_cmdline(pid: int) -> str | None:
    """The command line of a live process, or ``None`` if it is gone or unknowable."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        return None
    except OSError:
        pass
    try:
        out = subprocess.run(["ps", "-p", str(pid), "-o", "command="], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return out.stdout.strip() or None


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone; our own zombie children are reaped)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:  # not our child
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


class AnvilNode:
    """One anvil process whose state lives in ``chain_dir``."""

    BACKUP_INTERVAL = 5.0  # seconds between copies of the last complete state dump

    def __init__(self, chain_dir: Path, *, binary: str | Path | None = None, port: int | None = None) -> None:
        self.chain_dir = Path(chain_dir).absolute()  # absolute: the pid check matches it in anvil's cmdline
        self.state_path = self.chain_dir / "anvil-state.json"
        self.backup_path = self.chain_dir / "anvil-state.json.bak"
        self.pid_path = self.chain_dir / "anvil.pid"
        self.log_path = self.chain_dir / "anvil.log"
        self._binary = binary
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        self._stop_backups = threading.Event()
        self._backup_thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 30.0) -> None:
        """Start anvil on our state file and wait until it answers JSON-RPC."""
        binary = find_anvil(self._binary)
        if binary is None:
            raise ChainError(
                "anvil not found: run `npm install` (node_modules/@foundry-rs/anvil) or set PLEDGELEDGER_ANVIL"
            )
        self.chain_dir.mkdir(parents=True, exist_ok=True)
        self._stop_stale()
        self._check_state_file()
        self.port = self.port or _free_port()
        cmd = [
            str(binary),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--chain-id", str(ANVIL_CHAIN_ID),
            "--state", str(self.state_path),
            "--state-interval", "1",
            "--quiet",
        ]  # fmt: skip
        with open(self.log_path, "ab") as log_file:
            # own session: killing the group also stops the real binary behind an npm wrapper
            self.process = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, start_new_session=True
            )
        _atomic_write(self.pid_path, f"{self.process.pid}\n".encode())
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        self._stop_backups.clear()
        self._backup_thread = threading.Thread(target=self._backup_loop, name="anvil-state-backup", daemon=True)
        self._backup_thread.start()

    def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        payload = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise ChainUnavailable(f"anvil exited with code {code} on start ({self.log_path}): {self._log_tail()}")
            try:
                if requests.post(self.url, json=payload, timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise ChainUnavailable(f"anvil did not answer on {self.url} within {timeout} s; see {self.log_path}")

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_bytes()[-500:].decode(errors="replace").strip()
        except OSError:
            return ""

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop anvil cleanly (SIGTERM: it dumps its state first), SIGKILL if it hangs."""
        self._stop_backups.set()
        if self._backup_thread is not None:
            self._backup_thread.join()
            self._backup_thread = None
        process, self.process = self.process, None
        if process is None:
            return
        _terminate_group(process.pid, timeout, wait=process.wait)
        try:  # leave the file alone if a newer node on the same state has replaced it
            if int(self.pid_path.read_text().strip()) == process.pid:
                self.pid_path.unlink()
        except (FileNotFoundError, ValueError):
            pass

    def _stop_stale(self) -> None:
        """Stop an anvil left running on our state file by a service that died without closing."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return
        cmdline = _process_cmdline(pid)
        if cmdline is not None and "anvil" in cmdline and str(self.state_path) in cmdline:
            log.warning("stopping stale anvil (pid %s) left on %s", pid, self.state_path)
            _terminate_group(pid, 10.0, wait=lambda timeout: _wait_gone(pid, timeout))
        self.pid_path.unlink(missing_ok=True)

    def _check_state_file(self) -> None:
        """Restore the last complete dump if anvil was killed while rewriting its state file."""
        if not self.state_path.exists():
            return
        data = self.state_path.read_bytes()
        if _valid_json(data):
            _atomic_write(self.backup_path, data)
            return
        corrupt = self.state_path.with_name(f"anvil-state.corrupt-{int(time.time())}.json")
        os.replace(self.state_path, corrupt)
        if self.backup_path.exists():
            shutil.copyfile(self.backup_path, self.state_path)
            log.warning("anvil state file was truncated (kept as %s); restored the last complete copy", corrupt.name)
        else:
            log.error("anvil state file was truncated (kept as %s) and no copy exists: starting empty", corrupt.name)

    def _backup_loop(self) -> None:
        last_mtime = 0.0
        while not self._stop_backups.wait(self.BACKUP_INTERVAL):
            try:
                mtime = self.state_path.stat().st_mtime
                if mtime == last_mtime:
                    continue
                data = self.state_path.read_bytes()
                if _valid_json(data):  # skip dumps caught mid-write
                    _atomic_write(self.backup_path, data)
                    last_mtime = mtime
            except OSError as exc:
                log.debug("anvil state backup skipped: %s", exc)


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            raise subprocess.TimeoutExpired(str(pid), timeout)
        time.sleep(0.05)


def _terminate_group(pid: int, timeout: float, *, wait: Callable[[float], object]) -> None:
    """SIGTERM the process group led by ``pid``; SIGKILL it if still alive after ``timeout``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        try:
            wait(timeout)
            return
        except subprocess.TimeoutExpired:
            continue
