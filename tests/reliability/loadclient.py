"""A gateway that posts signed readings to the service as fast as it can, and logs every answer.

Run as its own process (``python -m tests.reliability.loadclient``), so a fault test can kill or
starve the service under it. It registers ``--devices`` new devices with the operator key, then
posts arrays of ``--batch`` readings (each device in turn, sequence numbers and ``prev`` links as
a real device makes them) until ``--stop-file`` exists or ``--duration`` has passed.

A request that got no answer (connection refused or reset, a timeout) or a 5xx is sent again,
unchanged, until the service answers it: a gateway cannot know whether the ledger stored it.
Each attempt is one JSON line in ``--out``::

    {"n": 7, "ids": [...], "attempt": 1, "t": 3.2, "answer": "ok", "http": 200, "statuses": [...], "codes": [...]}
    {"n": 8, "ids": [...], "attempt": 1, "t": 3.4, "answer": "none", "error": "ConnectError: ..."}

:class:`LoadClient` runs it from a test, and :func:`read_log` parses its file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from attestation import parse_reading
from ledger.simulator import SimulatedDevice

__all__ = ["ClientLog", "LoadClient", "read_log"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--operator-key", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--stop-file", type=Path, required=True)
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--batch", type=int, default=40, help="readings per request")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between requests")
    parser.add_argument("--duration", type=float, default=300.0, help="stop sending new readings after this long")
    parser.add_argument("--prefix", default="rel")
    args = parser.parse_args(argv)

    started = time.monotonic()
    http = httpx.Client(base_url=args.url, timeout=30)  # a slow answer is not a lost one: only a fault should cut a request
    devices = [SimulatedDevice(f"{args.prefix}-{i}", "load_cell", alg="EdDSA", lot=f"LOT-{args.prefix}") for i in range(args.devices)]
    for device in devices:
        r = http.post("/v1/devices", json=device.registration(), headers={"Authorization": f"Bearer {args.operator_key}"})
        if r.status_code != 201:
            print(f"cannot register {device.id}: {r.status_code} {r.text}", file=sys.stderr)
            return 2
    out = args.out.open("a", buffering=1)
    n = 0
    while not args.stop_file.exists() and time.monotonic() - started < args.duration:
        n += 1
        readings = [devices[i % len(devices)].reading({"weight_kg": 1000.0 + n + i / 1000}) for i in range(args.batch)]
        ids = [parse_reading(r).id for r in readings]
        attempt = 0
        while True:  # until the service answers this request, however long the fault lasts
            attempt += 1
            line: dict[str, Any] = {"n": n, "ids": ids, "attempt": attempt, "t": round(time.monotonic() - started, 3)}
            try:
                r = http.post("/v1/readings", json=readings)
            except httpx.HTTPError as exc:
                line.update(answer="none", error=f"{type(exc).__name__}: {exc}")
            else:
                if r.status_code >= 500:
                    line.update(answer="none", http=r.status_code, error=r.text[:300])
                elif r.status_code != 200:
                    line.update(answer="refused", http=r.status_code, error=r.text[:300])
                else:
                    results = r.json()
                    line.update(answer="ok", http=200, statuses=[x["status"] for x in results], codes=[x["code"] for x in results])
            out.write(json.dumps(line) + "\n")
            if line["answer"] != "none":
                break
            time.sleep(0.2)
        if args.pause:
            time.sleep(args.pause)
    out.close()
    return 0


@dataclass
class ClientLog:
    """What the gateway saw: requests by number, each with its attempts in order."""

    requests: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def answered(self) -> list[dict[str, Any]]:
        """The final answer of each request that got one."""
        return [a[-1] for a in self.requests.values() if a[-1]["answer"] != "none"]

    @property
    def unanswered_attempts(self) -> list[dict[str, Any]]:
        return [x for a in self.requests.values() for x in a if x["answer"] == "none"]

    @property
    def resent(self) -> list[list[dict[str, Any]]]:
        """The requests that took more than one attempt."""
        return [a for a in self.requests.values() if len(a) > 1]

    def acknowledged(self) -> list[str]:
        """Every reading id whose answer said accepted or duplicate: the ledger holds it."""
        return [i for x in self.answered for i, s in zip(x["ids"], x.get("statuses", [])) if s in ("accepted", "duplicate")]

    def statuses(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for x in self.answered:
            for s, c in zip(x.get("statuses", []), x.get("codes", [])):
                key = s if c is None else f"{s}:{c}"
                counts[key] = counts.get(key, 0) + 1
        return counts


def read_log(path: Path) -> ClientLog:
    log = ClientLog()
    if not path.exists():
        return log
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:  # the line the client is writing right now
            continue
        log.requests.setdefault(entry["n"], []).append(entry)
    return log


class LoadClient:
    """The gateway as a child process (a context manager: started, killed at the end if still running):
    :meth:`wait_answers`, :meth:`finish`."""

    def __init__(self, directory: Path, url: str, operator_key: str, **options: object) -> None:
        self.out = directory / "client.jsonl"
        self.stop_file = directory / "client.stop"
        self.stderr = directory / "client.stderr"
        self.cmd = [sys.executable, "-m", "tests.reliability.loadclient", "--url", url, "--operator-key", operator_key,
                    "--out", str(self.out), "--stop-file", str(self.stop_file)]  # fmt: skip
        for name, value in options.items():
            self.cmd += [f"--{name.replace('_', '-')}", str(value)]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LoadClient:
        from tests.conftest import ROOT

        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=self.stderr.open("wb"))
        return self

    def __enter__(self) -> LoadClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def log(self) -> ClientLog:
        return read_log(self.out)

    def wait_answers(self, count: int, timeout: float = 60.0) -> ClientLog:
        """Wait until ``count`` requests in all were answered; the log then."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.stderr.read_text()[-2000:]
            log = self.log()
            if len(log.answered) >= count:
                return log
            time.sleep(0.1)
        raise AssertionError(f"the client got fewer than {count} answers in {timeout} s")

    def finish(self, timeout: float = 120.0) -> ClientLog:
        """Send no new readings; wait until the request in hand is answered and the client exits."""
        self.stop_file.touch()
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the client did not finish within {timeout} s")
        assert code == 0, self.stderr.read_text()[-2000:]
        return self.log()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


if __name__ == "__main__":
    sys.exit(main())
