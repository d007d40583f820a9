#!/usr/bin/env python3
"""Alert latency benchmark: from a reading's acceptance to the freeze final on chain and to the webhooks.

Run it with the project's interpreter::

    .venv/bin/python scripts/bench_alerts.py                       # 10 trials, managed anvil, PostgreSQL
    .venv/bin/python scripts/bench_alerts.py --trials 5 --chain embedded --db sqlite --json

It opens the ledger in this process exactly as ``pledgeledger serve`` does (anchoring, supervision
and webhook loops running in the background, the batch interval ``--interval``, the supervision poll
its default) with the real FastAPI app on a loopback port, and a bank with a webhook receiver (a
local HTTP server that checks each delivery's HMAC-SHA256) subscribed to ``alert.raised`` and
``lot.frozen``. Organisations and lots are set up on chain with real EIP-712 signatures through
``ledger.actions`` (the same helper the tests use). Each trial pledges a fresh lot with one load
cell (10,000 kg at pledge), waits a random part of a poll period, then POSTs a reading 10% short
and measures, from the moment its 201 arrives:

- **frozen_s**: until ``CollateralRegistry.lotOf(lot).status`` reads ``Frozen`` (polled every 10 ms);
- **final_s**: until the freeze's block is final (``--confirmations`` blocks deep, the including one
  counted; 1 on the dev chains, where it equals frozen_s);
- **alert_webhook_s** / **frozen_webhook_s**: until the receiver has the ``alert.raised`` /
  ``lot.frozen`` delivery, each with a valid signature.

The target (issue 6) is a freeze within one anchoring interval plus one block.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import random
import statistics
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from benchlib import DEFAULT_PG_URL, BenchError, log, machine_info, machine_lines, pg_execute, run_bench, schema_url

import httpx  # noqa: E402 - after benchlib, which puts the repository on sys.path
import logging  # noqa: E402

from api.main import create_app  # noqa: E402
from ledger.chain.collateral import Status, identifier_hash  # noqa: E402
from ledger.service import Ledger  # noqa: E402
from ledger.settings import Settings  # noqa: E402
from ledger.simulator import SimulatedDevice  # noqa: E402
from tests.conftest import LiveServer  # noqa: E402
from tests.ledger.lotworld import make_world  # noqa: E402

FIGURES = ("frozen_s", "final_s", "alert_webhook_s", "frozen_webhook_s")


class Receiver:
    """The bank's webhook endpoint: records each event's arrival time after checking its signature."""

    def __init__(self) -> None:
        self.secret = ""
        self.arrivals: dict[tuple[str, str], float] = {}  # (event, lot) -> monotonic time
        self.bad_signatures = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                now = time.monotonic()
                expected = "sha256=" + hmac.new(receiver.secret.encode(), body, hashlib.sha256).hexdigest()
                if not hmac.compare_digest(self.headers.get("X-Pledgeledger-Signature", ""), expected):
                    receiver.bad_signatures += 1
                else:
                    event = json.loads(body)
                    lot = event["data"].get("lot")
                    receiver.arrivals.setdefault((event["event"], lot), now)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, event: str, lot: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while (event, lot) not in self.arrivals:
            if time.monotonic() > deadline:
                raise BenchError(f"no signed {event} for {lot} within {timeout} s")
            time.sleep(0.005)
        return self.arrivals[(event, lot)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _trial(i: int, world: Any, http: httpx.Client, receiver: Receiver, args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    ledger = world.ledger
    lot = f"LOT-BENCH-{i}-{uuid.uuid4().hex[:6]}"
    scale = SimulatedDevice(f"{lot}-scale", "load_cell", lot=lot)
    r = http.post("/v1/devices", json=scale.registration(), headers={"Authorization": f"Bearer {world.api_keys['warehouse']}"})
    if r.status_code != 201:
        raise BenchError(f"device registration failed: {r.status_code} {r.text}")
    world.lot(lot, devices=[scale.id])
    http.post("/v1/readings", json=scale.reading({"weight_kg": 10_000.0})).raise_for_status()
    world.pledge(lot)
    time.sleep(rng.uniform(0, ledger.settings.supervision_poll))  # any phase of the poll
    drop = scale.reading({"weight_kg": 9_000.0})
    response = http.post("/v1/readings", json=drop)
    accepted = time.monotonic()
    if response.status_code != 201:
        raise BenchError(f"the drop reading was refused: {response.status_code} {response.text}")
    chain_lot, timeout = identifier_hash(lot), args.interval + 60
    deadline = accepted + timeout
    while ledger.collateral.lot(chain_lot).status != Status.FROZEN:
        if time.monotonic() > deadline:
            raise BenchError(f"lot {lot} not frozen within {timeout} s")
        time.sleep(0.01)
    frozen = time.monotonic()
    alerts = ledger.supervision.alerts(world.orgs["bank"], lot=lot)
    block = (alerts[0]["freeze"] or {}).get("block_number") if alerts else None
    block = block or ledger.chain.client.block_number()
    while ledger.chain.client.block_number() < block + args.confirmations - 1:
        if time.monotonic() > deadline:
            raise BenchError(f"the freeze of {lot} not final within {timeout} s")
        time.sleep(0.05)
    final = time.monotonic()
    alert_hook = receiver.wait("alert.raised", lot, timeout)
    frozen_hook = receiver.wait("lot.frozen", lot, timeout)
    result = {"lot": lot, "frozen_s": frozen - accepted, "final_s": final - accepted, "alert_webhook_s": alert_hook - accepted,
              "frozen_webhook_s": frozen_hook - accepted}  # fmt: skip
    log(f"trial {i + 1}: frozen {result['frozen_s']:.3f} s, final {result['final_s']:.3f} s, alert.raised "
        f"{result['alert_webhook_s']:.3f} s, lot.frozen {result['frozen_webhook_s']:.3f} s")  # fmt: skip
    return result


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"mean": statistics.fmean(ordered), "p50": statistics.median(ordered), "min": ordered[0], "max": ordered[-1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10, help="lots frozen, one after another (default %(default)s)")
    parser.add_argument("--interval", type=float, default=5.0, help="the anchoring interval, batch_interval_s (default %(default)s s, the service's)")
    parser.add_argument("--chain", default="managed", help="managed (default: a local anvil), embedded (py-evm) or an http(s):// RPC URL")
    parser.add_argument("--relayer-key", default=None, help="0x key paying for an RPC chain (also the supervision key)")
    parser.add_argument("--block-time", type=float, default=1.0, help="the chain's block time, for the target (default 1 s)")
    parser.add_argument("--confirmations", type=int, default=1, help="blocks after which a freeze is final (default 1: dev chains)")
    parser.add_argument("--db", default="postgresql", help="postgresql (a private schema in --pg-url; default), sqlite, or a database URL")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help=f"PostgreSQL for --db postgresql (default {DEFAULT_PG_URL})")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the waits before each drop")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of the summary")
    args = parser.parse_args()
    if args.trials < 1 or args.interval <= 0 or args.confirmations < 1:
        parser.error("--trials and --confirmations need at least 1, --interval a positive number")
    report: dict[str, Any] = {"machine": machine_info(), "params": {k: v for k, v in vars(args).items() if k not in ("json", "relayer_key")}}

    def body() -> int:
        with tempfile.TemporaryDirectory(prefix="bench-alerts-") as tmp:
            schema = None
            db_url = args.db
            if args.db == "postgresql":
                schema = f"bench_{uuid.uuid4().hex[:10]}"
                pg_execute(args.pg_url, f"CREATE SCHEMA {schema}")
                db_url = schema_url(args.pg_url, schema)
            elif args.db == "sqlite":
                db_url = f"sqlite:///{Path(tmp) / 'ledger.sqlite3'}"
            try:
                report["trials"] = _run(args, db_url, Path(tmp) / "data")
            finally:
                if schema:
                    pg_execute(args.pg_url, f"DROP SCHEMA {schema} CASCADE")
        report["summary"] = {name: _summary([t[name] for t in report["trials"]]) for name in FIGURES}
        report["within_interval_plus_block"] = all(t["frozen_s"] <= args.interval + args.block_time for t in report["trials"])
        return 0

    return run_bench(report, body, _print, as_json=args.json)


def _run(args: argparse.Namespace, db_url: str, data_dir: Path) -> list[dict[str, Any]]:
    settings = Settings(data_dir=data_dir, db_url=db_url, chain=args.chain, batch_interval_s=args.interval,
                        relayer_key=args.relayer_key, confirmations=args.confirmations)  # fmt: skip
    log(f"opening the ledger: chain {args.chain}, {db_url.split('?')[0]}, interval {args.interval} s, "
        f"supervision poll {settings.supervision_poll} s")  # fmt: skip
    logging.getLogger("ledger").setLevel(logging.ERROR)  # each alert and freeze is logged at WARNING: not the figures
    ledger = Ledger.open(settings, start_anchoring=True)
    receiver = Receiver()
    try:
        world = make_world(ledger)
        with LiveServer(create_app(ledger=ledger)) as server, httpx.Client(base_url=server.url, timeout=30) as http:
            r = http.post("/v1/webhooks", json={"url": receiver.url, "events": ["alert.raised", "lot.frozen"]},
                          headers={"Authorization": f"Bearer {world.api_keys['bank']}"})  # fmt: skip
            r.raise_for_status()
            receiver.secret = r.json()["secret"]
            rng = random.Random(args.seed)
            trials = [_trial(i, world, http, receiver, args, rng) for i in range(args.trials)]
        if receiver.bad_signatures:
            raise BenchError(f"{receiver.bad_signatures} webhook deliveries had a wrong signature")
        return trials
    finally:
        receiver.close()
        ledger.close()


def _print(report: dict[str, Any]) -> None:
    p = report["params"]
    print(f"bench_alerts: {len(report['trials'])} trials, chain {p['chain']}, db {p['db']}, anchoring interval {p['interval']} s")
    for line in machine_lines(report["machine"]):
        print(line)
    print(f"  {'from the reading accepted to':32} {'mean':>8} {'p50':>8} {'min':>8} {'max':>8}")
    names = {"frozen_s": "the lot frozen on chain", "final_s": "the freeze final", "alert_webhook_s": "alert.raised delivered",
             "frozen_webhook_s": "lot.frozen delivered"}  # fmt: skip
    for name in FIGURES:
        s = report["summary"][name]
        print(f"  {names[name]:32} {s['mean']:7.3f}s {s['p50']:7.3f}s {s['min']:7.3f}s {s['max']:7.3f}s")
    verdict = "yes" if report["within_interval_plus_block"] else "NO"
    print(f"  every freeze within one interval plus one block: {verdict}")


if __name__ == "__main__":
    raise SystemExit(main())
