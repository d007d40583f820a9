"""Shared parts of the on-demand benchmarks (``scripts/bench_*.py``).

Output (:func:`log` to stderr, :class:`BenchError`), the machine and the CPU other processes
burn (:func:`machine_info`, :func:`background_load`, :class:`CpuWindow`), realistic devices and
signed readings (:func:`device_specs`, :func:`new_device`, :func:`build_batches`), spawned
load-generating processes (:func:`spawn_child`, :func:`expect_message`), the service under
test: ``pledgeledger serve`` as a subprocess on a private PostgreSQL schema
(:class:`BenchService`, built on :class:`Service`, :func:`schema_url` and :func:`pg_execute`),
and the frame of a benchmark's command line and report (:func:`add_service_args`,
:func:`new_report`, :func:`run_bench`).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from anywhere without installing
    sys.path.insert(0, str(ROOT))

DEFAULT_PG_URL = os.environ.get("PLEDGELEDGER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
SPAWN = mp.get_context("spawn")  # clean children: no inherited threads, sockets or DB pools

# ---------------------------------------------------------------------------------------------
# output helpers


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    """A failed run: printed and exit status 1."""


def machine_info() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "mem_gb": mem_gb,
        "python": sys.version.split()[0],
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }


# ---------------------------------------------------------------------------------------------
# realistic devices and readings


#: (kind, id stem, data generator) — payloads of about 200-290 bytes in RFC 8785 form.
def _data_load_cell(rng: random.Random, n: int) -> dict[str, Any]:
    return {"weight_kg": round(rng.uniform(800, 26000), 1), "tare_kg": 42.5, "stable": True, "channel": 1 + n % 4}


def _data_temp(rng: random.Random, n: int) -> dict[str, Any]:
    return {
        "temp_c": round(rng.uniform(-4, 31), 2),
        "rh_pct": round(rng.uniform(25, 85), 1),
        "battery_v": round(rng.uniform(3.4, 3.7), 3),
    }


def _data_power(rng: random.Random, n: int) -> dict[str, Any]:
    return {"energy_kwh": round(18250.0 + n * 0.37, 3), "power_kw": round(rng.uniform(0, 55), 2), "phase": "L1-L2-L3"}


def _data_location(rng: random.Random, n: int) -> dict[str, Any]:
    return {
        "lat": round(53.5461 + rng.uniform(-1e-4, 1e-4), 7),
        "lon": round(9.9665 + rng.uniform(-1e-4, 1e-4), 7),
        "accuracy_m": round(rng.uniform(0.1, 0.9), 2),
        "zone": "bay-07",
    }


def _data_rfid(rng: random.Random, n: int) -> dict[str, Any]:
    return {"count": 118 + rng.randint(0, 3), "reader_zone": "dock-2", "antenna": 1 + n % 4}


KINDS = [
    ("load_cell", "scale", _data_load_cell),
    ("temp_humidity", "th", _data_temp),
    ("power_meter", "pm", _data_power),
    ("location", "uwb", _data_location),
    ("rfid_inventory", "rfid", _data_rfid),
]
_DATA = {kind: gen for kind, _, gen in KINDS}


def device_specs(count: int, run_tag: str) -> list[tuple[str, str, str]]:
    """(device id, kind, lot) for ``count`` devices spread over warehouses and kinds."""
    specs = []
    for i in range(count):
        kind, stem, _ = KINDS[i % len(KINDS)]
        specs.append((f"wh{i % 7 + 1:02d}-{stem}-{run_tag}-{i:05d}", kind, f"LOT-2026-{100000 + i // 4:06d}"))
    return specs


def new_device(spec: tuple[str, str, str], key_pem: bytes | None = None):  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from ledger.simulator import SimulatedDevice

    device_id, kind, lot = spec
    if key_pem is None:
        return SimulatedDevice(device_id, kind, alg="ES256", lot=lot)
    return SimulatedDevice(device_id, kind, alg="ES256", lot=lot, _key=load_pem_private_key(key_pem, None))


def private_pem(device: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return device._key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def ts_text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def build_batches(
    devices: list[Any], total: int, batch_size: int, *, rng: random.Random, base: datetime, span_s: float
) -> list[list[dict[str, Any]]]:
    """``total`` readings of ``devices`` interleaved at random, cut into batches of ``batch_size``."""
    counters = Counter()
    step = span_s / max(total, 1)
    readings = []
    for j in range(total):
        device = rng.choice(devices)
        n = counters[device.id]
        counters[device.id] += 1
        moment = base + timedelta(seconds=j * step)
        readings.append(device.reading(_DATA[device.kind](rng, n), ts=ts_text(moment)))
    return [readings[i : i + batch_size] for i in range(0, len(readings), batch_size)]


# ---------------------------------------------------------------------------------------------
# CPU accounting from /proc (who burnt the cores during the timed window)


_CLK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_snapshot(service_sid: int | None) -> dict[str, float]:
    """CPU seconds so far: whole machine (busy, total), the service's session, PostgreSQL processes."""
    snap = {"machine_busy": 0.0, "machine_total": 0.0, "machine_steal": 0.0, "service": 0.0, "serving": 0.0, "postgres": 0.0}
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        snap["machine_total"] = sum(fields[:8]) / _CLK
        snap["machine_busy"] = (sum(fields[:7]) - idle) / _CLK  # user..softirq, without steal
        snap["machine_steal"] = (fields[7] if len(fields) > 7 else 0) / _CLK  # time the hypervisor gave to others
    except (OSError, ValueError, IndexError):
        pass
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        rest = raw[raw.rindex(")") + 2 :].split()
        cpu = (int(rest[11]) + int(rest[12])) / _CLK  # utime + stime
        if service_sid is not None and int(rest[3]) == service_sid:
            snap["service"] += cpu
            if int(entry.name) == service_sid:  # the serve process itself, not its workers or chain node
                snap["serving"] += cpu
        elif comm.startswith("postgres"):
            snap["postgres"] += cpu
    return snap


