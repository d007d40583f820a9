#!/usr/bin/env python3
"""Soak test: steady ingestion with proof queries alongside, for a given time; memory and errors.

Run it with the project's interpreter::

    .venv/bin/python scripts/soak.py --duration 600                     # 10 minutes, own service
    .venv/bin/python scripts/soak.py --duration 20 --rate 20 --json     # a smoke run
    .venv/bin/python scripts/soak.py --url http://10.0.0.5:8000 --api-key plk_... --pid 4242 --duration 3600

What runs, all over HTTP (``httpx`` in one asyncio process):

- **ingestion**: ``--devices`` simulated ES256 devices (registered first, with proofs of
  possession) each post signed readings at an even pace, ``--rate`` readings/s in all, one
  reading per ``POST /v1/readings`` (201) or, with ``--batch-size N``, arrays of N as a gateway
  does (200, one result each). Each device's ``seq`` rises and its ``prev`` chains, timestamps
  are the current time. A device that falls behind its schedule sends at once (counted as late).
- **ingestion lag**: every ``--lag-every`` seconds the next accepted reading is followed: its
  proof is polled every ``--lag-poll`` seconds until it is served (its batch is sealed and
  anchored); the time from the 201 to that first 200 is the lag.
- **proof queries**: ``--proof-workers`` loops, ``--proof-rate`` requests/s in all, ask for the
  bundles of random readings already anchored (a reading answered before a followed reading that
  was posted later got its proof: sealing takes the oldest readings first). Each answer must be a
  200 bundle for the id asked for.
- **memory**: every ``--sample`` seconds the resident memory (VmRSS) of the service's processes,
  read from ``/proc``: the serve process and its HTTP workers ("service"), apart from a chain
  node it runs (anvil, "chain"). Also scraped from ``/metrics``: the anchoring backlog. The
  figure of merit is the slope of a least-squares line through the service RSS of the second
  half of the run, in MB per hour; growth is **bounded** when it is at most ``--max-growth``.

The service is either started here, like the other benchmarks (``pledgeledger serve`` on a
private PostgreSQL schema from ``--pg-url``, ``--chain`` ``managed`` by default: a local anvil, so
that the service's memory is not mixed with an in-process chain's, which grows with every block),
or a running one given by ``--url`` (then ``--api-key`` of an operator organisation registers the
devices and asks for proofs, and ``--pid`` names its process on this machine for the memory
figures; without it ``process_resident_memory_bytes`` from its ``/metrics`` is used, which a
single-process ``serve`` reports). Per-device rate limits stay on (``--lift-rate-limits`` to lift).

Progress (rich) goes to stderr; the report (tables, or with ``--json`` one JSON object) to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

from benchlib import (
    _DATA,
    BenchError,
    BenchService,
    add_service_args,
    device_specs,
    log,
    machine_info,
    new_device,
    percentile,
    run_bench,
)

ANCHORED_POOL = 100_000  # ids of anchored readings kept to ask proofs for (a uniform reservoir)

# ---------------------------------------------------------------------------------------------
# memory of the service's processes, from /proc


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command name) of every process."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        table[int(entry.name)] = (int(raw[raw.rindex(")") + 2 :].split()[1]), comm)
    return table


def _rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def tree_rss(root_pid: int) -> dict[str, Any] | None:
    """Resident memory in MB of ``root_pid`` and its descendants: the service (the root and every
    process that is not a chain node) and the chain (anvil); None when the root is gone."""
    table = _proc_table()
    if root_pid not in table:
        return None
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    service = chain = 0
    processes = 0
    todo = [root_pid]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        kb = _rss_kb(pid)
        if kb is None:
            continue
        processes += 1
        if pid != root_pid and "anvil" in table[pid][1]:
            chain += kb
        else:
            service += kb
    root = _rss_kb(root_pid)
    return {
        "service_mb": round(service / 1024, 1),
        "main_mb": round((root or 0) / 1024, 1),
        "chain_mb": round(chain / 1024, 1),
        "processes": processes,
    }


def parse_metrics(text: str) -> dict[str, float]:
    """The few /metrics samples the soak follows (summed over labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = {
        "process_resident_memory_bytes",
        "pledgeledger_backlog_readings",
        "pledgeledger_backlog_oldest_seconds",
        "pledgeledger_anchored_readings_total",
    }
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                found[sample.name] = found.get(sample.name, 0.0) + sample.value
    return found


# ---------------------------------------------------------------------------------------------
# the load


class Soak:
    """The shared state of one run: counters, samples, and the readings known to be anchored."""

    def __init__(self, args: argparse.Namespace, url: str, api_key: str, pid: int | None) -> None:
        self.args, self.url, self.api_key, self.pid = args, url, api_key, pid
        self.rng = random.Random(args.seed)
        self.requests: Counter[tuple[str, str]] = Counter()  # (what, status) -> count
        self.results: Counter[str] = Counter()  # reading results: accepted, duplicate, rejected:<code>
        self.error_samples: list[str] = []
        self.accepted = 0
        self.late = 0
        self.lag_s: list[float] = []
        self.lag_unresolved = 0
        self.proof_ms: list[float] = []
        self.post_ms: list[float] = []
        self.proof_bytes: list[int] = []
        self.memory: list[dict[str, Any]] = []
        self.answered: deque[tuple[float, str]] = deque()  # (time of the 201, id) not yet known anchored
        self.anchored: list[str] = []
        self.anchored_seen = 0
        self.watermark = 0.0  # readings answered before this moment are anchored
        self.follow_due = 0.0
        self.t0 = 0.0
        self.stop = asyncio.Event()

    # -- bookkeeping ---------------------------------------------------------------------------

    def count(self, what: str, status: int | str, detail: str = "") -> None:
        self.requests[(what, str(status))] += 1
        is_error = not (isinstance(status, int) and status < 400) and not (what == "lag poll" and status == 409)
        if is_error and len(self.error_samples) < 20:
            self.error_samples.append(f"{time.monotonic() - self.t0:7.1f} s {what}: {status} {detail[:200]}")

    def errors(self) -> int:
        return sum(
            n
            for (what, status), n in self.requests.items()
            if not status.isdigit() or (int(status) >= 400 and not (what == "lag poll" and status == "409"))
        )

    def mark_anchored(self, posted_at: float) -> None:
        """A reading posted at ``posted_at`` has its proof: so has every reading answered before it."""
        self.watermark = max(self.watermark, posted_at)
        while self.answered and self.answered[0][0] < self.watermark:
            _, reading_id = self.answered.popleft()
            self.anchored_seen += 1
            if len(self.anchored) < ANCHORED_POOL:
                self.anchored.append(reading_id)
            else:  # reservoir sampling keeps a uniform sample of every anchored reading
                j = self.rng.randrange(self.anchored_seen)
                if j < ANCHORED_POOL:
                    self.anchored[j] = reading_id

    # -- the tasks -----------------------------------------------------------------------------

    async def device_loop(self, client: Any, device: Any, k: int) -> None:
        args = self.args
        period = args.batch_size * args.devices / args.rate
        due = self.t0 + period * k / args.devices  # spread the devices over one period
        data_rng = random.Random(args.seed * 7919 + k)
        while not self.stop.is_set():
            now = time.monotonic()
            if due > now:
                try:
                    await asyncio.wait_for(self.stop.wait(), due - now)
                    return
                except TimeoutError:
                    pass
            elif now - due > period:
                self.late += 1
            due = max(due + period, time.monotonic() - period)  # never a burst to catch up more than one period
            readings = [device.reading(_DATA[device.kind](data_rng, device.seq)) for _ in range(args.batch_size)]
            body = readings[0] if args.batch_size == 1 else readings
            posted = time.monotonic()
            try:
                r = await client.post("/v1/readings", json=body)
            except Exception as exc:  # noqa: BLE001 - httpx errors and timeouts are counted, the soak goes on
                self.count("POST /v1/readings", type(exc).__name__, str(exc))
                continue
            answered = time.monotonic()
            self.post_ms.append(1000 * (answered - posted))
            self.count("POST /v1/readings", r.status_code, r.text if r.status_code >= 400 else "")
            if r.status_code >= 400:
                self.results[f"rejected:{_error_code(r)}"] += len(readings)
                continue
            results = [r.json()] if args.batch_size == 1 else r.json()
            for result in results:
                status = result.get("status")
                self.results[status if status != "rejected" else f"rejected:{result.get('code')}"] += 1
                if status == "accepted":
                    self.accepted += 1
                    self.answered.append((answered, result["id"]))
            if answered >= self.follow_due and results and results[-1].get("status") == "accepted":
                self.follow_due = answered + args.lag_every
                asyncio.get_running_loop().create_task(self.follow(client, results[-1]["id"], posted, answered))

    async def follow(self, client: Any, reading_id: str, posted: float, answered: float) -> None:
        """Poll the proof of one accepted reading until it is served: its ingestion lag."""
        while not self.stop.is_set():
            try:
                r = await client.get(f"/v1/readings/{reading_id}/proof", headers=self.auth)
            except Exception as exc:  # noqa: BLE001
                self.count("lag poll", type(exc).__name__, str(exc))
            else:
                self.count("lag poll", r.status_code, r.text if r.status_code not in (200, 409) else "")
                if r.status_code == 200:
                    self.lag_s.append(time.monotonic() - answered)
                    self.mark_anchored(posted)
                    return
                if r.status_code != 409:
                    return
            try:
                await asyncio.wait_for(self.stop.wait(), self.args.lag_poll)
            except TimeoutError:
                pass
        self.lag_unresolved += 1

    async def proof_loop(self, client: Any, k: int) -> None:
        period = self.args.proof_workers / self.args.proof_rate
        due = time.monotonic() + period * k / self.args.proof_workers
        rng = random.Random(self.args.seed * 104729 + k)
        while not self.stop.is_set():
            delay = due - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(self.stop.wait(), delay)
                    return
                except TimeoutError:
                    pass
            due = max(due + period, time.monotonic() - period)
            if not self.anchored:
                continue
            reading_id = rng.choice(self.anchored)
            t0 = time.monotonic()
            try:
                r = await client.get(f"/v1/readings/{reading_id}/proof", headers=self.auth)
            except Exception as exc:  # noqa: BLE001
                self.count("GET proof", type(exc).__name__, str(exc))
                continue
            elapsed = time.monotonic() - t0
            if r.status_code == 200 and r.json().get("digest") != "0x" + reading_id:
                self.count("GET proof", "wrong_bundle", f"asked {reading_id}, got {r.json().get('digest')}")
                continue
            self.count("GET proof", r.status_code, r.text if r.status_code != 200 else "")
            if r.status_code == 200:
                self.proof_ms.append(1000 * elapsed)
                self.proof_bytes.append(len(r.content))

    async def sampler(self, client: Any) -> None:
        while True:
            t = round(time.monotonic() - self.t0, 1)
            sample: dict[str, Any] = {"t_s": t}
            if self.pid is not None:
                rss = tree_rss(self.pid)
                if rss is None:
                    self.count("service process", "gone", f"pid {self.pid} is not running")
                else:
                    sample.update(rss)
            try:
                r = await client.get("/metrics")
                figures = parse_metrics(r.text) if r.status_code == 200 else {}
            except Exception as exc:  # noqa: BLE001
                self.count("GET /metrics", type(exc).__name__, str(exc))
                figures = {}
            else:
                self.count("GET /metrics", r.status_code)
            if "process_resident_memory_bytes" in figures:
                sample["metrics_rss_mb"] = round(figures["process_resident_memory_bytes"] / 2**20, 1)
                if self.pid is None:
                    sample["service_mb"] = sample["metrics_rss_mb"]
            for name, key in (
                ("pledgeledger_backlog_readings", "backlog_readings"),
                ("pledgeledger_backlog_oldest_seconds", "backlog_oldest_s"),
            ):
                if name in figures:
                    sample[key] = round(figures[name], 1)
            sample["accepted"] = self.accepted
            self.memory.append(sample)
            if self.stop.is_set():
                return
            try:
                await asyncio.wait_for(self.stop.wait(), self.args.sample)
            except TimeoutError:
                pass

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def _error_code(r: Any) -> str:
    try:
        return r.json()["error"]["code"]
    except Exception:  # noqa: BLE001 - not our error body
        return f"http_{r.status_code}"


async def register(url: str, api_key: str, devices: list[Any], *, wait_s: float) -> None:
    """Wait up to ``wait_s`` for ``/healthz``, then register ``devices`` over HTTP."""
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=120, headers={"Authorization": f"Bearer {api_key}"}) as client:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                (await client.get("/healthz")).raise_for_status()
                break
            except httpx.HTTPError as exc:
                if time.monotonic() > deadline:
                    raise BenchError(f"{url}/healthz did not answer 200 within {wait_s:.0f} s: {exc}") from None
                await asyncio.sleep(1.0)
        log(f"registering {len(devices)} devices over HTTP (each key recorded on chain)")
        for d in devices:
            try:
                r = await client.post("/v1/devices", json=d.registration())
            except httpx.HTTPError as exc:
                raise BenchError(f"registering {d.id}: {type(exc).__name__}: {exc}") from None
            if r.status_code != 201:
                raise BenchError(f"registering {d.id}: HTTP {r.status_code} {r.text[:500]}")


