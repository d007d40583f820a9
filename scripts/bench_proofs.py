#!/usr/bin/env python3
"""Proof-serving benchmark: acceptance to proof, bundle size, and the proof endpoint at 10k and 1M readings.

Run it with the project's interpreter (the ``pledgeledger`` command is taken from the same
venv)::

    .venv/bin/python scripts/bench_proofs.py                     # 10,000 then 1,000,000 stored readings
    .venv/bin/python scripts/bench_proofs.py --small 2000 --large 20000 --seconds 3 --json

It starts the real service (``pledgeledger serve`` as a subprocess, PostgreSQL in a private
schema, the embedded py-evm chain, batch interval 1 s) and measures, in one run:

1. **accept_to_proof_s**: single signed readings are posted one at a time at random moments
   (spread over many anchoring intervals); for each, the time from its ``POST /v1/readings``
   201 to the first 200 of ``GET /v1/readings/{id}/proof``, polled every ``--poll-ms`` (the
   409 ``proof_pending`` answers must carry ``Retry-After``). Mean, p50, p95, max. Measured
   at the small store and again, as a check, at the large one.
2. **proof_bytes**: the size of the proof bundle JSON as served and its number of proof
   siblings, for every batch size that occurs (single readings, HTTP batches of 1,000, full
   batches of 65,536), and the typical bundle of the large store.
3. **proof endpoint at ``--small`` and ``--large`` stored readings**: a separate, spawned load
   generator keeps ``--connections`` keep-alive connections busy (one thread each) asking for
   the proofs of random stored readings (bank API key), ``--warmup`` seconds, then
   ``--seconds`` timed: requests/s and p50/p99 latency. Every answer (warm-up too) must be 200
   with an anchored (included or final) bundle whose digest is the id asked for; anything else counts as an error.
   The ids are a uniform random sample (``--id-sample``) of ALL stored readings, real and
   filler, so the large figure is for a large table, not a hot subset. Before each
   measurement every reading is anchored and the tables are ``VACUUM ANALYZE``-d (sealing
   rewrites each reading row once). **proof_flatness** = p99 at large / p99 at small
   (target <= 1.5), and the requests/s ratio.

Filling the store: the first ``--small`` readings are real, signed by ``--devices`` simulated
ES256 devices and ingested over HTTP in batches of 1,000. To reach ``--large`` in minutes, the
rest are **unsigned synthetic filler rows** written straight into the readings table with
PostgreSQL COPY (``ledger.store.db.bulk_insert``): devices registered over HTTP like the real
ones, plausible envelopes with random 64-byte "signatures", random 64-hex ids and random
32-byte salts, committed 65,536 at a time. Signing and ingesting a million real readings would
take many minutes on top, and the proof path never re-verifies signatures: serving a proof is
the same row read for a filler row as for a real one. The running service's anchorer then
seals the filler into batches of up to 65,536 and anchors them like any others; the benchmark
waits until no reading is unbatched and every batch is anchored (included or final). Filler bundles are
well-formed but fail ``pledgeledger verify`` at the signature (and digest) check.

The machine is reported (cores, CPU model, memory), the load of other processes before the run,
and the CPU split (service, PostgreSQL, load generator, anything else) of every timed window,
with a warning when other processes used CPU meanwhile (the machine may be shared).
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import socket
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from benchlib import (
    _DATA,
    BenchError,
    BenchService,
    CpuWindow,
    add_service_args,
    build_batches,
    cpu_lines,
    device_specs,
    expect_message,
    log,
    machine_lines,
    new_device,
    new_report,
    percentile,
    pg_execute,
    run_bench,
    spawn_child,
    ts_text,
)

TARGET_FLATNESS = 1.5
#: readings per committed COPY of filler: the service's default batch_max_size, so that every
#: committed chunk is sealed as one full batch
FILL_CHUNK = 65_536
FILLER_DEVICES = 8
FILLER_NOTE = (
    "filler rows are unsigned synthetic readings (random signature bytes, random 64-hex ids, random salts) "
    "written with PostgreSQL COPY, then sealed and anchored by the running service like any others: signing and "
    "ingesting that many real readings would take many minutes, and the proof path does not re-verify signatures"
)


# ---------------------------------------------------------------------------------------------
# filling the store


def ingest_real(bench: BenchService, devices: list[Any], total: int, *, not_before: float, rng: random.Random) -> float:
    """``total`` signed readings over HTTP in batches of 1,000; returns the seconds taken."""
    import httpx

    now = datetime.now(UTC)
    base = max(now - timedelta(seconds=120), datetime.fromtimestamp(not_before, UTC) - timedelta(seconds=250))
    log(f"signing {total:,} readings of {len(devices)} devices")
    batches = build_batches(devices, total, 1000, rng=rng, base=base, span_s=110.0)
    log(f"ingesting them over HTTP in {len(batches)} batches of up to 1,000")
    t0 = time.perf_counter()
    with httpx.Client(base_url=bench.url, timeout=600) as client:
        for i, batch in enumerate(batches, 1):
            r = client.post("/v1/readings", json=batch)
            if r.status_code != 200:
                raise BenchError(f"POST /v1/readings: HTTP {r.status_code} {r.text[:500]}")
            refused = [x for x in r.json() if x["status"] != "accepted"]
            if refused:
                raise BenchError(f"{len(refused)} readings not accepted, e.g. {refused[0]}")
            if i % 10 == 0 or i == len(batches):
                log(f"  ingested {min(i * 1000, total):,}/{total:,}")
    return time.perf_counter() - t0


def _filler_row(
    device: Any, key_id: int, moment: datetime, received_at: datetime, rng: random.Random
) -> dict[str, Any]:
    """The next reading of ``device`` as a readings row, with a random id and signature."""
    from attestation.encoding import b64url_encode

    device.seq += 1
    reading_id = rng.randbytes(32).hex()
    payload = {
        "v": 1,
        "device": device.id,
        "seq": device.seq,
        "prev": device.prev,
        "ts": ts_text(moment),
        "kind": device.kind,
        "lot": device.lot,
        "data": _DATA[device.kind](rng, device.seq),
    }
    device.prev = reading_id
    envelope = {"payload": payload, "alg": "ES256", "sig": b64url_encode(rng.randbytes(64))}
    return {
        "id": reading_id,
        "device_id": device.id,
        "key_id": key_id,
        "seq": device.seq,
        "ts": moment.replace(tzinfo=None, microsecond=moment.microsecond // 1000 * 1000),
        "kind": device.kind,
        "lot": device.lot,
        "envelope": json.dumps(envelope, separators=(",", ":"), ensure_ascii=False),
        "salt": rng.randbytes(32),
        "prev_mismatch": False,
        "received_at": received_at,
    }


def add_filler(bench: BenchService, devices: list[Any], count: int, *, not_before: float, rng: random.Random) -> float:
    """COPY ``count`` synthetic readings of ``devices`` (already registered) in chunks of
    :data:`FILL_CHUNK`, each committed on its own; returns the seconds taken."""
    from sqlalchemy import select, update

    from ledger.settings import normalise_db_url
    from ledger.store.db import Database, bulk_insert
    from ledger.store.models import Device, DeviceKeyRecord, Reading, naive_utc

    log(f"adding {count:,} synthetic filler readings with COPY (unsigned; see --help)")
    db = Database(normalise_db_url(bench.db_url))
    try:
        with db.session() as session:
            keys = dict(
                session.execute(
                    select(DeviceKeyRecord.device_id, DeviceKeyRecord.id).where(
                        DeviceKeyRecord.device_id.in_([d.id for d in devices])
                    )
                ).all()
            )
        # timestamps from just after the keys became valid up to now, in order
        start = datetime.fromtimestamp(not_before, UTC) - timedelta(seconds=250)
        step = (datetime.now(UTC) - start) / count
        t0 = time.perf_counter()
        written = 0
        while written < count:
            n = min(FILL_CHUNK, count - written)
            received_at = naive_utc(datetime.now(UTC))
            rows = [
                _filler_row(
                    devices[j % len(devices)], keys[devices[j % len(devices)].id], start + step * j, received_at, rng
                )
                for j in range(written, written + n)
            ]
            with db.session() as session:
                bulk_insert(session, Reading.__table__, rows)
            written += n
            elapsed = time.perf_counter() - t0
            log(f"  filler {written:,}/{count:,} committed ({written / elapsed:,.0f} rows/s)")
        last_ts = start + step * (count - 1)
        with db.session() as session:  # keep the devices' sequencing state true to their last reading
            for d in devices:
                session.execute(
                    update(Device)
                    .where(Device.id == d.id)
                    .values(last_seq=d.seq, last_digest=d.prev, last_ts=naive_utc(last_ts))
                )
        return time.perf_counter() - t0
    finally:
        db.dispose()


def wait_anchored(bench: BenchService, expected: int, *, timeout: float) -> dict[str, Any]:
    """Wait until the store holds ``expected`` readings, none unbatched, every batch anchored."""
    import httpx

    t0 = time.monotonic()
    last_note = 0.0
    while True:
        if bench.service.proc is None or bench.service.proc.poll() is not None:
            raise BenchError("the service exited while anchoring")
        pending = pg_execute(bench.db_url, "SELECT count(*) FROM readings WHERE batch_index IS NULL")[0][0]
        batches, unconfirmed = pg_execute(
            bench.db_url, "SELECT count(*), count(*) FILTER (WHERE status NOT IN ('included', 'final')) FROM batches"
        )[0]
        waited = time.monotonic() - t0
        if pending == 0 and unconfirmed == 0:
            stored = pg_execute(bench.db_url, "SELECT count(*) FROM readings")[0][0]
            if stored != expected:
                raise BenchError(f"the store holds {stored:,} readings, expected {expected:,}")
            log(f"all {stored:,} readings anchored in {batches} batches (waited {waited:.1f} s)")
            return {"stored": stored, "batches": batches, "waited_s": round(waited, 1)}
        if waited > timeout:
            raise BenchError(
                f"not anchored within {timeout:.0f} s: {pending:,} unbatched, {unconfirmed} batches pending"
            )
        if waited - last_note >= 5:
            last_note = waited
            note = ""
            try:
                error = httpx.get(f"{bench.url}/healthz", timeout=10).json().get("anchoring", {}).get("last_error")
                note = f"; anchoring error: {error}" if error else ""
            except httpx.HTTPError:
                note = "; /healthz did not answer"
            log(
                f"  anchoring: {expected - pending:,}/{expected:,} readings sealed into {batches} batches, "
                f"{unconfirmed} not yet anchored ({waited:.0f} s){note}"
            )
        time.sleep(1.0)


def vacuum(bench: BenchService) -> float:
    """``VACUUM ANALYZE`` the readings and batches (a steady-state store, not one full of dead rows)."""
    t0 = time.perf_counter()
    for table in ("readings", "batches"):
        pg_execute(bench.db_url, f"VACUUM ANALYZE {table}")
    took = time.perf_counter() - t0
    log(f"VACUUM ANALYZE readings, batches: {took:.1f} s")
    return took


# ---------------------------------------------------------------------------------------------
# 1. acceptance to proof


def accept_to_proof(
    bench: BenchService, api_key: str, devices: list[Any], *, samples: int, poll_s: float, rng: random.Random
) -> dict[str, Any]:
    """Post ``samples`` single readings at random moments; time each 201 to its first proof."""
    import httpx

    log(f"accept -> proof: {samples} single readings, one at a time, proofs polled every {poll_s * 1000:.0f} ms")
    meter = CpuWindow(bench.service_sid)
    t0 = time.perf_counter()
    futures = []
    with httpx.Client(base_url=bench.url, timeout=60) as poster, ThreadPoolExecutor(max_workers=16) as pool:
        for i in range(samples):
            time.sleep(rng.uniform(0.05, 0.95))  # a random phase of the 1 s anchoring interval
            device = devices[i % len(devices)]
            envelope = device.reading(_DATA[device.kind](rng, device.seq), ts=ts_text(datetime.now(UTC)))
            r = poster.post("/v1/readings", json=envelope)
            accepted = time.perf_counter()
            if r.status_code != 201:
                raise BenchError(f"POST /v1/readings (single): HTTP {r.status_code} {r.text[:500]}")
            futures.append(pool.submit(_first_proof, bench.url, api_key, r.json()["id"], accepted, poll_s))
        results = [f.result() for f in futures]
    wall = time.perf_counter() - t0
    times = sorted(r["s"] for r in results)
    retry_after: Counter[str] = Counter()
    for r in results:
        retry_after.update(r["retry_after"])
    summary = {
        "n": len(times),
        "mean": round(statistics.fmean(times), 3),
        "p50": round(percentile(times, 0.5), 3),
        "p95": round(percentile(times, 0.95), 3),
        "max": round(times[-1], 3),
        "min": round(times[0], 3),
        "poll_ms": round(poll_s * 1000),
        "polls_mean": round(statistics.fmean(r["polls"] for r in results), 1),
        "retry_after_values": dict(retry_after),
        "over_s": round(wall, 1),
        "problems": [p for r in results for p in r["problems"]][:10],
        "cpu": meter.stop(wall),
        "bundles": [(r["batch"], r["bytes"], r["siblings"]) for r in results],
    }
    log(
        f"accept -> proof: mean {summary['mean']:.3f} s, p50 {summary['p50']:.3f} s, p95 {summary['p95']:.3f} s, "
        f"max {summary['max']:.3f} s over {wall:.0f} s"
    )
    return summary


def _first_proof(url: str, api_key: str, reading_id: str, accepted: float, poll_s: float) -> dict[str, Any]:
    import httpx

    retry_after: Counter[str] = Counter()
    problems: list[str] = []
    polls = 0
    with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {api_key}"}) as client:
        while True:
            asked = time.perf_counter()
            r = client.get(f"/v1/readings/{reading_id}/proof")
            polls += 1
            if r.status_code == 200:
                answered = time.perf_counter()
                bundle = r.json()
                if bundle["digest"] != "0x" + reading_id:
                    problems.append(f"{reading_id}: the bundle is for {bundle['digest']}")
                return {
                    "s": answered - accepted,
                    "polls": polls,
                    "retry_after": retry_after,
                    "problems": problems,
                    "bytes": len(r.content),
                    "siblings": len(bundle["proof"]),
                    "batch": bundle["anchor"]["index"],
                }
            code = r.json().get("error", {}).get("code") if r.status_code == 409 else None
            if code == "proof_pending" and "retry-after" in r.headers:
                retry_after[r.headers["retry-after"]] += 1
            elif len(problems) < 3:
                problems.append(
                    f"{reading_id}: HTTP {r.status_code} {r.text[:200]} (Retry-After {r.headers.get('retry-after')})"
                )
            if time.perf_counter() - accepted > 300:
                raise BenchError(f"no proof for {reading_id} within 300 s of its acceptance: {problems}")
            time.sleep(max(0.0, asked + poll_s - time.perf_counter()))


# ---------------------------------------------------------------------------------------------
# 3. the proof endpoint under load: a spawned load generator


def _proof_loadgen(spec: dict[str, Any], out: Any, go: Any) -> None:
    ids: list[str] = spec["ids"]
    host, port, n_conns = spec["host"], spec["port"], spec["connections"]
    headers = {"Authorization": f"Bearer {spec['api_key']}", "Connection": "keep-alive"}

    def connect() -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(host, port, timeout=spec["timeout"])
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    connections = [connect() for _ in range(n_conns)]
    out.put({"type": "ready"})
    if not go.wait(timeout=300):
        raise RuntimeError("no start signal from the parent")

    stop = threading.Event()
    records: list[list[tuple[float, float, int, str, bytes]]] = [[] for _ in range(n_conns)]
    failures: list[str] = []

    def worker(k: int) -> None:
        rng = random.Random(spec["seed"] * 1000 + k)
        conn = connections[k]
        while not stop.is_set():
            reading_id = rng.choice(ids)
            t0 = time.perf_counter()
            try:
                conn.request("GET", f"/v1/readings/{reading_id}/proof", headers=headers)
                resp = conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                failures.append(f"connection {k}: {type(exc).__name__}: {exc}")
                conn.close()  # the next request reconnects
                continue
            records[k].append((t0, time.perf_counter(), resp.status, reading_id, body))

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(n_conns)]
    for t in threads:
        t.start()
    time.sleep(spec["warmup"])
    meter = CpuWindow(spec["service_sid"])
    w0 = time.perf_counter()
    time.sleep(spec["seconds"])
    w1 = time.perf_counter()
    cpu = meter.stop(w1 - w0)
    stop.set()
    for t in threads:
        t.join(timeout=spec["timeout"] + 5)
    for c in connections:
        c.close()

    # the clock has stopped: check every answer (warm-up included), then the timed window's figures
    errors: Counter[str] = Counter({"connection": len(failures)} if failures else {})
    samples = failures[:3]
    latencies: list[float] = []
    bundles: list[tuple[int, int, int]] = []  # (batch index, bytes, proof siblings) of every good answer
    asked: set[str] = set()
    for rs in records:
        for t0, t1, status, reading_id, body in rs:
            problem = None
            if status != 200:
                problem = f"HTTP {status}"
            else:
                bundle = json.loads(body)
                if bundle.get("digest") != "0x" + reading_id:
                    problem = "wrong reading"
                elif bundle.get("anchor", {}).get("status") not in ("included", "final"):
                    problem = "not anchored"
                else:
                    bundles.append((bundle["anchor"]["index"], len(body), len(bundle["proof"])))
            if problem:
                errors[problem] += 1
                if len(samples) < 5:
                    samples.append(f"{reading_id}: {problem}: {body[:200]!r}")
            if w0 <= t1 <= w1:
                latencies.append(t1 - t0)
                asked.add(reading_id)
    latencies.sort()
    window = w1 - w0
    out.put(
        {
            "type": "done",
            "window_s": round(window, 3),
            "requests": len(latencies),
            "requests_total": sum(len(rs) for rs in records),
            "distinct_readings": len(asked),
            "rps": round(len(latencies) / window, 1),
            "latency_ms": {
                "p50": round(1000 * percentile(latencies, 0.5), 2),
                "p99": round(1000 * percentile(latencies, 0.99), 2),
                "mean": round(1000 * statistics.fmean(latencies), 2),
                "max": round(1000 * latencies[-1], 2),
            }
            if latencies
            else {},
            "errors": sum(errors.values()),
            "error_kinds": dict(errors),
            "error_samples": samples,
            "cpu": cpu,
            "bundles": bundles,
        }
    )


def measure_proofs(bench: BenchService, api_key: str, args: argparse.Namespace, *, stored: int) -> dict[str, Any]:
    """Proof requests/s and latency with ``stored`` readings, from a spawned load generator."""
    ids = [
        row[0] for row in pg_execute(bench.db_url, f"SELECT id FROM readings ORDER BY random() LIMIT {args.id_sample}")
    ]
    log(
        f"proofs at {stored:,} stored: {args.connections} keep-alive connections, random ids from a uniform sample "
        f"of {len(ids):,} of all {stored:,} readings; {args.warmup:g} s warm-up, then {args.seconds:g} s timed"
    )
    spec = {
        "ids": ids,
        "api_key": api_key,
        "host": "127.0.0.1",
        "port": bench.service.port,
        "connections": args.connections,
        "warmup": args.warmup,
        "seconds": args.seconds,
        "timeout": 60.0,
        "seed": args.seed,
        "service_sid": bench.service_sid,
    }
    proc, out, go = spawn_child(_proof_loadgen, spec)
    try:
        expect_message(out, proc, "ready", timeout=120)
        go.set()
        msg = expect_message(out, proc, "done", timeout=args.warmup + args.seconds + 180)
        proc.join(timeout=30)
    finally:
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=10)
    result = {k: v for k, v in msg.items() if k != "type"}
    result["stored"] = stored
    result["id_sample"] = len(ids)
    cpu = result["cpu"]
    if cpu and result["rps"]:  # the cost side: CPU per proof, service and PostgreSQL
        result["cpu_ms_per_request"] = {
            "service": round(1000 * cpu["service_cores"] / result["rps"], 2),
            "postgres": round(1000 * cpu["postgres_cores"] / result["rps"], 2),
        }
    lat = result["latency_ms"]
    log(
        f"proofs at {stored:,} stored: {result['rps']:,.0f} requests/s, p50 {lat.get('p50')} ms, p99 {lat.get('p99')} ms, "
        f"{result['errors']} errors"
    )
    return result


# ---------------------------------------------------------------------------------------------
# 2. bundle sizes


def proof_sizes(bundles: list[tuple[int, int, int]], batch_sizes: dict[int, int]) -> list[dict[str, Any]]:
    """Bundle bytes by number of proof siblings, with the sizes of the batches they came from."""
    groups: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for index, size, siblings in bundles:
        groups[siblings].append((batch_sizes[index], size))
    rows = []
    for siblings, items in sorted(groups.items()):
        sizes = sorted(s for _, s in items)
        counts = [c for c, _ in items]
        rows.append(
            {
                "siblings": siblings,
                "batch_readings_min": min(counts),
                "batch_readings_max": max(counts),
                "bundles": len(sizes),
                "bytes_p50": percentile(sizes, 0.5),
                "bytes_min": sizes[0],
                "bytes_max": sizes[-1],
            }
        )
    return rows


def typical_bundle(bundles: list[tuple[int, int, int]], batch_sizes: dict[int, int]) -> dict[str, Any]:
    """The median-sized bundle of a uniform sample of the store, its siblings and batch size."""
    ordered = sorted(bundles, key=lambda b: b[1])
    index, size, siblings = ordered[len(ordered) // 2]
    return {"bytes": size, "siblings": siblings, "batch_readings": batch_sizes[index]}


# ---------------------------------------------------------------------------------------------
# orchestration


def run(args: argparse.Namespace, report: dict[str, Any]) -> None:
    rng = random.Random(args.seed)
    with BenchService.from_args(args, name="bench_proofs", batch_interval_s=args.batch_interval) as bench:
        report["schema"] = bench.schema
        operator_key = bench.create_org(f"bench operator {bench.tag}", "operator")
        bank_key = bench.create_org(f"bench bank {bench.tag}", "bank")  # proofs are asked for by a bank
        specs = device_specs(args.devices + FILLER_DEVICES, bench.tag)
        devices = [new_device(s) for s in specs]
        real, filler = devices[: args.devices], devices[args.devices :]
        not_before = time.time()
        stages: dict[str, Any] = {"register_s": round(bench.register_devices(operator_key, devices), 1)}
        report["stages"] = stages

        # the small store: real readings only
        stages["ingest_real_s"] = round(ingest_real(bench, real, args.small, not_before=not_before, rng=rng), 1)
        stages["anchor_small"] = wait_anchored(bench, args.small, timeout=args.anchor_timeout)
        stages["vacuum_small_s"] = round(vacuum(bench), 1)
        small = measure_proofs(bench, bank_key, args, stored=args.small)
        report["proofs"] = {"small": small}
        latency = accept_to_proof(
            bench, bank_key, real, samples=args.latency_samples, poll_s=args.poll_ms / 1000, rng=rng
        )
        report["accept_to_proof_s"] = latency

        # the large store: filler up to --large
        stored = args.small + args.latency_samples
        filler_rows = args.large - stored
        stages["filler_copy_s"] = round(add_filler(bench, filler, filler_rows, not_before=not_before, rng=rng), 1)
        stages["anchor_large"] = wait_anchored(bench, args.large, timeout=args.anchor_timeout)
        stages["vacuum_large_s"] = round(vacuum(bench), 1)
        report["store"] = {
            "real_readings": stored,
            "filler_readings": filler_rows,
            "filler_devices": FILLER_DEVICES,
            "filler_note": FILLER_NOTE,
        }
        large = measure_proofs(bench, bank_key, args, stored=args.large)
        report["proofs"]["large"] = large
        report["accept_to_proof_s_at_large"] = accept_to_proof(
            bench, bank_key, real, samples=args.latency_samples, poll_s=args.poll_ms / 1000, rng=rng
        )

        batch_sizes = dict(pg_execute(bench.db_url, "SELECT index, count FROM batches"))
        report["batches"] = summarise_batches(batch_sizes)

    # figures (the service has stopped)
    everything = (
        small["bundles"]
        + large["bundles"]
        + report["accept_to_proof_s"]["bundles"]
        + report["accept_to_proof_s_at_large"]["bundles"]
    )
    report["proof_bytes"] = {
        "typical": typical_bundle(large["bundles"], batch_sizes),
        "typical_at_small": typical_bundle(small["bundles"], batch_sizes),
        "by_siblings": proof_sizes(everything, batch_sizes),
    }
    for part in (small, large, report["accept_to_proof_s"], report["accept_to_proof_s_at_large"]):
        part.pop("bundles")
    if small["latency_ms"] and large["latency_ms"]:
        report["proof_flatness"] = round(large["latency_ms"]["p99"] / small["latency_ms"]["p99"], 3)
        report["rps_ratio"] = round(large["rps"] / small["rps"], 3)
        report["target_met"] = report["proof_flatness"] <= TARGET_FLATNESS
    if "cpu_ms_per_request" in small and "cpu_ms_per_request" in large:
        report["cpu_per_request_ratio"] = round(
            sum(large["cpu_ms_per_request"].values()) / sum(small["cpu_ms_per_request"].values()), 3
        )
    problems = [
        f"{name}: {p['errors']} bad answers {p['error_kinds']}" for name, p in report["proofs"].items() if p["errors"]
    ]
    problems += report["accept_to_proof_s"]["problems"] + report["accept_to_proof_s_at_large"]["problems"]
    if problems:
        report["problems"] = problems


def summarise_batches(batch_sizes: dict[int, int]) -> dict[str, Any]:
    """How many batches of which size the store ended with."""
    by_size = Counter(batch_sizes.values())
    return {"count": len(batch_sizes), "by_readings": {str(k): v for k, v in sorted(by_size.items())}}


# ---------------------------------------------------------------------------------------------
# report


def print_summary(report: dict[str, Any]) -> None:
    m, p = report["machine"], report["params"]
    w = print
    w("")
    w("pledgeledger proof-serving benchmark")
    for line in machine_lines(m):
        w(line)
    w(
        f"  parameters  stores of {p['small']:,} and {p['large']:,} readings, {p['connections']} keep-alive connections, "
        f"{p['warmup']:g} s warm-up + {p['seconds']:g} s timed, batch interval {p['batch_interval']:g} s, "
        f"chain {p['chain']}, serve args {p['serve_args'] or '-'}"
    )
    store = report.get("store", {})
    if store:
        w(
            f"  store       {store['real_readings']:,} real signed readings (HTTP) + {store['filler_readings']:,} "
            f"synthetic filler rows (COPY); {report['batches']['count']} batches"
        )
        w(f"              NOTE: {store['filler_note']}")
    for key, label in (("accept_to_proof_s", "small"), ("accept_to_proof_s_at_large", "large")):
        a = report.get(key)
        if not a:
            continue
        ra = ", ".join(f"{v} x {k} s" for k, v in sorted(a["retry_after_values"].items()))
        w(
            f"  accept -> proof ({label} store){'':<{7 - len(label)}} mean {a['mean']:.3f} s, p50 {a['p50']:.3f} s, "
            f"p95 {a['p95']:.3f} s, max {a['max']:.3f} s  ({a['n']} single readings over {a['over_s']:.0f} s, "
            f"polled every {a['poll_ms']} ms; 409 proof_pending Retry-After: {ra or 'none'})"
        )
        for line in cpu_lines(a["cpu"], during="this window"):
            w(f"      {line}")
    pb = report.get("proof_bytes")
    if pb:
        t = pb["typical"]
        w(
            f"  proof bundle              typical {t['bytes']:,} bytes with {t['siblings']} siblings "
            f"(a batch of {t['batch_readings']:,}); at the small store {pb['typical_at_small']['bytes']:,} bytes, "
            f"{pb['typical_at_small']['siblings']} siblings"
        )
        for row in pb["by_siblings"]:
            span = (
                f"{row['batch_readings_min']:,}"
                if row["batch_readings_min"] == row["batch_readings_max"]
                else f"{row['batch_readings_min']:,}-{row['batch_readings_max']:,}"
            )
            w(
                f"      {row['siblings']:2d} siblings (batches of {span} reading{'s' if row['batch_readings_max'] > 1 else ''}): "
                f"{row['bytes_p50']:,} bytes "
                f"(min {row['bytes_min']:,}, max {row['bytes_max']:,}; {row['bundles']:,} bundles seen)"
            )
    for stage in ("small", "large"):
        r = report.get("proofs", {}).get(stage)
        if not r:
            continue
        lat = r["latency_ms"]
        w(
            f"  proofs at {r['stored']:>9,} stored  {r['rps']:>8,.0f} requests/s, p50 {lat.get('p50')} ms, "
            f"p99 {lat.get('p99')} ms  ({r['requests']:,} requests in {r['window_s']:.1f} s, {r['distinct_readings']:,} "
            f"distinct readings, {r['errors']} errors)"
        )
        if "cpu_ms_per_request" in r:
            c = r["cpu_ms_per_request"]
            w(f"      CPU per proof: service {c['service']} ms, PostgreSQL {c['postgres']} ms")
        for line in cpu_lines(r["cpu"], during="the timed window"):
            w(f"      {line}")
    if "proof_flatness" in report:
        w(
            f"  proof_flatness            {report['proof_flatness']:.3f}  (p99 at {p['large']:,} / p99 at {p['small']:,}; "
            f"target <= {TARGET_FLATNESS}: {'MET' if report['target_met'] else 'NOT MET'}); requests/s ratio "
            f"{report['rps_ratio']:.3f}"
        )
    if "cpu_per_request_ratio" in report:
        w(
            f"  CPU per proof ratio       {report['cpu_per_request_ratio']:.3f}  (service + PostgreSQL CPU per request at "
            f"{p['large']:,} / at {p['small']:,}; the cost side of the same comparison; also noisy on a shared machine)"
        )
    for problem in report.get("problems", []):
        w(f"  PROBLEM     {problem}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_proofs.py",
        description=__doc__.split("\n\n", 1)[0] + "\n\n" + __doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Progress goes to stderr; the summary (or, with --json, one JSON object with at least "
        "accept_to_proof_s, proof_bytes, proofs.small, proofs.large, proof_flatness and rps_ratio) to stdout. "
        "Exit status: 0 done, 1 the run failed or some answer was wrong, 3 with --check when proof_flatness is "
        f"above {TARGET_FLATNESS}, 130 interrupted.",
    )
    parser.add_argument(
        "--small", type=int, default=10_000, help="real signed readings in the first store (default 10,000)"
    )
    parser.add_argument(
        "--large", type=int, default=1_000_000, help="readings in the second store, real + filler (default 1,000,000)"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per proof measurement (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds before each (default 2)")
    parser.add_argument(
        "-c", "--connections", type=int, default=4, help="keep-alive connections of the load generator (default 4)"
    )
    parser.add_argument(
        "--id-sample",
        type=int,
        default=200_000,
        help="ids drawn uniformly from all stored readings for the load generator to pick from (default 200,000)",
    )
    parser.add_argument(
        "--latency-samples", type=int, default=40, help="single readings timed from acceptance to proof (default 40)"
    )
    parser.add_argument("--poll-ms", type=float, default=50.0, help="proof polling period in ms (default 50)")
    parser.add_argument(
        "-d", "--devices", type=int, default=10, help="devices that sign the real readings (default 10)"
    )
    parser.add_argument(
        "--batch-interval", type=float, default=1.0, help="PLEDGELEDGER_BATCH_INTERVAL_S of the service (default 1)"
    )
    parser.add_argument(
        "--anchor-timeout",
        type=float,
        default=3600.0,
        help="seconds to wait for every reading to be anchored (default 3600)",
    )
    add_service_args(parser)
    parser.add_argument("--check", action="store_true", help=f"exit 3 when proof_flatness is above {TARGET_FLATNESS}")
    args = parser.parse_args(argv)
    if min(args.small, args.connections, args.devices, args.latency_samples, args.id_sample) < 1:
        parser.error("--small, --connections, --devices, --latency-samples and --id-sample must be positive")
    if args.large <= args.small + args.latency_samples:
        parser.error("--large must exceed --small + --latency-samples (the rest is filler)")
    if args.seconds <= 0 or args.warmup < 0 or args.poll_ms <= 0 or args.batch_interval <= 0:
        parser.error("--seconds, --poll-ms and --batch-interval must be positive, --warmup not negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    params = {
        "small": args.small,
        "large": args.large,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "connections": args.connections,
        "id_sample": args.id_sample,
        "latency_samples": args.latency_samples,
        "poll_ms": args.poll_ms,
        "devices": args.devices,
        "batch_interval": args.batch_interval,
    }
    report = new_report(args, params, target_flatness=TARGET_FLATNESS)

    def body() -> int:
        t0 = time.perf_counter()
        run(args, report)
        report["total_s"] = round(time.perf_counter() - t0, 1)
        if report.get("problems"):
            return 1
        return 3 if args.check and not report.get("target_met", False) else 0

    return run_bench(report, body, print_summary, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