def background_load(seconds: float = 1.0) -> float:
    """Cores busy on this machine over ``seconds`` before we start (other people's work skews results)."""
    before = cpu_snapshot(None)
    time.sleep(seconds)
    after = cpu_snapshot(None)
    return round((after["machine_busy"] - before["machine_busy"]) / seconds, 2)


def cpu_delta(before: dict[str, float], after: dict[str, float], wall: float, loadgen_cpu: float) -> dict[str, float]:
    busy = after["machine_busy"] - before["machine_busy"]
    total = after["machine_total"] - before["machine_total"]
    service = (after["service"] - before["service"]) / wall
    postgres = (after["postgres"] - before["postgres"]) / wall
    busy_cores = busy / wall
    return {
        "machine_busy_cores": round(busy_cores, 2),
        "other_cores": round(busy_cores - service - postgres - loadgen_cpu / wall, 2),
        "service_cores": round((after["service"] - before["service"]) / wall, 2),
        "serving_process_cores": round((after["serving"] - before["serving"]) / wall, 2),
        "postgres_cores": round((after["postgres"] - before["postgres"]) / wall, 2),
        "loadgen_cores": round(loadgen_cpu / wall, 2),
        "machine_busy_pct": round(100 * busy / total, 1) if total else None,
        "steal_pct": round(100 * (after["machine_steal"] - before["machine_steal"]) / total, 1) if total else None,
    }


class CpuWindow:
    """CPU used from construction to :meth:`stop`: the machine, the service, PostgreSQL, and this
    process (the load generator that constructs it); see :func:`cpu_delta`."""

    def __init__(self, service_sid: int | None) -> None:
        self.service_sid = service_sid
        self.before = cpu_snapshot(service_sid)
        self.own_before = os.times()

    def stop(self, wall: float) -> dict[str, float]:
        after, own = cpu_snapshot(self.service_sid), os.times()
        loadgen_cpu = (own.user + own.system) - (self.own_before.user + self.own_before.system)
        return cpu_delta(self.before, after, wall, loadgen_cpu) if wall > 0 else {}


