#!/usr/bin/env python3
"""Ingestion benchmark: raw P-256 verification rate vs end-to-end ingestion, on one machine.

Run it with the project's interpreter (the ``pledgeledger`` command is taken from the same
venv)::

    .venv/bin/python scripts/bench_ingest.py                    # defaults: 50,000 readings, 100 devices
    .venv/bin/python scripts/bench_ingest.py -n 20000 --json    # one JSON object on stdout
    .venv/bin/python scripts/bench_ingest.py --profile --py-spy /tmp/server.txt

It measures, in one run:

(a) **raw P-256 rate**: ``attestation.signatures.verify_signature("ES256", pem, message, sig)``
    (exactly what the ledger calls for every reading, key cache included) over realistic
    ~250-byte RFC 8785 payloads, in ``os.cpu_count()`` processes at once for ``--raw-seconds``;
(b) **end to end**: the real service (``pledgeledger serve`` as a subprocess, PostgreSQL in a
    private schema, embedded py-evm chain, anchoring idle unless ``--with-anchoring``, batches
    ingested by one worker process per core: ``--ingest-processes``) receives
    ``POST /v1/readings`` batches of ``--batch-size`` signed ES256 readings from a separate
    load-generating process that signed and serialised all of them before the clock starts.
    The clock runs from the first request to the last response; every response must be 200
    with every result ``accepted``, and the schema must then hold exactly N readings.

and prints both, their ratio and the target (ratio >= 0.5: ingestion at least half the raw
all-core verification rate).

Load model: each of the ``--connections`` keep-alive connections is a gateway that owns a
disjoint share of the devices and sends its batches one after another; inside a batch the
readings of its devices are interleaved at random, each device's ``seq`` strictly increasing
and ``prev`` chained, timestamps spread over the last two minutes. (Two connections posting
readings of the same device at once would race on its sequence, which real gateways don't do.)
Four gateways by default: with two, each ingestion worker sat idle while its own batch
committed (93% of the machine busy rather than 98%).
"""

from __future__ import annotations

import argparse
import cProfile
import http.client
import io
import json
import math
import os
import pstats
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchlib import (  # noqa: F401 - re-exported: the other benchmarks' helpers used to live here
    _DATA,
    DEFAULT_PG_URL,
    KINDS,
    ROOT,
    SPAWN,
    BenchError,
    BenchService,
    CpuWindow,
    Service,
    add_service_args,
    background_load,
    build_batches,
    cli_command,
    cpu_delta,
    cpu_lines,
    cpu_snapshot,
    device_specs,
    expect_message,
    free_port,
    log,
    machine_info,
    machine_lines,
    new_device,
    new_report,
    next_message,
    percentile,
    pg_execute,
    private_pem,
    run_bench,
    schema_url,
    spawn_child,
    ts_text,
)

TARGET_RATIO = 0.5


# ---------------------------------------------------------------------------------------------
# (a) raw P-256 verification, one process per core


def _raw_worker(seconds: float, seed: int, ready: Any, start: Any, results: Any) -> None:
    from attestation.encoding import b64url_decode, canonical_json
    from attestation.signatures import verify_signature

    rng = random.Random(seed)
    samples = []
    base = datetime.now(UTC) - timedelta(seconds=60)
    for spec in device_specs(16, f"raw{seed}"):
        device = new_device(spec)
        pem = device.public_key_pem
        for n in range(16):
            envelope = device.reading(_DATA[spec[1]](rng, n), ts=ts_text(base + timedelta(milliseconds=n)))
            samples.append((pem, canonical_json(envelope["payload"]), b64url_decode(envelope["sig"])))
    rng.shuffle(samples)
    for pem, message, sig in samples:  # every sample verifies (and warms the key cache, as in the server)
        verify_signature("ES256", pem, message, sig)
    size = sum(len(m) for _, m, _ in samples) / len(samples)
    ready.wait()
    start.wait()
    count = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        for pem, message, sig in samples:
            verify_signature("ES256", pem, message, sig)
        count += len(samples)
        if time.perf_counter() >= deadline:
            break
    results.put((count, time.perf_counter() - t0, size))