async def drive(soak: Soak, devices: list[Any]) -> None:
    """Run the load for ``--duration`` seconds with a progress display on stderr."""
    import httpx
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    args = soak.args
    # uvicorn closes a connection idle for 5 s; a request sent on it just then fails, so drop idle ones first
    limits = httpx.Limits(
        max_connections=args.devices + args.proof_workers + 64, max_keepalive_connections=64, keepalive_expiry=2.0
    )
    async with httpx.AsyncClient(base_url=soak.url, timeout=args.request_timeout, limits=limits) as client:
        soak.t0 = time.monotonic()
        tasks = [asyncio.create_task(soak.device_loop(client, d, k)) for k, d in enumerate(devices)]
        tasks += [asyncio.create_task(soak.proof_loop(client, k)) for k in range(args.proof_workers)]
        sampler = asyncio.create_task(soak.sampler(client))
        console = Console(stderr=True)
        with Progress(
            TextColumn("[bold]soak"),
            BarColumn(bar_width=24),
            TimeElapsedColumn(),
            TextColumn("/"),
            TimeRemainingColumn(),
            TextColumn("{task.description}", markup=False),
            console=console,
            disable=args.no_progress,
        ) as bar:
            task = bar.add_task("", total=args.duration)
            while (elapsed := time.monotonic() - soak.t0) < args.duration:
                last = soak.memory[-1] if soak.memory else {}
                bar.update(
                    task,
                    completed=elapsed,
                    description=(
                        f"{soak.accepted:,} readings ({soak.accepted / max(elapsed, 1e-9):,.0f}/s), "
                        f"{len(soak.proof_ms):,} proofs, {soak.errors()} errors, "
                        f"service {last.get('service_mb', '?')} MB, backlog {last.get('backlog_readings', '?')}"
                    ),
                )
                await asyncio.sleep(min(1.0, args.duration - elapsed))
            bar.update(task, completed=args.duration)
        soak.stop.set()
        await asyncio.gather(*tasks)
        await sampler
        # lag followers still polling: give them a moment to finish
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=args.request_timeout + 5)