def cpu_lines(cpu: dict[str, float], *, during: str = "the run") -> list[str]:
    """Summary lines for a :func:`cpu_delta`: warnings first when the figures are skewed."""
    if not cpu:
        return []
    lines = []
    if (cpu.get("steal_pct") or 0) > 3:
        lines.append(f"WARNING: the hypervisor took {cpu['steal_pct']}% of this VM's CPU time (steal) during {during}")
    if cpu.get("other_cores", 0) > 0.15:
        lines.append(
            f"WARNING: other processes used {cpu['other_cores']} cores during {during}; the figures are understated"
        )
    lines.append(
        f"CPU during {during}: service {cpu['service_cores']} cores (serve process {cpu.get('serving_process_cores')}), "
        f"PostgreSQL {cpu['postgres_cores']}, "
        f"load generator {cpu['loadgen_cores']}, anything else {cpu['other_cores']}; machine {cpu['machine_busy_pct']}% busy, steal {cpu['steal_pct']}%"
    )
    return lines


def percentile(ordered: list[float], p: float) -> float:
    """The ``p`` quantile (0..1) of an ascending, non-empty list (nearest rank, no interpolation)."""
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


# ---------------------------------------------------------------------------------------------
# load generators: spawned processes that report on a queue


def spawn_child(target: Any, spec: dict[str, Any]) -> tuple[Any, Any, Any]:
    """Start ``target(spec, out, go)`` in a fresh process; returns (process, out queue, go event).

    ``target`` is a module-level function; it puts dicts with a ``type`` on ``out`` and waits for
    ``go`` before its timed part. Anything it raises arrives as ``{"type": "error", ...}``.
    """
    out, go = SPAWN.Queue(), SPAWN.Event()
    proc = SPAWN.Process(target=_child_main, args=(target, spec, out, go), daemon=True)
    proc.start()
    return proc, out, go


def _child_main(target: Any, spec: dict[str, Any], out: Any, go: Any) -> None:
    try:
        target(spec, out, go)
    except BaseException as exc:  # noqa: BLE001 - report anything to the parent instead of leaving it waiting
        import traceback

        out.put({"type": "error", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})


def expect_message(queue: Any, proc: Any, kind: str, *, timeout: float) -> dict[str, Any]:
    """The child's next message, which must be of type ``kind`` (its error becomes a :class:`BenchError`)."""
    msg = next_message(queue, proc, timeout=timeout)
    if msg["type"] != kind:
        raise BenchError(f"load generator: {msg.get('error')}\n{msg.get('traceback', '')}")
    return msg


def next_message(queue: Any, proc: Any, *, timeout: float) -> dict[str, Any]:
    import queue as queue_mod

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return queue.get(timeout=1.0)
        except queue_mod.Empty:
            if not proc.is_alive():
                try:
                    return queue.get(timeout=1.0)
                except queue_mod.Empty:
                    raise BenchError(f"the load generator died (exit code {proc.exitcode})") from None
    raise BenchError(f"no answer from the load generator within {timeout:.0f} s")


# ---------------------------------------------------------------------------------------------
# the service under test


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_command() -> list[str]:
    exe = Path(sys.executable).with_name("pledgeledger")
    if exe.exists():
        return [str(exe)]
    fallback = ROOT / ".venv" / "bin" / "pledgeledger"
    return [str(fallback)] if fallback.exists() else [sys.executable, "-m", "api.cli"]