def run_raw(seconds: float, processes: int) -> dict[str, Any]:
    log(f"(a) raw P-256: verify_signature('ES256', ...) in {processes} process(es) for {seconds:g} s")
    ready = SPAWN.Barrier(processes + 1)
    start = SPAWN.Event()
    results = SPAWN.Queue()
    workers = [
        SPAWN.Process(target=_raw_worker, args=(seconds, i, ready, start, results), daemon=True)
        for i in range(processes)
    ]
    for w in workers:
        w.start()
    try:
        ready.wait(timeout=120)
        start.set()
        rows = [results.get(timeout=seconds + 120) for _ in workers]
    finally:
        for w in workers:
            w.join(timeout=10)
            if w.is_alive():
                w.terminate()
    total = sum(count / elapsed for count, elapsed, _ in rows)
    result = {
        "processes": processes,
        "seconds": seconds,
        "verifies": sum(r[0] for r in rows),
        "per_s": total,
        "per_core_per_s": total / processes,
        "message_bytes_avg": round(sum(r[2] for r in rows) / len(rows), 1),
        "per_process_per_s": [round(c / e) for c, e, _ in rows],
    }
    log(f"(a) raw P-256: {total:,.0f} verifies/s on {processes} cores ({total / processes:,.0f}/s per core)")
    return result


# ---------------------------------------------------------------------------------------------
# (b) the load generator: a separate process that signs everything first, then posts


