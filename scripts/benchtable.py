#!/usr/bin/env python3
"""One table of every benchmark: run each ``scripts/bench_*.py`` and collect its headline figures.

Run it as ``scripts/bench`` (which sets up the repository first)::

    scripts/bench                            # every benchmark at full size (about 15 minutes)
    scripts/bench --quick                    # smaller sizes: a smoke run of a minute or two
    scripts/bench --only anchor,gas --json   # a subset, one JSON object on stdout

Each benchmark runs as its own subprocess (``.venv/bin/python scripts/bench_X.py ... --json``),
so one that crashes or times out becomes an error row and the others still run. Its headline
figures are read from its JSON and printed as one Markdown table (``--json``: one JSON object)
on stdout, each with its unit, its target from the issues and whether it is met. Progress (rich:
the latest log line of the benchmark running) goes to stderr; each benchmark's full log is kept
in ``--log-dir``.

Adding a benchmark to the table is one entry in :data:`BENCHMARKS`: the script, its arguments
for a full and a ``--quick`` run, and the metrics read from its JSON (a dotted path or a function).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

from benchlib import DEFAULT_PG_URL, ROOT, background_load, machine_info  # noqa: E402

# ---------------------------------------------------------------------------------------------
# what the table holds


@dataclass(frozen=True)
class Target:
    """A bound a metric must meet, and the issue that sets it."""

    op: str  # ">=" or "<="
    bound: float
    source: str

    def met(self, value: float) -> bool:
        return value >= self.bound if self.op == ">=" else value <= self.bound

    def text(self) -> str:
        bound = f"{self.bound:,.0f}" if float(self.bound).is_integer() and self.bound >= 1000 else f"{self.bound:g}"
        return f"{'≥' if self.op == '>=' else '≤'} {bound}"


Extract = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class Metric:
    """One row: ``key`` in ``scripts/bench --json``, read from the benchmark's JSON by ``value``
    (a dotted path such as ``"proofs.large.rps"``, or a function of the whole report)."""

    key: str
    value: str | Extract
    unit: str
    target: Target | None = None

    def read(self, report: dict[str, Any]) -> Any:
        if callable(self.value):
            return self.value(report)
        node: Any = report
        for part in self.value.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node


@dataclass(frozen=True)
class Benchmark:
    """A benchmark script in ``scripts/`` that prints one JSON object with ``--json``."""

    name: str
    script: str
    metrics: tuple[Metric, ...]
    args: tuple[str, ...] = ()  # a full run
    quick: tuple[str, ...] = ()  # --quick: small sizes, a smoke run
    needs: str = ""  # what it needs besides the repository, for --list
    timeout_s: float = 1800.0
    extra: tuple[str, ...] = field(default=())  # --pass arguments, filled in at run time

    def command(self, *, quick: bool) -> list[str]:
        return [sys.executable, str(SCRIPTS / self.script), *(self.quick if quick else self.args), *self.extra, "--json"]


def _anchor_batches(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for result in report.get("results", []) for b in result.get("batches", [])]


def _checkpoint_gas(report: dict[str, Any]) -> int | None:
    """The steady-state checkpoint (index >= 1), the most any chain measured."""
    gas = [b["gas_per_checkpoint"] for b in _anchor_batches(report)]
    return max(gas) if gas else None


def _gas_per_reading_10k(report: dict[str, Any]) -> float | None:
    return next((b["gas_per_reading"] for b in _anchor_batches(report) if b["readings"] == 10_000), None)


BENCHMARKS: list[Benchmark] = [
    Benchmark(
        "ingest",
        "bench_ingest.py",
        (
            Metric("ingest_ratio", "ingest_ratio", "× raw P-256 rate", Target(">=", 0.5, "issue 3")),
            Metric("ingest_per_s", "ingest_per_s", "readings/s"),
            Metric("raw_p256_per_s", "raw_p256_per_s", "verifies/s"),
        ),
        quick=("-n", "2000", "-d", "10", "--raw-seconds", "1"),
        needs="PostgreSQL",
    ),
    Benchmark(
        "anchor",
        "bench_anchor.py",
        (
            Metric("checkpoint_gas", _checkpoint_gas, "gas", Target("<=", 48_000, "issue 4")),
            Metric("gas_per_reading_10k", _gas_per_reading_10k, "gas (batch of 10,000)"),
        ),
        quick=("--chain", "embedded", "--sizes", "1000,10000"),
    ),
    Benchmark(
        "proofs",
        "bench_proofs.py",
        (
            Metric("proof_bytes", "proof_bytes.typical.bytes", "bytes (typical bundle)"),
            Metric("proof_rps", "proofs.large.rps", "requests/s (large store)"),
            Metric("proof_p99_ms", "proofs.large.latency_ms.p99", "ms (large store)"),
            Metric("proof_flatness", "proof_flatness", "p99 large / p99 small", Target("<=", 1.5, "issue 4")),
            Metric("accept_to_proof_s", "accept_to_proof_s.mean", "s (mean)", Target("<=", 15, "issue 4")),
        ),
        quick=(
            "--small", "1000", "--large", "5000", "--seconds", "2", "--warmup", "0.5",
            "--latency-samples", "5", "--id-sample", "2000", "-d", "4",
        ),  # fmt: skip
        needs="PostgreSQL",
        timeout_s=3600.0,
    ),
    Benchmark(
        "gas",
        "bench_gas.py",
        (
            Metric("pledge_gas", "pledge_gas", "gas (3 signatures)", Target("<=", 100_000, "issue 5")),
            Metric("release_gas", "release_gas", "gas (2 signatures)", Target("<=", 60_000, "issue 5")),
            Metric("register_lot_gas", "register_lot_gas", "gas", Target("<=", 150_000, "issue 5")),
        ),
    ),
    Benchmark(
        "evidence",
        "bench_evidence.py",
        (
            Metric("evidence_bytes_per_reading", "bytes_per_reading", "bytes (zipped package)"),
            Metric("evidence_build_cpu_s", "build_cpu_s", "CPU s (20,000 readings)"),
            Metric("evidence_verify_per_cpu_s", "verified_readings_per_cpu_s", "readings verified per CPU s"),
        ),
        quick=("--readings", "1000", "--db", "sqlite"),
        needs="PostgreSQL",
    ),
]

# ---------------------------------------------------------------------------------------------
# running one benchmark


@dataclass
class Outcome:
    """What one benchmark run left: its JSON report (if any), exit code and error."""

    benchmark: Benchmark
    status: str = "not run"  # ok | error | not run
    exit_code: int | None = None
    seconds: float = 0.0
    error: str | None = None
    report: dict[str, Any] | None = None
    log: str | None = None
    background_cores_before: float | None = None


def _tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_one(bench: Benchmark, *, quick: bool, log_dir: Path, on_line: Callable[[str], None]) -> Outcome:
    """Run ``bench`` as a subprocess; its stderr goes to ``log_dir/<name>.log`` and, line by line,
    to ``on_line``; its stdout must be one JSON object."""
    outcome = Outcome(bench, log=str(log_dir / f"{bench.name}.log"))
    outcome.background_cores_before = background_load(1.0)
    cmd = bench.command(quick=quick)
    log_path = Path(outcome.log or "")
    t0 = time.monotonic()
    with log_path.open("w") as sink:
        sink.write(f"$ {' '.join(cmd)}\n")
        sink.flush()
        try:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        except OSError as exc:
            outcome.status, outcome.error = "error", f"could not start: {exc}"
            return outcome
        out: list[str] = []
        reader = threading.Thread(target=lambda: out.append(proc.stdout.read() if proc.stdout else ""), daemon=True)
        reader.start()
        assert proc.stderr is not None
        timed_out = threading.Event()
        timer = threading.Timer(bench.timeout_s, _stop, args=(proc, timed_out))
        timer.start()
        try:
            for line in proc.stderr:
                sink.write(line)
                sink.flush()
                on_line(line.rstrip())
            proc.wait()
        finally:
            timer.cancel()
        reader.join(timeout=30)
    outcome.seconds = round(time.monotonic() - t0, 1)
    outcome.exit_code = proc.returncode
    stdout = "".join(out).strip()
    try:
        report = json.loads(stdout) if stdout else None
        outcome.report = report if isinstance(report, dict) else None
    except json.JSONDecodeError:
        outcome.report = None
    problems = []
    if timed_out.is_set():
        problems.append(f"timed out after {bench.timeout_s:.0f} s")
    if proc.returncode != 0:
        problems.append(f"exit {proc.returncode}")
    if outcome.report is None:
        problems.append("no JSON report on stdout")
    elif outcome.report.get("error"):
        problems.append(str(outcome.report["error"]).splitlines()[0])
    elif outcome.report.get("problems"):
        problems.append("; ".join(map(str, outcome.report["problems"]))[:300])
    if problems:
        outcome.status = "error"
        tail = _tail(log_path, 3).replace("\n", " | ")
        outcome.error = ", ".join(problems) + (f" (log: {tail[-300:]})" if tail and outcome.report is None else "")
    else:
        outcome.status = "ok"
    return outcome


def _stop(proc: subprocess.Popen[str], timed_out: threading.Event) -> None:
    """Time is up: SIGTERM (the benchmarks stop their service and clean up), then SIGKILL."""
    if proc.poll() is None:
        timed_out.set()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


# ---------------------------------------------------------------------------------------------
# the table


def rows_of(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    rows = []
    for o in outcomes:
        for m in o.benchmark.metrics:
            value = m.read(o.report) if o.report else None
            result = "—"
            if value is None:
                result = "error" if o.status == "error" else "—"
            elif m.target is not None:
                result = "pass" if m.target.met(value) else "FAIL"
            rows.append(
                {
                    "benchmark": o.benchmark.name,
                    "metric": m.key,
                    "value": value,
                    "unit": m.unit,
                    "target": m.target.text() if m.target else None,
                    "target_source": m.target.source if m.target else None,
                    "result": result,
                }
            )
        if o.status == "error":
            rows.append(
                {
                    "benchmark": o.benchmark.name,
                    "metric": "error",
                    "value": o.error,
                    "unit": "",
                    "target": None,
                    "target_source": None,
                    "result": "ERROR",
                }
            )
    return rows


def fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value).replace("|", "\\|")
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| benchmark | metric | value | unit | target | result |", "|---|---|---:|---|---|---|"]
    for r in rows:
        target = f"{r['target']} ({r['target_source']})" if r["target"] else ""
        lines.append(
            f"| {r['benchmark']} | {r['metric']} | {fmt(r['value'])} | {r['unit']} | {target} | {r['result']} |"
        )
    return "\n".join(lines)


def machine_line(machine: dict[str, Any]) -> str:
    load = machine.get("load", {})
    before = load.get("background_cores_before") or []
    during = load.get("other_cores_in_timed_windows")
    parts = [
        f"{machine['cores']} cores ({machine['cpu_model']}), {machine['mem_gb']} GB RAM, Python {machine['python']}",
        f"other work before each benchmark {min(before):g}-{max(before):g} cores busy" if before else None,
        f"up to {during:g} cores of other work during the timed windows" if during is not None else None,
        (
            f"1-min load average {load['loadavg_mean']:g} mean, {load['loadavg_max']:g} max"
            if load.get("loadavg_mean") is not None
            else None
        ),
    ]
    return "; ".join(p for p in parts if p)


def _other_cores(node: Any) -> list[float]:
    """Every ``cpu.other_cores`` a benchmark reported for its timed windows (see benchlib.cpu_delta)."""
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("other_cores"), int | float):
            found.append(float(node["other_cores"]))
        for v in node.values():
            found += _other_cores(v)
    elif isinstance(node, list):
        for v in node:
            found += _other_cores(v)
    return found


class LoadSampler:
    """The 1-minute load average, every few seconds while the benchmarks run."""

    def __init__(self, every_s: float = 5.0) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)

    def _run(self, every_s: float) -> None:
        while True:
            try:
                self.samples.append(os.getloadavg()[0])
            except OSError:
                return
            if self._stop.wait(every_s):
                return

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return None
    return out.stdout.strip() or None


# ---------------------------------------------------------------------------------------------
# the whole run


def run_all(
    benchmarks: list[Benchmark], *, quick: bool, log_dir: Path, progress: bool = True
) -> tuple[list[Outcome], dict[str, Any]]:
    """Run ``benchmarks`` one after another with a rich progress display on stderr."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True, quiet=not progress)
    outcomes: list[Outcome] = []
    started = datetime.now(UTC)
    with LoadSampler() as load, Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.fields[name]:<8}"),
        BarColumn(bar_width=20),
        TimeElapsedColumn(),
        TextColumn("{task.description}", markup=False),
        console=console,
        transient=False,
    ) as bar:
        overall = bar.add_task("", total=len(benchmarks), name="all")
        for bench in benchmarks:
            task = bar.add_task("starting", total=None, name=bench.name)

            def on_line(line: str, task: Any = task) -> None:
                if line.strip():
                    bar.update(task, description=line.strip()[-110:])

            outcome = run_one(bench, quick=quick, log_dir=log_dir, on_line=on_line)
            outcomes.append(outcome)
            verdict = f"ok in {outcome.seconds:.0f} s" if outcome.status == "ok" else f"ERROR: {outcome.error}"
            bar.update(task, total=1, completed=1, description=verdict)
            bar.advance(overall)
    machine = machine_info()
    machine["load"] = {
        "background_cores_before": [o.background_cores_before for o in outcomes if o.background_cores_before is not None],
        "other_cores_in_timed_windows": max((c for o in outcomes for c in _other_cores(o.report)), default=None),
        "loadavg_mean": round(sum(load.samples) / len(load.samples), 2) if load.samples else None,
        "loadavg_max": round(max(load.samples), 2) if load.samples else None,
    }
    meta = {
        "started": started.isoformat(timespec="seconds"),
        "seconds": round((datetime.now(UTC) - started).total_seconds(), 1),
        "commit": git_commit(),
        "quick": quick,
        "machine": machine,
    }
    return outcomes, meta