# ---------------------------------------------------------------------------------------------
# figures


def slope_mb_per_h(points: list[tuple[float, float]]) -> float | None:
    if len(points) < 3 or points[-1][0] - points[0][0] <= 0:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    if len(set(xs)) < 2:
        return None
    return round(statistics.linear_regression(xs, ys).slope * 3600, 1)


def growth(memory: list[dict[str, Any]], duration: float, max_growth: float) -> dict[str, Any]:
    """Start, middle, end and the slopes of the service's RSS; bounded when the second half's
    slope is at most ``max_growth`` MB/h."""
    points = [(s["t_s"], s["service_mb"]) for s in memory if "service_mb" in s]
    if not points:
        return {"available": False}
    first = [p for p in points if p[0] < duration / 2]
    second = [p for p in points if p[0] >= duration / 2]
    slope2 = slope_mb_per_h(second)
    chain = [s["chain_mb"] for s in memory if s.get("chain_mb")]
    return {
        "available": True,
        "samples": len(points),
        "start_mb": points[0][1],
        "mid_mb": second[0][1] if second else None,
        "end_mb": points[-1][1],
        "max_mb": max(p[1] for p in points),
        "max_first_half_mb": max((p[1] for p in first), default=None),
        "max_second_half_mb": max((p[1] for p in second), default=None),
        "slope_first_half_mb_per_h": slope_mb_per_h(first),
        "slope_second_half_mb_per_h": slope2,
        "slope_all_mb_per_h": slope_mb_per_h(points),
        "max_growth_mb_per_h": max_growth,
        "bounded": slope2 is not None and slope2 <= max_growth,
        "chain_start_mb": chain[0] if chain else None,
        "chain_end_mb": chain[-1] if chain else None,
    }


