"""The ``pledgeledger`` command line (SPEC §7)."""

from __future__ import annotations

import json
import logging.config
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

app = typer.Typer(
    name="pledgeledger",
    help="Evidence ledger for IoT-supervised loans against movable goods.\n\n"
    "Configuration comes from flags or PLEDGELEDGER_* environment variables "
    "(PLEDGELEDGER_DATA_DIR, PLEDGELEDGER_DB_URL, PLEDGELEDGER_CHAIN, PLEDGELEDGER_HOST, PLEDGELEDGER_PORT, ...).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # help texts are plain: "[env ...; default ...]" must not read as markup
)
org_app = typer.Typer(help="Organisations (warehouse operators, banks, auditors, insurers, enterprises) and their API keys.")
app.add_typer(org_app, name="org")
feed_app = typer.Typer(help="Price feeds whose signed price points the ledger accepts (POST /v1/prices) to value pledged lots.")
app.add_typer(feed_app, name="feed")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

DataDir = Annotated[Optional[Path], typer.Option("--data-dir", help="State directory [env PLEDGELEDGER_DATA_DIR; default ./data]")]
DbUrl = Annotated[Optional[str], typer.Option("--db-url", help="SQLAlchemy URL [env PLEDGELEDGER_DB_URL; default SQLite in the data dir]")]


def _settings(**overrides: object):  # type: ignore[no-untyped-def]
    from ledger.settings import Settings

    return Settings(**{k: v for k, v in overrides.items() if v is not None})


@app.command()
def serve(
    data_dir: DataDir = None,
    db_url: DbUrl = None,
    chain: Annotated[Optional[str], typer.Option(help="managed | embedded | http(s):// RPC URL [env PLEDGELEDGER_CHAIN; default managed]")] = None,
    host: Annotated[Optional[str], typer.Option(help="Bind address [env PLEDGELEDGER_HOST; default 127.0.0.1]")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port [env PLEDGELEDGER_PORT; default 8000]")] = None,
    batch_interval: Annotated[Optional[float], typer.Option("--batch-interval", help="Seconds between anchored batches [default 5]")] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            envvar="PLEDGELEDGER_WORKERS",
            help="HTTP worker processes sharing the port, to use every core for ingestion [env PLEDGELEDGER_WORKERS; "
            "default 1]. With more than one, this process keeps the chain node, anchoring and MQTT and the workers "
            "serve requests; the embedded chain cannot be shared, so use managed or an RPC URL.",
        ),
    ] = 1,
    ingest_processes: Annotated[
        Optional[int],
        typer.Option(
            min=1, max=256,
            help="Worker processes that decode, verify and store POST /v1/readings batches, so ingestion uses "
            "every core [env PLEDGELEDGER_INGEST_PROCESSES; default 1: in the serving process]. Set it to the number "
            "of cores on a busy PostgreSQL ledger; works with any chain.",
        ),
    ] = None,
    confirmations: Annotated[Optional[int], typer.Option(help="Blocks after which an anchor is final where the node has no 'finalized' tag [env PLEDGELEDGER_CONFIRMATIONS; default 12 on an RPC chain, 1 on managed/embedded]")] = None,
) -> None:
    """Run the ledger service: HTTP API, anchoring loop, and (managed chain) a local anvil node.

    Logs go to stderr as text, or as one JSON object per line with PLEDGELEDGER_LOG_FORMAT=json
    (level: PLEDGELEDGER_LOG_LEVEL, default INFO); Prometheus metrics are at /metrics.
    """
    import os
    import shutil
    import signal

    settings = _settings(data_dir=data_dir, db_url=db_url, chain=chain, host=host, port=port, batch_interval_s=batch_interval,
                         ingest_processes=ingest_processes, confirmations=confirmations)
    metrics_dir = _multiprocess_metrics(max(workers, settings.ingest_processes))  # before prometheus_client is imported
    signal.signal(signal.SIGTERM, _terminated)
    try:
        _serve(workers, settings)
    except _Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        terminated = True
    else:
        terminated = False
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    if terminated:  # everything is shut down: end as the signal ends a process (what init systems expect)
        os.kill(os.getpid(), signal.SIGTERM)