def _loadgen(spec: dict[str, Any], out: Any, go: Any) -> None:
    rng = random.Random(spec["seed"])
    devices = [new_device(tuple(s), pem) for s, pem in spec["devices"]]
    conns = spec["connections"]
    total, batch_size = spec["readings"], spec["batch_size"]
    n_batches = math.ceil(total / batch_size)
    sizes = [min(batch_size, total - i * batch_size) for i in range(n_batches)]

    # each connection is a gateway with a disjoint share of the devices and batches g, g+C, g+2C, ...
    groups = [devices[g::conns] for g in range(conns)]
    now = datetime.now(UTC)
    base = max(now - timedelta(seconds=120), datetime.fromtimestamp(spec["not_before"], UTC) - timedelta(seconds=250))
    t_sign = time.perf_counter()
    plans: list[list[bytes]] = []
    signed = 0
    last_note = time.monotonic()
    for g in range(conns):
        my_sizes = sizes[g::conns]
        stream = build_batches(groups[g], sum(my_sizes), batch_size, rng=rng, base=base, span_s=110.0)
        bodies = [json.dumps(batch, separators=(",", ":"), ensure_ascii=False).encode() for batch in stream]
        assert [len(b) for b in stream] == my_sizes
        plans.append(bodies)
        signed += sum(my_sizes)
        if time.monotonic() - last_note > 2:
            print(f"[loadgen] signed {signed:,}/{total:,}", file=sys.stderr, flush=True)
            last_note = time.monotonic()
    sign_s = time.perf_counter() - t_sign
    body_bytes = sum(len(b) for p in plans for b in p)
    out.put({"type": "ready", "sign_s": sign_s, "bytes": body_bytes, "batches": n_batches})

    host, port = spec["host"], spec["port"]
    connections = []
    for _ in range(conns):
        c = http.client.HTTPConnection(host, port, timeout=spec["timeout"])
        c.connect()
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connections.append(c)
    if not go.wait(timeout=300):
        raise RuntimeError("no start signal from the parent")

    done = [0]
    responses: list[list[tuple[int, bytes, float, float]]] = [[] for _ in range(conns)]
    errors: list[str] = []
    headers = {"Content-Type": "application/json", "Connection": "keep-alive"}
    barrier = threading.Barrier(conns + 1)

    fresh = spec["new_connection_per_batch"]

    def sender(g: int) -> None:
        conn = connections[g]
        barrier.wait()
        for i, body in enumerate(plans[g]):
            t0 = time.perf_counter()
            try:
                if fresh and i:  # a new TCP connection per batch lets the kernel spread them over server workers
                    conn.close()
                    conn = connections[g] = http.client.HTTPConnection(host, port, timeout=spec["timeout"])
                    conn.connect()
                    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.request("POST", "/v1/readings", body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                errors.append(f"connection {g}: {type(exc).__name__}: {exc}")
                return
            responses[g].append((resp.status, data, t0, time.perf_counter()))
            done[0] += 1

    threads = [threading.Thread(target=sender, args=(g,), daemon=True) for g in range(conns)]
    for t in threads:
        t.start()
    meter = CpuWindow(spec["service_sid"])
    t_start = time.perf_counter()
    barrier.wait()
    while True:
        alive = [t for t in threads if t.is_alive()]
        if not alive:
            break
        alive[0].join(timeout=2.0)
        if any(t.is_alive() for t in threads):
            elapsed, n = time.perf_counter() - t_start, done[0]
            print(
                f"[loadgen] {n}/{n_batches} batches answered, {elapsed:.1f} s, "
                f"~{n * batch_size / max(elapsed, 1e-9):,.0f} readings/s",
                file=sys.stderr,
                flush=True,
            )
    ends = [r[3] for rs in responses for r in rs]
    t_end = max(ends) if ends else time.perf_counter()
    wall = t_end - t_start
    cpu = meter.stop(wall)
    for c in connections:
        c.close()

    # the clock has stopped: now check every answer
    statuses: Counter[str] = Counter()
    http_codes: Counter[int] = Counter()
    reject_codes: Counter[str] = Counter()
    samples: list[str] = []
    latencies = []
    for rs in responses:
        for status, data, t0, t1 in rs:
            http_codes[status] += 1
            latencies.append(t1 - t0)
            if status != 200:
                samples.append(f"HTTP {status}: {data[:300]!r}")
                continue
            for result in json.loads(data):
                statuses[result["status"]] += 1
                if result["status"] != "accepted":
                    reject_codes[result.get("code") or result["status"]] += 1
                    if len(samples) < 5:
                        samples.append(json.dumps(result))
    latencies.sort()

    def pct(p: float) -> float:
        return round(percentile(latencies, p), 4) if latencies else float("nan")

    out.put(
        {
            "type": "done",
            "wall_s": wall,
            "batches_answered": len(latencies),
            "http_codes": {str(k): v for k, v in http_codes.items()},
            "statuses": dict(statuses),
            "reject_codes": dict(reject_codes),
            "samples": samples,
            "errors": errors,
            "latency_s": {"p50": pct(0.5), "p95": pct(0.95), "max": round(latencies[-1], 4) if latencies else None},
            "cpu": cpu,
        }
    )


# ---------------------------------------------------------------------------------------------
# profiles of the server side


def profile_batch(db_url: str, devices: list[Any], batch_size: int, *, top: int) -> dict[str, Any]:
    """Run an ingestion worker's batch path in-process under cProfile for one batch, after a warm-up batch.

    This process is set up as :mod:`ledger.ingest_pool` sets up a worker (signatures checked
    inline, the same garbage-collector and allocator settings), then runs
    ``ledger.ingest.ingest_batch`` on request bodies against the benchmark's PostgreSQL schema;
    also counts SQL statements, and measures one unprofiled batch in wall and CPU time.
    """
    from sqlalchemy import event

    from ledger import ingest, ingest_pool
    from ledger.store.db import Database

    rng = random.Random(7)
    for d in devices:  # continue above whatever the load generator used; prev null = a reboot (warm-up batch only)
        d.seq, d.prev = 10**9, None
    base = datetime.now(UTC) - timedelta(seconds=5)
    # warm-up, an unprofiled measurement and the profiled batch: one stream, so the last two are alike
    bodies = [
        json.dumps(b, separators=(",", ":")).encode()
        for b in build_batches(devices, 3 * batch_size, batch_size, rng=rng, base=base, span_s=4.5)
    ]

    db = Database(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    ingest_pool.tune_worker_process()
    statements = [0]
    sql_kinds: dict[str, list[float]] = {}  # statement shape -> [count, seconds in cursor.execute]
    started: list[float] = []

    def before(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        statements[0] += 1
        started.append(time.perf_counter())

    def after(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        row = sql_kinds.setdefault(sql_shape(statement), [0, 0.0])
        row[0] += 1
        row[1] += time.perf_counter() - started.pop()

    event.listen(db.engine, "before_cursor_execute", before)
    event.listen(db.engine, "after_cursor_execute", after)

    def handle(body: bytes) -> bytes:
        answer = ingest.ingest_batch(db, body, max_batch=batch_size, max_future_skew_s=300.0)
        bad = [r for r in json.loads(answer) if r["status"] != "accepted"]
        if bad:
            raise BenchError(f"profile batch: {len(bad)} not accepted, e.g. {bad[0]}")
        return answer

    try:
        handle(bodies[0])  # warm-up: key cache, compiled SQL cache, connection pool
        # an unprofiled run of the same size for the true in-process time
        statements[0] = 0
        sql_kinds.clear()
        t0, c0 = time.perf_counter(), time.process_time()
        handle(bodies[1])
        plain_s, plain_cpu_s = time.perf_counter() - t0, time.process_time() - c0
        n_statements = statements[0]
        sql = {
            k: {"count": c, "us_per_reading": round(1e6 * t / batch_size, 1), "us_each": round(1e6 * t / c, 1)}
            for k, (c, t) in sorted(sql_kinds.items(), key=lambda kv: -kv[1][1])
        }
        event.remove(db.engine, "before_cursor_execute", before)  # keep our own hooks out of the profile
        event.remove(db.engine, "after_cursor_execute", after)
        profiler = cProfile.Profile()
        profiler.enable()
        t0 = time.perf_counter()
        handle(bodies[2])
        profiled_s = time.perf_counter() - t0
        profiler.disable()
    finally:
        db.dispose()

    stats = pstats.Stats(profiler)
    raw = stats.stats  # type: ignore[attr-defined]

    def cum(name: str, file_part: str = "") -> float:
        return sum(v[3] for (f, _, n), v in raw.items() if n == name and file_part in f)

    def own(file_part: str) -> float:
        return sum(v[2] for (f, _, _), v in raw.items() if file_part in f)

    total = profiled_s
    groups = {
        "request decode (orjson)": cum("decode_body", "ledger/ingest"),
        "parse_reading (structure + JCS + sha256)": cum("parse_reading", "attestation/readings"),
        "  of which RFC 8785 canonical_json": cum("canonical_json", "attestation/encoding"),
        "signature checks (_verify_all, inline as in a worker)": cum("_verify_all", "ledger/ingest"),
        "_decide_and_store (locks, checks, COPY, update; incl. verify)": cum("_decide_and_store", "ledger/ingest"),
        "  _lock_devices (devices FOR UPDATE + keys)": cum("_lock_devices", "ledger/ingest"),
        "  bulk_insert (COPY readings)": cum("bulk_insert", "ledger/store/db"),
        "commit": cum("commit", "sqlalchemy/orm/session"),
        "psycopg execute (driver + PG round trips)": cum("execute", "psycopg/cursor"),
        "response encoding (results_json)": cum("results_json", "ledger/ingest"),
        "os.urandom (salts)": _builtin_cum(raw, "urandom"),
        "all sqlalchemy code (own time)": own("sqlalchemy"),
        "all psycopg code (own time)": own("psycopg"),
    }
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).strip_dirs().sort_stats("tottime").print_stats(top)
    return {
        "batch_size": batch_size,
        "in_process_s": round(plain_s, 4),
        "in_process_readings_per_s": round(batch_size / plain_s),
        "in_process_cpu_us_per_reading": round(1e6 * plain_cpu_s / batch_size, 1),
        "profiled_s": round(profiled_s, 4),
        "sql_statements": n_statements,
        "sql_statements_per_reading": round(n_statements / batch_size, 2),
        "sql_by_statement": sql,  # unprofiled run; time from cursor.execute start to its return
        "sql_execute_s": round(sum(v["us_per_reading"] for v in sql.values()) * batch_size / 1e6, 4),
        "breakdown_s": {k: round(v, 4) for k, v in groups.items()},
        "breakdown_pct": {k: round(100 * v / total, 1) for k, v in groups.items()},
        "breakdown_us_per_reading": {k: round(1e6 * v / batch_size, 1) for k, v in groups.items()},
        "top_tottime": text.getvalue(),
    }


def sql_shape(statement: str) -> str:
    """``SELECT readings ... FOR UPDATE``-style label of a statement."""
    import re

    words = statement.split()
    verb = words[0].upper() if words else "?"
    table = re.search(r"\b(?:FROM|INTO|UPDATE)\s+(\w+)", statement, re.IGNORECASE)
    label = f"{verb} {table.group(1)}" if table and verb in ("SELECT", "INSERT", "UPDATE", "DELETE") else verb
    if verb == "SELECT" and "FOR UPDATE" in statement.upper():
        label += " FOR UPDATE"
    if verb == "SELECT" and table and table.group(1) == "readings":
        label += " (pk by device+seq)" if "seq" in statement.split("WHERE", 1)[-1] else " (by id)"
    return label


def _builtin_cum(raw: dict, name: str) -> float:
    """Cumulative time of built-in/C functions and methods named ``name`` (``{method 'verify' ...}``)."""
    return sum(
        v[3]
        for (f, _, n), v in raw.items()
        if f == "~" and (n.endswith((f".{name}'}}", f" {name}>")) or f"'{name}'" in n)
    )


#: categories for py-spy samples: the innermost frame that matches decides (first rule wins per frame)
IDLE = "idle (event loop select, anchorer sleep, parked threads)"
PYSPY_RULES = [
    (IDLE, ("EpollSelector.select", "Condition.wait", "Event.wait", "_worker (concurrent/futures", "Queue.get")),
    ("waiting for PostgreSQL replies (psycopg Connection.wait)", ("Connection.wait (psycopg",)),
    ("signature verify (cryptography/OpenSSL)", ("_verify_es256", "verify_signature", "load_public_key")),
    ("RFC 8785 canonicalisation", ("rfc8785",)),
    (
        "parse/validate reading (excl. JCS)",
        ("attestation/readings", "attestation/thing_models", "attestation/devices", "attestation/encoding"),
    ),
    ("psycopg driver (send, encode, fetch; GIL-bound parts)", ("psycopg",)),
    ("SQLAlchemy ORM/Core", ("sqlalchemy",)),
    ("ingest logic (ledger/ingest.py own)", ("ledger/ingest",)),
    (
        "JSON request parse / response encode",
        ("json/decoder", "json/encoder", "json/__init__", "encoders.py", "pydantic"),
    ),
    ("FastAPI/Starlette/anyio", ("fastapi", "starlette", "anyio")),
    ("uvicorn/h11/asyncio (HTTP server)", ("uvicorn", "h11", "asyncio")),
    ("anchoring / chain", ("ledger/anchoring", "ledger/batching", "ledger/chain", "web3", "eth")),
]


def summarise_pyspy(path: Path) -> dict[str, Any]:
    """Aggregate ``py-spy record --format raw`` (collapsed stacks) into the categories above."""
    totals: Counter[str] = Counter()
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = stack.split(";")
        category = "other"
        for frame in reversed(frames):
            hit = next((name for name, pats in PYSPY_RULES if any(p in frame for p in pats)), None)
            if hit:
                category = hit
                break
        totals[category] += n
    busy = samples - totals[IDLE]
    return {
        "samples": samples,
        "pct": {k: round(100 * v / samples, 1) for k, v in totals.most_common()} if samples else {},
        "pct_of_non_idle": {k: round(100 * v / busy, 1) for k, v in totals.most_common() if k != IDLE} if busy else {},
    }


# ---------------------------------------------------------------------------------------------
# (b) orchestration


def run_e2e(args: argparse.Namespace) -> dict[str, Any]:
    log("(b) end to end")
    loadgen = None
    pyspy = None
    with BenchService.from_args(
        args,
        name="bench_ingest",
        batch_interval_s=args.batch_interval if args.with_anchoring else 1e6,
        lift_rate_limits=not args.keep_rate_limits,
    ) as bench:
        result: dict[str, Any] = {"schema": bench.schema, "data_dir": str(bench.data_dir)}
        try:
            api_key = bench.create_org(f"bench operator {bench.tag}", "operator")
            specs = device_specs(args.devices, bench.tag)
            devices = [new_device(s) for s in specs]
            not_before = time.time()
            result["register_s"] = round(bench.register_devices(api_key, devices), 2)

            spec = {
                "seed": args.seed,
                "devices": [(list(s), private_pem(d)) for s, d in zip(specs, devices)],
                "connections": args.connections,
                "readings": args.readings,
                "batch_size": args.batch_size,
                "host": "127.0.0.1",
                "port": bench.service.port,
                "timeout": args.request_timeout,
                "not_before": not_before,
                "service_sid": bench.service_sid,
                "new_connection_per_batch": args.new_connection_per_batch,
            }
            loadgen, out, go = spawn_child(_loadgen, spec)
            log(
                f"load generator (pid {loadgen.pid}) signing {args.readings:,} readings for {len(devices)} devices "
                f"as {math.ceil(args.readings / args.batch_size)} batches of {args.batch_size} (clock not started)"
            )
            msg = expect_message(out, loadgen, "ready", timeout=600)
            result["sign_s"] = round(msg["sign_s"], 2)
            result["request_bytes"] = msg["bytes"]
            log(
                f"signed and serialised in {msg['sign_s']:.1f} s ({msg['bytes'] / 1e6:.1f} MB of JSON); posting over "
                f"{args.connections} keep-alive connection(s)"
            )

            if args.py_spy:
                pyspy = start_pyspy(args.py_spy, bench.service_sid or 0, args)
            go.set()
            msg = next_message(
                out, loadgen, timeout=args.request_timeout * math.ceil(args.readings / args.batch_size) + 600
            )
            if pyspy is not None:
                stop_pyspy(pyspy)
                pyspy = None
                result["py_spy"] = (
                    {"file": str(args.py_spy), **summarise_pyspy(Path(args.py_spy))}
                    if Path(args.py_spy).exists()
                    else {"error": "no output"}
                )
            if msg["type"] != "done":
                raise BenchError(f"load generator: {msg.get('error')}\n{msg.get('traceback', '')}")
            loadgen.join(timeout=30)

            wall = msg["wall_s"]
            accepted = msg["statuses"].get("accepted", 0)
            result.update(
                {
                    "wall_s": round(wall, 3),
                    "ingest_per_s": args.readings / wall if wall > 0 else 0.0,
                    "accepted": accepted,
                    "statuses": msg["statuses"],
                    "http_codes": msg["http_codes"],
                    "reject_codes": msg["reject_codes"],
                    "latency_s": msg["latency_s"],
                    "cpu": msg["cpu"],
                }
            )
            log(
                f"(b) end to end: {args.readings:,} readings in {wall:.2f} s = {result['ingest_per_s']:,.0f} readings/s"
            )
            problems = list(msg["errors"])
            if set(msg["http_codes"]) != {"200"} or msg["batches_answered"] != math.ceil(
                args.readings / args.batch_size
            ):
                problems.append(f"HTTP answers {msg['http_codes']} for {msg['batches_answered']} batches")
            if accepted != args.readings:
                problems.append(
                    f"{accepted:,} of {args.readings:,} readings accepted; others: {msg['reject_codes'] or msg['statuses']}"
                )
            problems += [f"  e.g. {s}" for s in msg["samples"][:5]] if problems else []

            stored, mismatched = pg_execute(
                bench.db_url, "SELECT count(*), count(*) FILTER (WHERE prev_mismatch) FROM readings"
            )[0]
            result["stored"] = stored
            result["prev_mismatch"] = mismatched
            log(f"database check: {stored:,} readings stored in {bench.schema} ({mismatched} with a broken prev link)")
            if stored != args.readings:
                problems.append(f"the database holds {stored:,} readings, expected {args.readings:,}")
            if mismatched:
                problems.append(f"{mismatched} stored readings have prev_mismatch (the load generator's chains broke)")
            if problems:
                result["problems"] = problems
                raise BenchError("end-to-end run failed:\n  " + "\n  ".join(problems))

            if args.profile:
                log(f"profiling one batch of {args.batch_size} in-process (cProfile, same schema)")
                result["profile"] = profile_batch(bench.db_url, devices, args.batch_size, top=args.profile_top)
            return result
        finally:
            if pyspy is not None:
                stop_pyspy(pyspy)
            if loadgen is not None and loadgen.is_alive():
                loadgen.terminate()
                loadgen.join(timeout=10)


def start_pyspy(path: Path, pid: int, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    if exe is None:
        raise BenchError("py-spy not found: .venv/bin/pip install py-spy")
    cmd = [
        exe,
        "record",
        "--pid",
        str(pid),
        "--format",
        "raw",
        "--rate",
        str(args.py_spy_rate),
        "--output",
        str(path),
        "--subprocesses",
    ]
    if args.py_spy_gil:
        cmd.append("--gil")
    log(f"py-spy recording the service: {' '.join(cmd)}")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)
    if proc.poll() is not None:
        raise BenchError(f"py-spy failed: {proc.stderr.read().decode(errors='replace') if proc.stderr else ''}")
    return proc


def stop_pyspy(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------------------------------------
# report


def print_summary(report: dict[str, Any]) -> None:
    m, p, raw, e2e = report["machine"], report["params"], report.get("raw"), report.get("e2e")
    w = print
    w("")
    w("pledgeledger ingestion benchmark")
    for line in machine_lines(m):
        w(line)
    w(
        f"  parameters  N={p['readings']:,} readings, batches of {p['batch_size']}, {p['devices']} devices, "
        f"{p['connections']} {'connections opened per batch' if p['new_connection_per_batch'] else 'keep-alive connection(s)'}, chain {p['chain']}, anchoring {'on' if p['with_anchoring'] else 'off'}, "
        f"ingest processes {p['ingest_processes']}, serve args {p['serve_args'] or '-'}"
    )
    if raw:
        w(
            f"  (a) raw P-256 verify        {raw['per_s']:>10,.0f} /s on {raw['processes']} cores "
            f"({raw['per_core_per_s']:,.0f} /s per core; {raw['message_bytes_avg']:.0f}-byte JCS messages, {raw['seconds']:g} s)"
        )
    if e2e:
        w(
            f"  (b) end-to-end ingestion    {e2e['ingest_per_s']:>10,.0f} readings/s "
            f"({p['readings']:,} in {e2e['wall_s']:.2f} s; all accepted and stored; batch latency p50 {e2e['latency_s']['p50']:.3f} s, "
            f"p95 {e2e['latency_s']['p95']:.3f} s)"
        )
        for line in cpu_lines(e2e.get("cpu") or {}):
            w(f"      {line}")
    if "ingest_ratio" in report:
        ok = report["ingest_ratio"] >= TARGET_RATIO
        w(
            f"  ratio e2e/raw               {report['ingest_ratio']:>10.3f}   target >= {TARGET_RATIO} "
            f"(>= {TARGET_RATIO * report['raw_p256_per_s']:,.0f} readings/s): {'MET' if ok else 'NOT MET'}"
        )
    if e2e and "py_spy" in e2e:
        ps = e2e["py_spy"]
        w(
            f"  py-spy of the service ({ps.get('samples', 0)} samples of all threads, {ps.get('file')}; % of non-idle samples, "
            f"idle {ps.get('pct', {}).get(IDLE, 0)}% of all):"
        )
        for k, v in ps.get("pct_of_non_idle", {}).items():
            w(f"      {v:5.1f}%  {k}")
    if e2e and "profile" in e2e:
        pr = e2e["profile"]
        w(
            f"  in-process profile of one batch of {pr['batch_size']} (a worker's ingest_batch, PostgreSQL): "
            f"{pr['in_process_s'] * 1000:.0f} ms unprofiled = {pr['in_process_readings_per_s']:,} readings/s on one thread, "
            f"{pr['in_process_cpu_us_per_reading']} us of this process's CPU per reading; "
            f"{pr['sql_statements']} SQL statements ({pr['sql_statements_per_reading']}/reading)"
        )
        w(
            f"    SQL statements (unprofiled; execute() to return, i.e. SQLAlchemy core + psycopg + PostgreSQL): "
            f"{pr['sql_execute_s'] * 1000:.0f} ms of {pr['in_process_s'] * 1000:.0f} ms"
        )
        for k, v in pr["sql_by_statement"].items():
            w(f"      {v['count']:6d} x {v['us_each']:6.1f} us = {v['us_per_reading']:7.1f} us/reading  {k}")
        w("    cProfile (cumulative per category; the profiler inflates Python-heavy parts):")
        for k, v in pr["breakdown_us_per_reading"].items():
            w(f"      {pr['breakdown_pct'][k]:5.1f}%  {v:7.1f} us/reading  {k}")
        w(pr["top_tottime"])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_ingest.py",
        description=__doc__.split("\n\n", 1)[0] + "\n\n" + __doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Progress goes to stderr; the summary (or, with --json, one JSON object with at least raw_p256_per_s, "
        "ingest_per_s and ingest_ratio) to stdout. Exit status: 0 done, 1 the run failed (rejects, HTTP errors, "
        "missing rows, service did not start), 3 with --check when the ratio is below the target, 130 interrupted.",
    )
    parser.add_argument(
        "-n", "--readings", type=int, default=50_000, help="readings to ingest end to end (default 50,000)"
    )
    parser.add_argument("-d", "--devices", type=int, default=100, help="devices registered over HTTP (default 100)")
    parser.add_argument(
        "-c",
        "--connections",
        type=int,
        default=4,
        help="concurrent keep-alive connections (gateways) of the load generator (default 4: with one ingestion "
        "process per core, each has the next batch waiting while it commits the last)",
    )
    parser.add_argument(
        "--new-connection-per-batch",
        action="store_true",
        help="open a new TCP connection for every batch instead of keeping one per gateway alive (with several server "
        "worker processes sharing one listening socket, long-lived connections all tend to land on one worker)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=1000, help="readings per POST /v1/readings (default 1,000, the API's maximum)"
    )
    parser.add_argument(
        "--raw-seconds", type=float, default=5.0, help="duration of the raw P-256 measurement (default 5)"
    )
    parser.add_argument(
        "--raw-processes",
        type=int,
        default=os.cpu_count() or 1,
        help="processes for the raw measurement (default: all cores)",
    )
    parser.add_argument("--skip-raw", action="store_true", help="only the end-to-end part (no ratio)")
    parser.add_argument("--skip-e2e", action="store_true", help="only the raw P-256 part (no ratio)")
    parser.add_argument(
        "--keep-rate-limits",
        action="store_true",
        help="keep the service's per-device rate limits (default: lifted, so that N/devices readings per device in a "
        "few seconds are not refused as rate_limited)",
    )
    parser.add_argument(
        "--with-anchoring",
        action="store_true",
        help="let the service seal and anchor batches while ingesting (default: anchoring idle)",
    )
    parser.add_argument(
        "--batch-interval",
        type=float,
        default=5.0,
        help="PLEDGELEDGER_BATCH_INTERVAL_S with --with-anchoring (default 5)",
    )
    parser.add_argument(
        "--request-timeout", type=float, default=300.0, help="seconds to wait for one batch's answer (default 300)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="afterwards, profile one batch of the server's path in-process under cProfile (same schema) and print the top costs",
    )
    parser.add_argument("--profile-top", type=int, default=25, help="functions listed by --profile (default 25)")
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="FILE",
        help="record the running service with py-spy during the timed window (raw collapsed stacks to FILE) "
        "and print a breakdown; slows the service, so don't quote that run's rate",
    )
    parser.add_argument("--py-spy-rate", type=int, default=100, help="py-spy samples per second (default 100)")
    parser.add_argument("--py-spy-gil", action="store_true", help="py-spy --gil: only the thread holding the GIL")
    add_service_args(parser)
    parser.add_argument("--check", action="store_true", help=f"exit 3 when the ratio is below {TARGET_RATIO}")
    args = parser.parse_args(argv)
    if args.readings < 1 or args.devices < 1 or args.connections < 1 or not 1 <= args.batch_size:
        parser.error("--readings, --devices, --connections and --batch-size must be positive")
    if args.devices < args.connections:
        parser.error("each connection needs at least one device of its own: --devices >= --connections")
    if args.skip_raw and args.skip_e2e:
        parser.error("--skip-raw and --skip-e2e together leave nothing to do")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    params = {
        "readings": args.readings,
        "devices": args.devices,
        "connections": args.connections,
        "new_connection_per_batch": args.new_connection_per_batch,
        "batch_size": args.batch_size,
        "raw_seconds": args.raw_seconds,
        "raw_processes": args.raw_processes,
        "with_anchoring": args.with_anchoring,
        "device_rate_limits": "kept" if args.keep_rate_limits else "lifted",
    }
    report = new_report(args, params, target_ratio=TARGET_RATIO)

    def body() -> int:
        if not args.skip_raw:
            report["raw"] = run_raw(args.raw_seconds, args.raw_processes)
            report["raw_p256_per_s"] = round(report["raw"]["per_s"])
            report["raw_p256_per_core_per_s"] = round(report["raw"]["per_core_per_s"])
        if not args.skip_e2e:
            report["e2e"] = run_e2e(args)
            report["ingest_per_s"] = round(report["e2e"]["ingest_per_s"])
        if "raw" in report and "e2e" in report:
            report["ingest_ratio"] = round(report["e2e"]["ingest_per_s"] / report["raw"]["per_s"], 4)
            report["target_met"] = report["ingest_ratio"] >= TARGET_RATIO
            if args.check and not report["target_met"]:
                return 3
        return 0

    return run_bench(report, body, print_summary, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