def pct(values: list[float], digits: int = 1) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50": round(percentile(ordered, 0.5), digits),
        "p95": round(percentile(ordered, 0.95), digits),
        "p99": round(percentile(ordered, 0.99), digits),
        "max": round(ordered[-1], digits),
        "mean": round(statistics.fmean(ordered), digits),
    }


def summarise(soak: Soak, report: dict[str, Any], wall: float) -> None:
    args = soak.args
    by_status: dict[str, dict[str, int]] = {}
    for (what, status), n in sorted(soak.requests.items()):
        by_status.setdefault(what, {})[status] = n
    report.update(
        {
            "wall_s": round(wall, 1),
            "requests": by_status,
            "errors": soak.errors(),
            "error_samples": soak.error_samples,
            "readings": {
                "target_per_s": args.rate,
                "accepted": soak.accepted,
                "accepted_per_s": round(soak.accepted / wall, 1) if wall else 0.0,
                "results": dict(soak.results),
                "late_sends": soak.late,
                "post_latency_ms": pct(soak.post_ms),
            },
            "ingestion_lag_s": {**pct(soak.lag_s, 2), "unresolved": soak.lag_unresolved},
            "proofs": {
                "target_per_s": args.proof_rate,
                "per_s": round(len(soak.proof_ms) / wall, 1) if wall else 0.0,
                "latency_ms": pct(soak.proof_ms),
                "bundle_bytes_p50": int(percentile(sorted(soak.proof_bytes), 0.5)) if soak.proof_bytes else None,
                "anchored_readings_known": soak.anchored_seen,
            },
            "backlog": {
                "readings_max": max((s["backlog_readings"] for s in soak.memory if "backlog_readings" in s), default=None),
                "oldest_s_max": max((s["backlog_oldest_s"] for s in soak.memory if "backlog_oldest_s" in s), default=None),
            },
            "memory": growth(soak.memory, args.duration, args.max_growth),
            "memory_samples": soak.memory,
        }
    )


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console(file=sys.stdout, width=120)
    p, m, mem = report["params"], report["machine"], report["memory"]
    arrays = "" if p["batch_size"] == 1 else f" in arrays of {p['batch_size']}"
    out.print(
        f"[bold]pledgeledger soak[/]: {report['wall_s']:.0f} s against {report['service']['url']} "
        f"({report['service']['how']}); {p['devices']} devices at {p['rate']:g} readings/s{arrays}, "
        f"{p['proof_rate']:g} proofs/s over {p['proof_workers']} loops"
    )
    out.print(
        f"machine: {m['cores']} cores ({m['cpu_model']}), {m['mem_gb']} GB RAM; "
        f"{m.get('background_cores_before', '?')} cores busy with other work before the run"
    )

    table = Table(title="resident memory over time (MB)", title_justify="left")
    for col in ("t (s)", "service", "of which main", "chain", "processes", "backlog readings", "accepted"):
        table.add_column(col, justify="right")
    samples = report["memory_samples"]
    step = max(1, len(samples) // 20)
    shown = samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else [])
    for s in shown:
        table.add_row(
            f"{s['t_s']:.0f}",
            str(s.get("service_mb", "—")),
            str(s.get("main_mb", "—")),
            str(s.get("chain_mb") or "—"),
            str(s.get("processes", "—")),
            str(s.get("backlog_readings", "—")),
            f"{s['accepted']:,}",
        )
    out.print(table)
    if mem.get("available"):
        verdict = "[green]bounded[/]" if mem["bounded"] else "[red]NOT bounded[/]"
        out.print(
            f"service RSS: start {mem['start_mb']} MB, middle {mem['mid_mb']} MB, end {mem['end_mb']} MB, max {mem['max_mb']} MB; "
            f"slope {mem['slope_first_half_mb_per_h']} MB/h in the first half, "
            f"[bold]{mem['slope_second_half_mb_per_h']} MB/h in the second half[/] "
            f"(limit {mem['max_growth_mb_per_h']:g}): {verdict}"
        )
        if mem.get("chain_end_mb"):
            out.print(f"chain node RSS: {mem['chain_start_mb']} -> {mem['chain_end_mb']} MB")
    else:
        out.print("service RSS: not available (give --pid, or run a single-process service that serves /metrics)")

    table = Table(title="requests by status", title_justify="left")
    table.add_column("request")
    table.add_column("answers by status")
    for what, statuses in report["requests"].items():
        table.add_row(what, ", ".join(f"{s}: {n:,}" for s, n in statuses.items()))
    out.print(table)

    r, lag, pr = report["readings"], report["ingestion_lag_s"], report["proofs"]
    out.print(
        f"readings: {r['accepted']:,} accepted, {r['accepted_per_s']:g}/s of {r['target_per_s']:g}/s asked; "
        f"results {r['results']}; {r['late_sends']} sends more than a period late"
    )
    post = r["post_latency_ms"]
    if post["n"]:
        out.print(f"POST /v1/readings latency: p50 {post['p50']} ms, p95 {post['p95']} ms, p99 {post['p99']} ms, max {post['max']} ms")
    if lag["n"]:
        out.print(
            f"ingestion lag (201 -> proof served, {lag['n']} readings followed): p50 {lag['p50']} s, p95 {lag['p95']} s, "
            f"p99 {lag['p99']} s, max {lag['max']} s; {lag['unresolved']} still pending at the end"
        )
    lat = pr["latency_ms"]
    if lat["n"]:
        out.print(
            f"proofs: {lat['n']:,} served, {pr['per_s']:g}/s; latency p50 {lat['p50']} ms, p95 {lat['p95']} ms, "
            f"p99 {lat['p99']} ms, max {lat['max']} ms; bundle {pr['bundle_bytes_p50']} bytes"
        )
    b = report["backlog"]
    out.print(f"backlog (from /metrics): at most {b['readings_max']} readings, oldest {b['oldest_s_max']} s")
    out.print(f"[bold]errors: {report['errors']}[/]")
    for line in report["error_samples"][:10]:
        out.print(f"  {line}", markup=False)