def summary(outcomes: list[Outcome], meta: dict[str, Any]) -> dict[str, Any]:
    """The ``--json`` object: every metric of every known benchmark (null when not run or not
    measured), the rows, each benchmark's status and report, and the machine."""
    rows = rows_of(outcomes)
    result: dict[str, Any] = {m.key: None for b in BENCHMARKS for m in b.metrics}
    result.update({r["metric"]: r["value"] for r in rows if r["metric"] != "error"})
    result["ok"] = all(o.status == "ok" for o in outcomes)
    result["targets_met"] = all(r["result"] != "FAIL" for r in rows)
    result["rows"] = rows
    result["benchmarks"] = {
        o.benchmark.name: {
            "status": o.status,
            "exit_code": o.exit_code,
            "seconds": o.seconds,
            "error": o.error,
            "command": " ".join(o.benchmark.command(quick=meta["quick"])[1:]),
            "log": o.log,
            "report": o.report,
        }
        for o in outcomes
    }
    return {**result, **meta}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    names = [b.name for b in BENCHMARKS]
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description=__doc__.split("\n\n", 1)[0] + "\n\n" + __doc__.split("\n\n", 2)[2].rsplit("\n\n", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Benchmarks: "
        + "; ".join(f"{b.name} ({b.script}{', needs ' + b.needs if b.needs else ''})" for b in BENCHMARKS)
        + ". Exit status: 0 every benchmark ran, 1 one failed (an error row), 3 with --check when a target "
        "is missed, 130 interrupted.",
    )
    parser.add_argument(
        "--only", default=",".join(names), metavar="NAMES", help=f"comma-separated subset of: {', '.join(names)}"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not figures to quote")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the Markdown table")
    parser.add_argument(
        "--pg-url",
        default=DEFAULT_PG_URL,
        help=f"PostgreSQL for the benchmarks that need one (default {DEFAULT_PG_URL}; env PLEDGELEDGER_TEST_PG_URL)",
    )
    parser.add_argument(
        "--pass",
        dest="passthrough",
        action="append",
        default=[],
        metavar="NAME:ARG",
        help="an extra argument for one benchmark, repeatable (e.g. --pass ingest:--connections=4)",
    )
    parser.add_argument(
        "--timeout", type=float, help="seconds each benchmark may take before it is stopped (default: per benchmark)"
    )
    parser.add_argument("--log-dir", type=Path, help="where each benchmark's log goes (default: a new temporary dir)")
    parser.add_argument("--check", action="store_true", help="exit 3 when a metric misses its target")
    parser.add_argument("--no-progress", action="store_true", help="no progress display on stderr")
    args = parser.parse_args(argv)
    chosen = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(chosen) - set(names))
    if unknown or not chosen:
        parser.error(f"--only takes names from {', '.join(names)}; unknown: {', '.join(unknown) or '(none given)'}")
    for item in args.passthrough:
        name, sep, _ = item.partition(":")
        if not sep or name not in names:
            parser.error(f"--pass takes NAME:ARG with NAME one of {', '.join(names)}, not {item!r}")
    args.chosen = chosen
    return args


def selected(args: argparse.Namespace) -> list[Benchmark]:
    from dataclasses import replace

    picked = []
    for b in BENCHMARKS:
        if b.name not in args.chosen:
            continue
        extra = tuple(item.partition(":")[2] for item in args.passthrough if item.partition(":")[0] == b.name)
        picked.append(replace(b, extra=extra, timeout_s=args.timeout or b.timeout_s))
    return picked


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["PLEDGELEDGER_TEST_PG_URL"] = args.pg_url  # benchlib's default --pg-url in every child
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="pledgeledger-bench-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        outcomes, meta = run_all(selected(args), quick=args.quick, log_dir=log_dir, progress=not args.no_progress)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    report = summary(outcomes, meta)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        when = report["started"][:10]
        mode = "quick run (--quick), not for quoting" if args.quick else "full run"
        print(f"Benchmarks, {when}, commit {report['commit'] or '?'}, {mode}, {report['seconds']:.0f} s in all")
        print(f"Machine: {machine_line(report['machine'])}")
        print()
        print(markdown(report["rows"]))
    print(f"logs: {log_dir}", file=sys.stderr)
    if not report["ok"]:
        return 1
    return 3 if args.check and not report["targets_met"] else 0


if __name__ == "__main__":
    sys.exit(main())