class _Terminated(BaseException):
    """SIGTERM reached ``serve``. uvicorn shuts down gracefully on it, then raises the signal
    again; without a handler that would end the process before the chain node it started and
    the ingestion pool are stopped."""


def _terminated(signum: int, frame: object) -> None:
    raise _Terminated


def _serve(workers: int, settings: Any) -> None:
    import gc
    import os

    import uvicorn
    from sqlalchemy.exc import SQLAlchemyError

    from api.logs import logging_config, register_secrets
    from api.main import create_app
    from ledger.chain.base import ChainError
    from ledger.service import Ledger

    register_secrets(settings)
    log_config = logging_config(fmt=settings.log_format, level=settings.log_level)
    logging.config.dictConfig(log_config)
    log = logging.getLogger("pledgeledger")  # status lines go through logging too: one format on stderr
    if workers > 1 and settings.ingest_processes > 1:
        log.error("cannot start: use either --workers or --ingest-processes (the ingestion pool serves one process's requests)")
        raise typer.Exit(2)
    if workers > 1 and settings.chain == "embedded":
        log.error("cannot start: the embedded chain lives inside one process; with --workers > 1 use --chain managed or an RPC URL")
        raise typer.Exit(2)
    log.info("starting: data in %s, chain %s", settings.data_dir.resolve(), settings.chain)
    try:
        ledger = Ledger.open(settings)
    except (ChainError, SQLAlchemyError, OSError, ValueError) as exc:
        log.error("cannot start: %s", exc)
        raise typer.Exit(2)
    log.info("pledgeledger on http://%s:%s (docs at /docs, metrics at /metrics)%s", settings.host, settings.port,
             f", {workers} workers" if workers > 1 else "")
    server = dict(host=settings.host, port=settings.port, log_config=log_config, log_level=settings.log_level.lower(), access_log=False)
    try:
        if workers == 1:
            app_ = create_app(ledger=ledger)
            gc.freeze()  # the start-up heap (web3, SQLAlchemy, the app) is never garbage: keep collections off it
            uvicorn.run(app_, **server)
        else:  # the workers are spawned (fresh interpreters) and read their settings from here
            os.environ.update(
                PLEDGELEDGER_DATA_DIR=str(settings.data_dir.resolve()),
                PLEDGELEDGER_DB_URL=settings.database_url,
                PLEDGELEDGER_CHAIN=ledger.chain.rpc_url or "",
                PLEDGELEDGER_RELAYER_KEY=ledger.chain.client.account.key.to_0x_hex(),
                PLEDGELEDGER_MQTT_URL="",
            )
            uvicorn.run("api.main:worker_app", factory=True, workers=workers, **server)
    finally:
        ledger.close()