# ---------------------------------------------------------------------------------------------
# the command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="soak.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit status: 0 done, 1 the run failed (the service did not start or died), 3 with --check when "
        "there were errors or the memory growth was not bounded, 130 interrupted.",
    )
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    parser.add_argument("--rate", type=float, default=50.0, help="readings per second in all (default 50)")
    parser.add_argument("-d", "--devices", type=int, default=10, help="simulated devices (default 10)")
    parser.add_argument(
        "--batch-size", type=int, default=1, help="readings per POST: 1 (default) as a device, more as a gateway"
    )
    parser.add_argument("--proof-rate", type=float, default=20.0, help="proof requests per second (default 20)")
    parser.add_argument("--proof-workers", type=int, default=4, help="concurrent proof loops (default 4)")
    parser.add_argument("--lag-every", type=float, default=2.0, help="follow one reading's lag this often, s (default 2)")
    parser.add_argument("--lag-poll", type=float, default=0.25, help="proof polling period of a followed reading, s (default 0.25)")
    parser.add_argument("--sample", type=float, default=5.0, help="memory and /metrics sampling period, s (default 5)")
    parser.add_argument(
        "--max-growth",
        type=float,
        default=20.0,
        metavar="MB_PER_H",
        help="the second half's RSS slope that still counts as bounded, MB/h (default 20)",
    )
    parser.add_argument("--request-timeout", type=float, default=30.0, help="seconds per request (default 30)")
    parser.add_argument(
        "--url", help="soak a running service at this URL instead of starting one (needs --api-key)"
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("PLEDGELEDGER_SOAK_API_KEY"),
        help="with --url: API key of an operator organisation [env PLEDGELEDGER_SOAK_API_KEY]",
    )
    parser.add_argument("--pid", type=int, help="with --url: the service's process id on this machine, for its memory")
    parser.add_argument(
        "--batch-interval", type=float, default=5.0, help="PLEDGELEDGER_BATCH_INTERVAL_S of a service started here (default 5)"
    )
    parser.add_argument(
        "--lift-rate-limits", action="store_true", help="lift the per-device rate limits of a service started here"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress display on stderr")
    parser.add_argument("--check", action="store_true", help="exit 3 on errors or unbounded memory growth")
    add_service_args(parser)
    parser.set_defaults(chain="managed")
    args = parser.parse_args(argv)
    if min(args.duration, args.rate, args.proof_rate, args.lag_every, args.lag_poll, args.sample) <= 0:
        parser.error("--duration, --rate, --proof-rate, --lag-every, --lag-poll and --sample must be positive")
    if args.devices < 1 or args.batch_size < 1 or args.proof_workers < 1:
        parser.error("--devices, --batch-size and --proof-workers must be at least 1")
    if args.batch_size > 1000:
        parser.error("--batch-size: the API takes at most 1,000 readings per request")
    if args.url and not args.api_key:
        parser.error("--url needs --api-key (an operator organisation's key: pledgeledger org create NAME --role operator)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    params = {
        k: getattr(args, k)
        for k in ("duration", "rate", "devices", "batch_size", "proof_rate", "proof_workers", "lag_every", "sample")
    }
    report: dict[str, Any] = {"machine": machine_info(), "params": params}

    def soak_against(url: str, api_key: str, pid: int | None, tag: str) -> None:
        devices = [new_device(s) for s in device_specs(args.devices, tag)]
        asyncio.run(register(url, api_key, devices, wait_s=120))
        soak = Soak(args, url, api_key, pid)
        log(f"soaking for {args.duration:g} s: {args.rate:g} readings/s from {args.devices} devices, {args.proof_rate:g} proofs/s")
        t0 = time.monotonic()
        asyncio.run(drive(soak, devices))
        summarise(soak, report, time.monotonic() - t0)

    def body() -> int:
        if args.url:
            report["service"] = {"url": args.url, "how": "running service", "pid": args.pid}
            soak_against(args.url.rstrip("/"), args.api_key, args.pid, f"soak{random.randrange(16**6):06x}")
        else:
            report["params"] |= {"chain": args.chain, "pg_url": args.pg_url, "serve_args": " ".join(args.serve_arg)}
            with BenchService.from_args(
                args, name="soak", batch_interval_s=args.batch_interval, lift_rate_limits=args.lift_rate_limits
            ) as bench:
                report["service"] = {
                    "url": bench.url,
                    "how": f"started here: PostgreSQL schema {bench.schema}, chain {args.chain}",
                    "pid": bench.service_sid,
                }
                operator = bench.create_org(f"soak operator {bench.tag}", "operator")
                soak_against(bench.url, operator, bench.service_sid, bench.tag)
                if bench.service.proc is not None and bench.service.proc.poll() is not None:
                    raise BenchError(f"the service died during the soak:\n{bench.service.tail()}")
        if args.check and (report["errors"] or not report["memory"].get("bounded")):
            return 3
        return 0

    return run_bench(report, body, print_report, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