class Service:
    """``pledgeledger serve`` in its own session (so it and its children stop together)."""

    def __init__(self, env: dict[str, str], port: int, log_path: Path, extra_args: list[str]) -> None:
        self.env, self.port, self.log_path, self.extra_args = env, port, log_path, extra_args
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180) -> dict[str, Any]:
        import httpx

        cmd = cli_command() + ["serve", *self.extra_args]
        log(f"starting the service: {' '.join(cmd)} on port {self.port}")
        with self.log_path.open("ab") as sink:
            self.proc = subprocess.Popen(
                cmd, env=self.env, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"the service exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=2).raise_for_status().json()
            except httpx.HTTPError:
                time.sleep(0.25)
        raise BenchError(f"the service was not ready within {timeout:.0f} s:\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        log("stopping the service")
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass


def schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote('-csearch_path=' + schema, safe='')}"


def pg_execute(url: str, sql: str) -> Any:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description else None


class BenchService:
    """The service under test for one ``with`` block: a private schema ``bench_<tag>`` in
    PostgreSQL, a temporary data dir and ``pledgeledger serve`` on a free port.

    On leaving the block the service stops (its log tail is printed when the block failed) and
    the schema and the data dir are removed, unless ``keep``. Per-device rate limits are lifted
    unless ``lift_rate_limits`` is false (benchmarks measure throughput, not the token bucket).
    """

    def __init__(
        self,
        *,
        name: str,
        pg_url: str,
        chain: str,
        batch_interval_s: float,
        serve_args: list[str],
        ingest_processes: int = 1,
        keep: bool = False,
        lift_rate_limits: bool = True,
    ) -> None:
        self.name, self.pg_url, self.keep = name, pg_url, keep
        self.tag = secrets.token_hex(4)
        self.schema = f"bench_{self.tag}"
        self.db_url = schema_url(pg_url, self.schema)
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"{name}_{self.tag}_"))
        self.env = {
            **os.environ,
            "PLEDGELEDGER_DB_URL": self.db_url,
            "PLEDGELEDGER_CHAIN": chain,
            "PLEDGELEDGER_DATA_DIR": str(self.data_dir),
            "PLEDGELEDGER_HOST": "127.0.0.1",
            "PLEDGELEDGER_PORT": str(free_port()),
            "PLEDGELEDGER_BATCH_INTERVAL_S": str(batch_interval_s),
            "PLEDGELEDGER_INGEST_PROCESSES": str(ingest_processes),
        }
        if lift_rate_limits:  # default 20/s, burst 2,000 per device
            self.env |= {"PLEDGELEDGER_DEVICE_RATE_PER_S": "1000000", "PLEDGELEDGER_DEVICE_BURST": "1000000000"}
        self.env.pop("PLEDGELEDGER_MQTT_URL", None)
        self.service = Service(self.env, int(self.env["PLEDGELEDGER_PORT"]), self.data_dir / "service.log", serve_args)
        self.health: dict[str, Any] = {}
        self._schema_created = False

    @classmethod
    def from_args(cls, args: Any, *, name: str, batch_interval_s: float, lift_rate_limits: bool = True) -> Self:
        """From the options of :func:`add_service_args`."""
        return cls(
            name=name,
            pg_url=args.pg_url,
            chain=args.chain,
            batch_interval_s=batch_interval_s,
            serve_args=args.serve_arg,
            ingest_processes=args.ingest_processes,
            keep=args.keep,
            lift_rate_limits=lift_rate_limits,
        )

    @property
    def url(self) -> str:
        return self.service.url

    @property
    def service_sid(self) -> int | None:
        """The service's session id (its pid: it leads its own session), for :func:`cpu_snapshot`."""
        return self.service.proc.pid if self.service.proc else None

    def __enter__(self) -> Self:
        try:
            log(f"schema {self.schema} in {self.pg_url}, data dir {self.data_dir}")
            try:
                pg_execute(self.pg_url, f"CREATE SCHEMA {self.schema}")
            except Exception as exc:  # noqa: BLE001 - psycopg.Error or a bad URL: say which and stop
                raise BenchError(f"cannot create schema {self.schema} in {self.pg_url}: {exc}") from None
            self._schema_created = True
            self.health = self.service.start()
            log(f"service ready: db {self.health.get('db')}, chain {self.health.get('chain', {}).get('id')}")
            return self
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None and not issubclass(exc_type, KeyboardInterrupt) and self.service.proc is not None:
            print(f"--- service log tail ({self.service.log_path}) ---\n{self.service.tail()}", file=sys.stderr)
        self.service.stop()
        if self.keep:
            log(f"kept schema {self.schema} ({self.db_url}) and data dir {self.data_dir}")
            return
        if self._schema_created:
            try:
                pg_execute(self.pg_url, f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
            except Exception as error:  # noqa: BLE001 - cleanup must not hide the real error
                log(f"could not drop schema {self.schema}: {error}")
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def create_org(self, name: str, role: str) -> str:
        """``pledgeledger org create`` against the service's database; returns the API key."""
        created = subprocess.run(
            cli_command() + ["org", "create", name, "--role", role],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if created.returncode != 0:
            raise BenchError(f"org create failed ({created.returncode}): {created.stderr or created.stdout}")
        return json.loads(created.stdout)["api_key"]

    def register_devices(self, api_key: str, devices: list[Any]) -> float:
        """``POST /v1/devices`` for each device (each key recorded on chain); returns the seconds taken."""
        import httpx

        log(f"registering {len(devices)} devices over HTTP (each key recorded on chain)")
        t0 = time.perf_counter()
        with httpx.Client(base_url=self.url, timeout=60, headers={"Authorization": f"Bearer {api_key}"}) as client:
            for i, d in enumerate(devices, 1):
                r = client.post("/v1/devices", json=d.registration())
                if r.status_code != 201:
                    raise BenchError(f"registering {d.id}: HTTP {r.status_code} {r.text[:500]}")
                if i % 25 == 0 or i == len(devices):
                    log(f"  registered {i}/{len(devices)}")
        return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------
# the command line and the report frame


def add_service_args(parser: Any) -> None:
    """The options every benchmark has: where the service runs, the seed, --keep and --json."""
    parser.add_argument(
        "--pg-url",
        default=DEFAULT_PG_URL,
        help=f"PostgreSQL to create the bench_<random> schema in (default {DEFAULT_PG_URL}; env PLEDGELEDGER_TEST_PG_URL)",
    )
    parser.add_argument(
        "--chain",
        default="embedded",
        help="PLEDGELEDGER_CHAIN of the service: embedded (default, in-process py-evm, no anvil), managed, or an RPC URL",
    )
    parser.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for `pledgeledger serve`, repeatable (e.g. --serve-arg=--workers --serve-arg=2, "
        "which needs --chain managed or an RPC URL, and --ingest-processes 1)",
    )
    parser.add_argument(
        "--ingest-processes",
        type=int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="PLEDGELEDGER_INGEST_PROCESSES of the service: batches of readings decoded, verified and stored in N worker "
        f"processes (default: every core, {os.cpu_count() or 1} here; 1 ingests in the serving process)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed of the load (default 1)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the PostgreSQL schema and the service's data dir (with its log)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of the summary")


def new_report(args: Any, params: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A report's frame: the machine, ``params`` with the options of :func:`add_service_args`, ``extra``."""
    service = {"serve_args": " ".join(args.serve_arg), "ingest_processes": args.ingest_processes, "pg_url": args.pg_url,
               "chain": args.chain, "seed": args.seed}  # fmt: skip
    return {"machine": machine_info(), "params": {**params, **service}, **extra}


def machine_lines(machine: dict[str, Any]) -> list[str]:
    """The summary's machine line, and a warning when it was busy before the run."""
    lines = [
        (
            f"  machine     {machine['cores']} cores ({machine['affinity']} usable), {machine['cpu_model']}, "
            f"{machine['mem_gb']} GB RAM, Python {machine['python']}"
        )
    ]
    if machine.get("background_cores_before", 0) > 0.15:
        lines.append(
            f"  WARNING     {machine['background_cores_before']} cores were busy with other work just before the run"
        )
    return lines


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C


def run_bench(report: dict[str, Any], body: Any, summary: Any, *, as_json: bool) -> int:
    """A benchmark's main after its arguments: measure the background load into
    ``report["machine"]`` (see :func:`new_report`), run ``body()``
    (which fills ``report`` and returns the exit status), then print ``report`` as JSON or
    through ``summary(report)``. A :class:`BenchError` is logged, kept in the report as
    ``error`` and exits 1 (no summary); Ctrl-C or SIGTERM exit 130 after cleaning up.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    status = 0
    try:
        report["machine"]["background_cores_before"] = busy = background_load()
        if busy > 0.15:
            log(
                f"WARNING: {busy} cores were already busy before the benchmark started: the figures will be low and noisy"
            )
        status = body()
    except KeyboardInterrupt:
        log("interrupted; cleaned up")
        return 130
    except BenchError as exc:
        log(f"FAILED: {exc}")
        report["error"] = str(exc)
        status = 1
    if as_json:
        print(json.dumps(report, indent=2, default=str))
    elif "error" not in report:
        summary(report)
    return status
