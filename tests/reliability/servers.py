"""Private servers a fault test may stop and restart without touching the machine's shared ones.

- :class:`PrivatePostgres`: a throwaway PostgreSQL cluster (``initdb`` + ``pg_ctl`` from
  ``/usr/lib/postgresql/*/bin``) in a temporary directory, on a free loopback port, trust auth.
  PostgreSQL refuses to run as root, so as root its commands run as the ``postgres`` user.
- :class:`PrivateMosquitto`: a ``mosquitto`` on a free loopback port with a persistence file,
  so QoS-1 sessions and their queued messages survive a restart.
- :func:`rpc`: one JSON-RPC call to anvil (its fault controls: ``anvil_reorg``, ``evm_mine``...).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from tests.conftest import free_port

__all__ = ["PrivateMosquitto", "PrivatePostgres", "find_mosquitto", "postgres_bin_dir", "rpc"]


def rpc(node, method: str, *params: object) -> object:  # type: ignore[no-untyped-def]
    """Call ``method`` on the anvil node (anything with a ``url``); fail on a JSON-RPC error."""
    reply = requests.post(node.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=10).json()
    assert "error" not in reply, reply
    return reply["result"]


# --- PostgreSQL --------------------------------------------------------------------------------------


def postgres_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb`` and ``pg_ctl``, if any."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb") if Path(p).with_name("pg_ctl").exists()]
    return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0) if found else None


class PrivatePostgres:
    """A PostgreSQL cluster of our own: :meth:`start`, :meth:`stop`, :meth:`restart`, :attr:`url`."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        # not under pytest's tmp_path: its parents are private to root, and the server may run as postgres
        self.dir = Path(tempfile.mkdtemp(prefix="pledgeledger-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        cmd = [str(self.bin_dir / tool), *args]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        assert result.returncode == 0, f"{tool} failed: {result.stdout}{result.stderr}\n{self.log_tail()}"

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=on"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: sessions are terminated, a clean shutdown; ``immediate``: the server just dies (crash recovery on start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, *, mode: str = "fast", down_s: float = 0.0) -> None:
        self.stop(mode)
        time.sleep(down_s)
        self.start()

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            try:
                self.stop("immediate")
            except AssertionError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


# --- Mosquitto ---------------------------------------------------------------------------------------


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


class PrivateMosquitto:
    """A broker of our own on a free port; its state is saved to ``directory`` on a clean stop."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.conf = self.dir / "mosquitto.conf"
        self.log = self.dir / "mosquitto.log"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            # started as root, mosquitto would switch to its own user, who may not write here
            f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.dir}/\n"
            "max_queued_messages 100000\n"  # the readings published while the bridge is away
            "max_inflight_messages 64\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text(errors="replace")[-2000:]
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"mosquitto did not listen on {self.port} within {timeout} s")

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its sessions and queued messages to the persistence file, then exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