def _multiprocess_metrics(workers: int) -> Path | None:
    """Put prometheus_client in multiprocess mode when several processes serve (ledger.metrics).

    With ``--workers N > 1`` (or ``--ingest-processes N > 1``) and no ``PROMETHEUS_MULTIPROC_DIR``, a fresh directory is made (and
    returned, to be removed at exit). A ``PROMETHEUS_MULTIPROC_DIR`` the operator set is used
    with any number of workers, emptied of a previous run's files first: it must belong to
    this service alone.
    """
    import os
    import tempfile

    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return None
    if workers == 1:
        return None
    path = Path(tempfile.mkdtemp(prefix="pledgeledger-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


@app.command()
def deploy(
    rpc: Annotated[str, typer.Option(help="JSON-RPC URL of the chain to deploy to")],
    key: Annotated[Optional[str], typer.Option(help="0x private key paying for the deployment [env PLEDGELEDGER_RELAYER_KEY]")] = None,
    data_dir: DataDir = None,
) -> None:
    """Deploy DeviceRegistry, ReadingAnchor and CollateralRegistry to any EVM chain and record the addresses in the data dir."""
    from ledger.chain.backends import deploy_to, open_chain

    settings = _settings(data_dir=data_dir, chain=rpc, relayer_key=key)
    handle = open_chain(rpc, settings.data_dir, relayer_key=settings.relayer_key)
    try:
        deployment = deploy_to(handle.client, settings.data_dir)
    finally:
        handle.close()
    print(json.dumps({"chain_id": deployment.chain_id, "contracts": deployment.contracts, "block_number": deployment.block_number}, indent=2))


Rpc = Annotated[
    Optional[str],
    typer.Option("--rpc", help="JSON-RPC URL of the service's chain (its /healthz rpc_url); needed for what goes on chain"),
]
RelayerKey = Annotated[Optional[str], typer.Option("--key", help="0x relayer (registrar) private key [env PLEDGELEDGER_RELAYER_KEY; default: the dev chain's]")]


@contextmanager
def _chain_ledger(rpc: str, key: Optional[str], data_dir: Optional[Path], db_url: Optional[str]) -> Iterator[Any]:
    """The ledger over the service's chain reached by URL (its deployment recorded in the data dir); no
    background jobs, no MQTT."""
    from ledger.chain import ANVIL_DEV_KEY
    from ledger.service import Ledger

    settings = _settings(data_dir=data_dir, db_url=db_url, chain=rpc, relayer_key=key)
    settings.mqtt_url = None
    if settings.relayer_key is None:
        settings.relayer_key = ANVIL_DEV_KEY
    ledger = Ledger.open(settings, start_anchoring=False)
    try:
        yield ledger
    finally:
        ledger.close()


def _fail(exc: Exception) -> None:
    err.print(f"[red]error[/] {getattr(exc, 'code', type(exc).__name__)}: {getattr(exc, 'message', exc)}")
    raise typer.Exit(2)


@org_app.command("create")
def org_create(
    name: Annotated[str, typer.Argument(help="Organisation name, unique")],
    role: Annotated[str, typer.Option(help="operator | bank | auditor | insurer | enterprise")],
    signer: Annotated[Optional[str], typer.Option(help="0x address that signs this organisation's EIP-712 approvals")] = None,
    signer_key: Annotated[
        Optional[str],
        typer.Option("--signer-key", help="DEV/DEMO ONLY: the signer's 0x private key; its registration is signed here and submitted (needs --rpc)"),
    ] = None,
    rpc: Rpc = None,
    key: RelayerKey = None,
    data_dir: DataDir = None,
    db_url: DbUrl = None,
) -> None:
    """Create an organisation and print JSON with its API key (shown once; only its hash is stored).

    With --signer the key's address is stored, and it must prove possession before it is recorded on chain
    with the role: it signs the RegisterOrganisation typed data (GET /v1/organisation with the new API key
    shows it; with --rpc it is printed here) and posts the signature to /v1/actions/{id}/signatures.
    """
    from ledger.errors import LedgerError
    from ledger.orgs import create_organisation
    from ledger.store.db import Database

    signing = None
    if signer_key is not None:
        from eth_account import Account

        try:
            signing = Account.from_key(signer_key)
        except Exception:  # never echo the key
            _fail(ValueError("--signer-key is not a 0x secp256k1 private key"))
        if signer is not None and signer.lower() != signing.address.lower():
            _fail(ValueError("--signer and --signer-key name different addresses"))
        signer = signing.address
        if rpc is None:
            _fail(ValueError("--signer-key registers the signer on chain: pass --rpc URL"))
    if rpc is not None:
        try:
            with _chain_ledger(rpc, key, data_dir, db_url) as ledger:
                new = ledger.create_organisation(name=name, role=role, signer=signer)
                org = ledger.authenticate(new.api_key)
                view = ledger.organisation(org) if signer else None
                if signing is not None and view["registration"] is not None:
                    from ledger.chain.collateral import sign_typed_data

                    registration = view["registration"]
                    signature = "0x" + sign_typed_data(signing.key, registration["typed_data"]).hex()
                    ledger.add_action_signature(org, registration["id"], signature)
                    view = ledger.organisation(org)
        except LedgerError as exc:
            _fail(exc)
        out_view = {"id": new.id, "name": new.name, "role": new.role, "signer": new.signer, "api_key": new.api_key}
        if view is not None:
            out_view.update(chain_org=view["chain_org"], chain_tx=view["chain_tx"], registration=view["registration"])
        print(json.dumps(out_view, indent=2))
        return
    settings = _settings(data_dir=data_dir, db_url=db_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    db.migrate()
    try:
        with db.session() as session:
            org = create_organisation(session, name=name, role=role, signer=signer)
    except LedgerError as exc:
        _fail(exc)
    finally:
        db.dispose()
    shown: dict[str, Any] = {"id": org.id, "name": org.name, "role": org.role, "signer": org.signer, "api_key": org.api_key}
    if signer is not None:
        shown["registration"] = (
            "not on chain yet: GET /v1/organisation with this api_key returns the RegisterOrganisation typed data; "
            "sign it with the signer's key and POST the signature to /v1/actions/{registration.id}/signatures"
        )
    print(json.dumps(shown, indent=2))


@org_app.command("sign-registration")
def org_sign_registration(
    name: Annotated[str, typer.Argument(help="The organisation whose signer signed its registration")],
    signature: Annotated[str, typer.Option(help="0x r||s||v: the signer's eth_signTypedData_v4 of the registration's typed data")],
    rpc: Annotated[str, typer.Option("--rpc", help="JSON-RPC URL of the service's chain")],
    key: RelayerKey = None,
    data_dir: DataDir = None,
    db_url: DbUrl = None,
) -> None:
    """Post an organisation's signed registration (as POST /v1/actions/{id}/signatures does) and submit it."""
    from sqlalchemy import select

    from ledger.errors import LedgerError, NotFound
    from ledger.store.models import Organisation

    try:
        with _chain_ledger(rpc, key, data_dir, db_url) as ledger:
            with ledger.db.session() as session:
                org = session.scalar(select(Organisation).where(Organisation.name == name))
            if org is None:
                raise NotFound(f"no organisation named {name!r}", code="organisation_not_found")
            registration = ledger.organisation(org)["registration"]
            if registration is None:
                raise NotFound(f"{name} has no registration waiting (no signer, or on chain already)", code="no_registration")
            done = ledger.add_action_signature(org, registration["id"], signature)
            print(json.dumps({"action": done["id"], "status": done["status"], "tx_hash": done["tx_hash"], "error": done["error"],
                              "chain_org": ledger.organisation(org)["chain_org"]}, indent=2))  # fmt: skip
    except LedgerError as exc:
        _fail(exc)


@org_app.command("affiliate")
def org_affiliate(
    org_a: Annotated[str, typer.Argument(help="An organisation's name (e.g. the warehouse)")],
    org_b: Annotated[str, typer.Argument(help="The other's name (e.g. the enterprise it is affiliated with)")],
    rpc: Annotated[str, typer.Option("--rpc", help="JSON-RPC URL of the service's chain")],
    remove: Annotated[bool, typer.Option("--remove", help="Record that they are no longer affiliated")] = False,
    key: RelayerKey = None,
    data_dir: DataDir = None,
    db_url: DbUrl = None,
) -> None:
    """Record on chain (the registrar's setAffiliation) that two organisations are affiliated: the contract then
    refuses a lot whose warehouse is affiliated with its enterprise (fraud case 16)."""
    from ledger.errors import LedgerError

    try:
        with _chain_ledger(rpc, key, data_dir, db_url) as ledger:
            print(json.dumps(ledger.set_affiliation(org_a, org_b, not remove), indent=2))
    except LedgerError as exc:
        _fail(exc)


@org_app.command("device-ca")
def org_device_ca(
    name: Annotated[str, typer.Argument(help="The warehouse operator's organisation name")],
    ca_file: Annotated[Optional[Path], typer.Option("--ca-file", help="PEM file of the manufacturer or provisioning CA roots to trust")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Stop requiring device certificates")] = False,
    data_dir: DataDir = None,
    db_url: DbUrl = None,
) -> None:
    """Require every device key this warehouse registers or rotates to chain to the given CA roots."""
    from ledger.errors import LedgerError
    from ledger.orgs import set_device_ca
    from ledger.store.db import Database

    if clear == (ca_file is not None):
        err.print("pass exactly one of --ca-file FILE or --clear")
        raise typer.Exit(2)
    settings = _settings(data_dir=data_dir, db_url=db_url)
    db = Database(settings.database_url)
    db.migrate()
    try:
        with db.session() as session:
            set_device_ca(session, name=name, ca_pem=None if clear else ca_file.read_text())
    except (LedgerError, OSError) as exc:
        err.print(f"error: {getattr(exc, 'message', exc)}")
        raise typer.Exit(2)
    finally:
        db.dispose()
    print(json.dumps({"name": name, "device_certificates_required": not clear}))


@app.command()
def verify(
    file: Annotated[
        Path,
        typer.Argument(
            help="Proof bundle (GET /v1/readings/{id}/proof), multiproof bundle (GET /v1/batches/{index}/multiproof) "
            "or production answer (GET /v1/production/...) JSON; - for stdin"
        ),
    ],
    rpc: Annotated[str, typer.Option(help="JSON-RPC URL of a node you trust on the bundle's chain")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Verify a proof or multiproof bundle trusting only the chain: signature, digest, leaf, proof, rootOf, device key.

    A production answer is verified completely: every multiproof bundle of its evidence as above,
    then its metric recomputed from those readings must equal its result.

    Exits 0 when every check holds, 1 naming the failed checks otherwise, 2 on unusable input.
    """
    from ledger.chain.base import ChainError
    from ledger.verification import verify_with_chain

    try:
        bundle = json.loads(sys.stdin.read() if str(file) == "-" else file.read_text())
    except (OSError, ValueError) as exc:
        err.print(f"[red]cannot read {file}[/]: {exc}")
        raise typer.Exit(2)
    try:
        report = verify_with_chain(bundle, rpc)
    except ChainError as exc:
        err.print(f"[red]cannot read the chain at {rpc}[/]: {exc}")
        raise typer.Exit(2)
    _print_report(report, "bundle", as_json=as_json)
    raise typer.Exit(0 if report.ok else 1)


def _print_report(report, what: str, *, as_json: bool, width: int = 10) -> None:  # type: ignore[no-untyped-def]
    """A verification report (:class:`attestation.bundle.VerificationReport`): JSON, or one line per check."""
    from rich.markup import escape

    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
        return
    for check in report.checks:
        mark = "[green]ok  [/]" if check.ok else "[red]FAIL[/]"
        out.print(f"{mark} {check.name:<{width}} {escape(check.detail)}", highlight=False)
    out.print(f"[bold green]{what} verified[/]" if report.ok else f"[bold red]{what} NOT verified[/]: failed {', '.join(report.failed)}")


@app.command("verify-evidence")
def verify_evidence(
    file: Annotated[Path, typer.Argument(help="Evidence package of a lot (GET /v1/lots/{id}/evidence), a zip")],
    rpc: Annotated[str, typer.Option(help="JSON-RPC URL of a node you trust on the package's chain")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Verify a lot's evidence package trusting only the chain.

    Checks every file's SHA-256 against the manifest; every event against its transaction's receipt
    and the receipt against the node; that no event of the lot up to the package's block is missing;
    the lot state the events imply against the claim and against lotOf now; the lot's and the actions'
    documents against the hashes on chain and in the signed typed data; every action's EIP-712
    typed data (this contract, this chain), each signature against its required signer, and each
    confirmed action's transaction calldata; the devices' keys against DeviceRegistry.keysOf; every
    reading bundle (signature, digest, multiproof, rootOf, device key at the reading's time).
    Exits 0 when every check holds, 1 naming the failed checks otherwise, 2 when the file or the
    chain cannot be read.
    """
    from rich.markup import escape
    from attestation.evidence import CHECKS, PackageError
    from ledger.chain.base import ChainError
    from ledger.verification import verify_evidence_with_chain

    try:
        handle = file.open("rb")
    except OSError as exc:
        err.print(f"[red]cannot read {escape(str(file))}[/]: {escape(str(exc))}", highlight=False)
        raise typer.Exit(2)
    with handle:
        try:
            report = verify_evidence_with_chain(handle, rpc)
        except PackageError as exc:
            err.print(f"[red]cannot read {escape(str(file))}[/]: {escape(exc.message)}", highlight=False)
            raise typer.Exit(2)
        except ChainError as exc:
            err.print(f"[red]cannot read the chain at {escape(rpc)}[/]: {escape(str(exc))}", highlight=False)
            raise typer.Exit(2)
    _print_report(report, "evidence", as_json=as_json, width=max(map(len, CHECKS)))
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def audit(
    rpc: Annotated[str, typer.Option(help="JSON-RPC URL of a node you trust on the ledger's chain")],
    contract: Annotated[Optional[str], typer.Option(help="ReadingAnchor address [default: the deployment recorded in the data dir for the node's chain]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
    data_dir: DataDir = None,
    db_url: DbUrl = None,
    chunk_size: Annotated[int, typer.Option("--chunk-size", min=1, help="Readings fetched from the database at a time")] = 2000,
    max_findings: Annotated[int, typer.Option("--max-findings", min=1, help="Findings listed (all are counted)")] = 1000,
) -> None:
    """Audit the ledger against the chain, trusting neither the database nor the service.

    Re-verifies every stored reading (digest, signature, the device key valid at its time in the
    database and on chain, its stored proof), recomputes every batch root and compares it with
    rootOf on chain, matches checkpoints and batches one to one and walks their links, and lists
    per device the sequence gaps, broken prev links and key history. Exits 0 when nothing is
    wrong, 1 naming every finding otherwise, 2 when the database or the chain cannot be read.
    """
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from sqlalchemy.exc import SQLAlchemyError

    from ledger.audit import open_audit_chain, run_audit
    from ledger.chain.base import ChainError
    from ledger.store.db import Database

    settings = _settings(data_dir=data_dir, db_url=db_url)
    db = Database(settings.database_url)
    columns = (TextColumn("auditing readings"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        chain = open_audit_chain(rpc, settings.data_dir, contract=contract)
        with Progress(*columns, console=err, transient=True) as bar:
            task = bar.add_task("audit", total=None)
            report = run_audit(db, chain, chunk_size=chunk_size, max_findings=max_findings,
                               progress=lambda done, total: bar.update(task, completed=done, total=total))
    except (ChainError, SQLAlchemyError) as exc:
        err.print(f"[red]cannot audit[/]: {escape(str(exc))}", highlight=False)
        raise typer.Exit(2)
    finally:
        db.dispose()
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        _print_audit(report.as_dict())
    raise typer.Exit(0 if report.ok else 1)


def _print_audit(report: dict) -> None:
    from rich.markup import escape
    from rich.table import Column, Table

    chain, counts = report["chain"], report["counts"]
    out.print(f"[bold]audit[/] of chain {chain['id']}, anchor {chain['contract']}: {chain['checkpoints']} checkpoints on chain", highlight=False)
    out.print(f"  {counts['batches']} batches ({counts['pending_batches']} not anchored yet), {counts['readings']} readings "
              f"({counts['pending_readings']} not batched yet), {counts['devices']} devices", highlight=False)
    devices = Table(Column("device", overflow="fold"), "readings", "seq", "seq gaps", "prev gaps", "keys (db / chain)",
                    title="devices", title_justify="left")
    for d in report["devices"]:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(Counter(g["kind"] for g in d["gaps"]).items())) or "none"
        kinds += f" (first {len(d['gaps'])} of {d['gap_count']})" if d["gap_count"] > len(d["gaps"]) else ""
        span = f"{d['first_seq']}..{d['last_seq']}" if d["readings"] else "-"
        devices.add_row(escape(d["id"]), str(d["readings"]), span, str(d["seq_gap_count"]), kinds, f"{len(d['keys'])} / {len(d['chain_keys'])}")
    if report["devices"]:
        out.print(devices)
    if report["findings"]:
        out.print("[bold]findings[/]")
        for f in report["findings"]:
            where = ", ".join(f"{k} {f[k]}" for k in ("batch", "device", "reading") if k in f)
            mark = "[red]ERROR[/]" if f["severity"] == "error" else "[yellow]warn [/]"
            out.print(f"{mark} {f['kind']} ({escape(where)})\n      {escape(f['message'])}", highlight=False)
        if report["findings_truncated"]:
            out.print(f"  (first {len(report['findings'])} listed; by kind: {report['findings_by_kind']})", highlight=False)
    if report["ok"]:
        out.print(f"[bold green]audit clean[/]: every reading, root and checkpoint matches the chain ({report['warnings']} warnings)")
    else:
        kinds = ", ".join(f"{n} {k}" for k, n in report["findings_by_kind"].items())
        out.print(f"[bold red]audit FAILED[/]: {report['errors']} errors ({kinds})", highlight=False)


@app.command()
def demo(
    url: Annotated[str, typer.Option(help="Base URL of a running service")] = "http://127.0.0.1:8000",
    scene: Annotated[Optional[list[str]], typer.Option("--scene", help="pledge, production or disaster; repeat for several [default: all three]")] = None,
    data_dir: DataDir = None,
    db_url: DbUrl = None,
) -> None:
    """Play the three modes of supervised pledges against a running service, then report what each proof shows.

    1. pledge: steel coils on load cells, RFID and a geotag; the lot registered, verified, pledged by
       three signatures, partly released; an outflow nobody approved freezes it on chain.
    2. production: a textile plant's power meter and loom; kWh handed to a bank with its proofs.
    3. disaster: smoke and water alarms reach an insurer's webhook, HMAC-signed.

    Devices sign readings with their own keys (P-256, Ed25519, secp256k1); the parties sign EIP-712
    approvals with keys the service never sees. The organisations are created in the service's
    database (as `pledgeledger org create` does), so run it with the service's --data-dir / --db-url.
    Exits 0 when every checked claim holds.
    """
    from api.demo import SCENES, run
    from ledger.orgs import create_organisation
    from ledger.store.db import Database

    chosen = scene or list(SCENES)
    unknown = sorted(set(chosen) - set(SCENES))
    if unknown:
        err.print(f"[red]unknown scene {', '.join(unknown)}[/]: choose from {', '.join(SCENES)}")
        raise typer.Exit(2)
    settings = _settings(data_dir=data_dir, db_url=db_url)
    db = Database(settings.database_url)

    def make_party(name: str, role: str, signer: str) -> str:
        with db.session() as session:
            return create_organisation(session, name=name, role=role, signer=signer).api_key

    try:
        code = run(url, make_party, chosen, out)
    finally:
        db.dispose()
    raise typer.Exit(code)


@app.command("mqtt-bridge")
def mqtt_bridge(
    url: Annotated[Optional[str], typer.Option(help="Broker: mqtt://host:port, mqtt://user:pass@host:port, or mqtts://... for TLS (env PLEDGELEDGER_MQTT_URL)")] = None,
    data_dir: DataDir = None,
    db_url: DbUrl = None,
    client_id: Annotated[str, typer.Option("--client-id", help="Stable MQTT client id; the broker keeps its session while the bridge is down")] = "pledgeledger-bridge",
) -> None:
    """Run the MQTT bridge alone: ingest readings from pledgeledger/v1/readings/+ and answer on pledgeledger/v1/acks/<device>.

    Needs only the database, not the chain. Ctrl-C or SIGTERM stops it; readings not yet processed stay with the broker.
    """
    import signal
    import threading

    from rich.markup import escape
    from sqlalchemy.exc import SQLAlchemyError

    from api.logs import logging_config, register_secrets
    from ledger.mqtt import MqttBridge, parse_mqtt_url
    from ledger.store.db import Database

    settings = _settings(data_dir=data_dir, db_url=db_url, mqtt_url=url)
    register_secrets(settings)
    logging.config.dictConfig(logging_config(fmt=settings.log_format, level=settings.log_level))
    if not settings.mqtt_url:
        err.print("[red]no MQTT broker[/]: pass --url mqtt://host:1883 or set PLEDGELEDGER_MQTT_URL")
        raise typer.Exit(2)
    try:
        parse_mqtt_url(settings.mqtt_url)
    except ValueError as exc:
        err.print(f"[red]cannot start[/]: {escape(str(exc))}", highlight=False)
        raise typer.Exit(2)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    try:
        db.migrate()
        bridge = MqttBridge(db, settings.mqtt_url, max_future_skew_s=settings.max_future_skew_s, client_id=client_id)
    except (SQLAlchemyError, ValueError) as exc:
        db.dispose()
        err.print(f"[red]cannot start[/]: {escape(str(exc))}")
        raise typer.Exit(2)
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    bridge.start()
    err.print(f"[bold]pledgeledger mqtt-bridge[/] {bridge.url} as {client_id!r}, db {db.dialect} (Ctrl-C stops)")
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        bridge.stop()
        db.dispose()
    err.print(f"stopped: {bridge.accepted} accepted, {bridge.duplicates} duplicate, {bridge.rejected} rejected")


def _with_db(data_dir: Optional[Path], db_url: Optional[str], work):  # type: ignore[no-untyped-def]
    """Run ``work(session)`` in one transaction on the configured database; errors exit 2 with their fix."""
    from attestation.errors import AttestationError
    from ledger.errors import LedgerError
    from ledger.store.db import Database

    settings = _settings(data_dir=data_dir, db_url=db_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    db.migrate()
    try:
        with db.session() as session:
            return work(session)
    except (LedgerError, AttestationError) as exc:
        err.print(f"error {exc.code}: {exc.message}", markup=False)
        raise typer.Exit(2)
    finally:
        db.dispose()


@feed_app.command("add")
def feed_add(
    name: Annotated[str, typer.Argument(help="The feed's name: the `feed` its price points carry")],
    public_key_file: Annotated[Path, typer.Option("--public-key-file", help="PEM SubjectPublicKeyInfo the feed signs with")],
    alg: Annotated[str, typer.Option(help="EdDSA (Ed25519) | ES256 (P-256) | ES256K")] = "EdDSA",
    commodity: Annotated[Optional[list[str]], typer.Option("--commodity", help="A commodity it may price (repeat); default any")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Re-key a feed that is configured already")] = False,
    data_dir: DataDir = None,
    db_url: DbUrl = None,
) -> None:
    """Trust a price feed: its points, signed with this key over the RFC 8785 bytes of their payload, are accepted."""
    from ledger.valuation import add_feed

    try:
        pem = public_key_file.read_text()
    except OSError as exc:
        err.print(f"error: cannot read {public_key_file}: {exc.strerror}", markup=False)
        raise typer.Exit(2)
    view = _with_db(data_dir, db_url, lambda s: add_feed(s, name=name, alg=alg, public_key=pem, commodities=commodity, replace=replace))
    print(json.dumps(view, indent=2))


@feed_app.command("list")
def feed_list(data_dir: DataDir = None, db_url: DbUrl = None) -> None:
    """The configured price feeds as JSON."""
    from ledger.valuation import list_feeds

    print(json.dumps(_with_db(data_dir, db_url, list_feeds), indent=2))


@feed_app.command("remove")
def feed_remove(
    name: Annotated[str, typer.Argument(help="The feed to stop trusting")], data_dir: DataDir = None, db_url: DbUrl = None
) -> None:
    """Stop accepting a feed's points (stored points and valuations made with them are kept)."""
    from ledger.valuation import remove_feed

    _with_db(data_dir, db_url, lambda s: remove_feed(s, name))
    print(json.dumps({"feed": name, "active": False}))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
