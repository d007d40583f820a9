"""The ledger as one object: database, chain, anchoring loop, and the use cases the API calls.

``Ledger.open(settings)`` is the composition root; everything else takes its parts as
arguments, so tests can assemble the same pieces against any database and chain.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import IO, Any

from sqlalchemy import select

from attestation.errors import AttestationError
from attestation.production import ProductionQuery
from ledger import actions, audit, devices, evidence, ingest, lots, metrics, org_chain, orgs, production, proofs, submission, valuation, webhooks
from ledger.anchoring import Anchorer, Finality
from ledger.chain.backends import ChainHandle, ensure_deployment, open_chain
from ledger.chain.base import COLLATERAL, ChainError
from ledger.chain.collateral import CollateralClient
from ledger.errors import Conflict, Invalid, LedgerError, Unavailable
from ledger.ingest_pool import IngestPool
from ledger.leadership import Leadership
from ledger.mqtt import MqttBridge
from ledger.ratelimit import DeviceRateLimiter
from ledger.settings import DEV_CONFIRMATIONS, RPC_CONFIRMATIONS, Settings
from ledger.store.db import Database
from ledger.store.models import Action, Organisation, utc
from ledger.supervision import Supervision, Supervisor

__all__ = ["Ledger"]

log = logging.getLogger(__name__)


@dataclass
class Ledger:
    settings: Settings
    db: Database
    chain: ChainHandle
    anchorer: Anchorer
    limiter: DeviceRateLimiter
    dispatcher: webhooks.Dispatcher
    valuer: valuation.Valuer
    mqtt: MqttBridge | None = None
    submitter: submission.Submitter | None = None  # finishes actions a request left unfinished
    supervisor: Supervisor | None = None
    ingest_pool: IngestPool | None = None  # batches decoded, verified and stored in worker processes

    @classmethod
    def open(cls, settings: Settings, *, start_anchoring: bool = True) -> Ledger:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.database_url)
        db.migrate()
        # built before anything starts, so a malformed broker URL fails the start cleanly
        mqtt = None
        if settings.mqtt_url:
            mqtt = MqttBridge(db, settings.mqtt_url, max_future_skew_s=settings.max_future_skew_s, client_id=settings.mqtt_client_id)
        chain = open_chain(settings.chain, settings.data_dir, relayer_key=settings.relayer_key)
        try:
            # dev chains get contracts on first start; a real chain needs an explicit `pledgeledger deploy`
            ensure_deployment(chain.client, settings.data_dir, deploy_if_missing=chain.kind != "rpc")
            anchorer = Anchorer(
                db,
                chain.client,
                interval_s=settings.batch_interval_s,
                max_size=settings.batch_max_size,
                finality=_finality(settings, chain.kind),
                replace_after_s=settings.replace_after_s,
                leadership=Leadership(db, "anchoring"),
            )
            dispatcher = webhooks.Dispatcher(db, leadership=Leadership(db, "webhooks"))
            collateral = CollateralClient(chain.client, chain.client.deployment.contracts[COLLATERAL])
            submitter = submission.Submitter(db, collateral, leadership=Leadership(db, "actions"))
            valuer = valuation.Valuer(
                db, collateral, chain.client.account,
                max_age_s=settings.price_max_age_s, interval_s=settings.valuation_interval_s,
                leadership=Leadership(db, "valuation"), wake_webhooks=dispatcher.wake,
            )  # fmt: skip
            supervisor = Supervisor(
                db, lambda: collateral, lambda: chain.client.account, poll_s=settings.supervision_poll,
                sweep_s=settings.supervision_sweep_s, leadership=Leadership(db, "supervision"), notify=dispatcher.wake,
            )  # fmt: skip
            if start_anchoring:  # the background jobs: anchoring, supervision, webhook deliveries, unfinished actions, valuation
                anchorer.start()
                dispatcher.start()
                submitter.start()
                supervisor.start()
                valuer.start()
            if mqtt is not None:
                mqtt.start()  # an unreachable broker is retried in the background
        except BaseException:
            chain.close()
            raise
        shown = settings.published_rpc_url(chain.rpc_url) or "URL not shown: it may carry a provider key"
        log.info("ledger ready: db=%s chain=%s (%s)", db.dialect, chain.kind, shown)
        limiter = DeviceRateLimiter(rate_per_s=settings.device_rate_per_s, burst=settings.device_burst)
        pool = IngestPool(settings, settings.ingest_processes) if settings.ingest_processes > 1 else None
        return cls(settings=settings, db=db, chain=chain, anchorer=anchorer, limiter=limiter, dispatcher=dispatcher,
                   valuer=valuer, mqtt=mqtt, submitter=submitter, supervisor=supervisor, ingest_pool=pool)  # fmt: skip

    @cached_property
    def collateral(self) -> CollateralClient:
        """CollateralRegistry of this deployment, sent through the relayer (also the supervision key)."""
        return CollateralClient(self.chain.client, self.chain.client.deployment.contracts[COLLATERAL])

    @property
    def supervision(self) -> Supervision:
        """Alerts, the insurer's events and rule thresholds (:mod:`ledger.supervision`)."""
        return Supervision(self.db, notify=self.dispatcher.wake)

    def close(self) -> None:
        if self.ingest_pool is not None:
            self.ingest_pool.close()
        if self.mqtt is not None:
            self.mqtt.stop()
        if self.supervisor is not None:
            self.supervisor.stop()
        self.anchorer.stop()
        self.valuer.stop()
        self.dispatcher.stop()
        if self.submitter is not None:
            self.submitter.stop()
        self.chain.close()
        self.db.dispose()

    # -- use cases -----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        client = self.chain.client
        return {
            "status": "ok",
            "chain": {"id": client.chain_id, "rpc_url": self.settings.published_rpc_url(self.chain.rpc_url), "contracts": dict(client.deployment.contracts)},
            "db": self.db.dialect,
            "anchoring": {"leader": self.anchorer.leading, "last_error": self.anchorer.last_error, "pending": self.anchorer.pending_counts()},
        }

    def metrics(self) -> bytes:
        """The Prometheus exposition of this service (:mod:`ledger.metrics`)."""
        return metrics.exposition(self.db)

    def create_organisation(self, *, name: str, role: str, signer: str | None = None) -> orgs.NewOrganisation:
        """Create the organisation; with a ``signer``, also propose its registration on chain, which that
        key signs (:meth:`organisation` shows the typed data), unless that key is registered with this role
        already."""
        with self.db.session() as session:
            new = orgs.create_organisation(session, name=name, role=role, signer=signer)
            if signer is not None:
                org_chain.register_or_adopt(session, self.collateral, session.get(Organisation, new.id))
            return new

    # -- organisations on chain, lots and actions (SPEC §8) ----------------------------------------

    def organisation(self, org: Organisation) -> dict[str, Any]:
        """The caller's organisation, its chain id, and the registration its signer has to sign (created
        here if it has a signer, is not on chain and has no registration collecting signatures)."""
        with self.db.session() as session:
            me = session.get(Organisation, org.id)
            registration = None
            if me.signer is not None and me.chain_org is None:
                pending = session.scalar(
                    select(Action).where(Action.type == "register_organisation", Action.proposed_by == me.id,
                                         Action.status.in_(("collecting", "submitted"))).order_by(Action.created_at.desc()).limit(1)
                )  # fmt: skip
                if pending is None or lots.action_view(pending)["status"] == "expired":
                    pending = org_chain.propose_registration(session, self.collateral, me)
                registration = lots.action_view(pending)
            return _organisation_view(me, registration)

    def set_signer(self, org: Organisation, signer: str) -> dict[str, Any]:
        with self.db.session() as session:
            me = session.get(Organisation, org.id)
            action = org_chain.set_signer(session, self.collateral, me, signer)
            return _organisation_view(me, lots.action_view(action))

    def set_affiliation(self, name_a: str, name_b: str, affiliated: bool) -> dict[str, Any]:
        with self.db.session() as session:
            mined = org_chain.set_affiliation(session, self.collateral, name_a, name_b, affiliated)
            return {"affiliated": affiliated, "tx_hash": mined.tx_hash, "block_number": mined.block_number}

    def register_lot(self, operator: Organisation, body: dict[str, Any]) -> dict[str, Any]:
        with self.db.session() as session:
            lot, action = lots.register_lot(session, self.collateral, session.get(Organisation, operator.id), body)
            return {"lot": lots.lot_view(session, lot), "action": lots.action_view(action)}

    def propose_action(self, org: Organisation, lot_id: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.db.session() as session:
            action = lots.propose(session, self.collateral, session.get(Organisation, org.id), lot_id, body.get("type"),
                                  body.get("params"), expires_in_s=body.get("expires_in_s"))  # fmt: skip
            return lots.action_view(action)

    def add_action_signature(self, org: Organisation, action_id: str, signature: str) -> dict[str, Any]:
        """Check and store one party's signature; once every signature is in, submit the action (waiting a
        little for the receipt) and answer its state."""
        raw = _signature_bytes(signature)
        expired = False
        with self.db.session() as session:
            action = lots.visible_action(session, session.get(Organisation, org.id), action_id, write=True)
            try:
                actions.add_signature(session, action, raw)
            except LedgerError as exc:
                if exc.code != "action_expired":
                    raise
                expired = True
            complete = actions.is_complete(action)
        if expired:  # committed above: the action is expired for good
            raise Conflict(f"action {action_id} expired before every signature came in: propose it again", code="action_expired")
        if complete:
            submission.submit_complete(self.db, self.collateral, action_id)
        return self.action(org, action_id)

    def action(self, org: Organisation, action_id: str) -> dict[str, Any]:
        with self.db.session() as session:
            return lots.action_view(lots.visible_action(session, org, action_id))

    def lot_actions(self, org: Organisation, lot_id: str) -> list[dict[str, Any]]:
        with self.db.session() as session:
            lot = lots.visible_lot(session, org, lot_id)
            found = session.scalars(select(Action).where(Action.lot_id == lot.id).order_by(Action.created_at))
            return [lots.action_view(a) for a in found]

    def lots(self, org: Organisation, *, status: str | None = None, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        with self.db.session() as session:
            return [lots.lot_view(session, lot) for lot in lots.list_lots(session, org, status=status, limit=limit, offset=offset)]

    def lot(self, org: Organisation, lot_id: str) -> dict[str, Any]:
        with self.db.session() as session:
            return lots.lot_view(session, lots.visible_lot(session, org, lot_id), self.collateral)

    def lot_timeline(self, org: Organisation, lot_id: str) -> dict[str, Any]:
        with self.db.session() as session:
            lot = lots.visible_lot(session, org, lot_id)
            return lots.timeline(session, self.collateral, lot, from_block=self.chain.client.deployment.block_number)

    def reconcile_actions(self) -> int:
        """One pass of the background submitter (tests and the CLI call it directly)."""
        return submission.reconcile(self.db, self.collateral)

    def authenticate(self, api_key: str) -> Organisation:
        with self.db.session() as session:
            return orgs.authenticate(session, api_key)

    def register_device(self, operator: Organisation, body: dict[str, Any]) -> dict[str, Any]:
        with self.db.session() as session:
            device = devices.register_device(
                session, self.chain.client, operator=operator, body=body, clock_skew_s=self.settings.max_future_skew_s
            )
            return _device_view(device, device.keys[-1].tx_hash)

    def rotate_device_key(self, org: Organisation, device_id: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.db.session() as session:
            key = devices.rotate_key(session, self.chain.client, org=org, device_id=device_id, body=body)
            return _device_view(key.device, key.tx_hash)

    def revoke_device(self, org: Organisation, device_id: str, at: str | None) -> dict[str, Any]:
        with self.db.session() as session:
            tx_hash = devices.revoke_device(session, self.chain.client, org=org, device_id=device_id, at=at)
            return _device_view(devices.get_device(session, device_id, org), tx_hash)

    def device(self, org: Organisation, device_id: str) -> dict[str, Any]:
        with self.db.session() as session:
            return _device_view(devices.get_device(session, device_id, org), None)

    def device_gaps(self, org: Organisation, device_id: str) -> list[dict[str, Any]]:
        with self.db.session() as session:
            return devices.device_gaps(session, devices.get_device(session, device_id, org))

    def ingest(self, envelope: Any) -> ingest.IngestResult:
        return ingest.ingest(self.db, envelope, max_future_skew_s=self.settings.max_future_skew_s, limiter=self.limiter)

    def ingest_many(self, envelopes: list[Any]) -> list[ingest.IngestResult]:
        return ingest.ingest_many(self.db, envelopes, max_future_skew_s=self.settings.max_future_skew_s, limiter=self.limiter)

    def ingest_batch(self, body: bytes) -> bytes:
        """A request body holding a JSON array of readings, in the ingestion pool when there is
        one; the results as JSON (:func:`ledger.ingest.results_json`)."""
        if self.ingest_pool is not None:
            return self.ingest_pool.ingest_batch(body)
        return ingest.ingest_batch(self.db, body, max_batch=self.settings.max_batch_request,
                                   max_future_skew_s=self.settings.max_future_skew_s, limiter=self.limiter)  # fmt: skip

    def create_webhook(self, org: Organisation, *, url: str, events: list[str]) -> dict[str, Any]:
        with self.db.session() as session:
            return webhooks.create_webhook(session, org, url=url, events=events)

    def list_webhooks(self, org: Organisation) -> list[dict[str, Any]]:
        with self.db.session() as session:
            return webhooks.list_webhooks(session, org)

    def delete_webhook(self, org: Organisation, webhook_id: str) -> None:
        with self.db.session() as session:
            webhooks.delete_webhook(session, org, webhook_id)

    def webhook_deliveries(self, org: Organisation, webhook_id: str) -> list[dict[str, Any]]:
        with self.db.session() as session:
            return webhooks.deliveries(session, org, webhook_id)

    # valuation and margin calls (ledger.valuation)

    def submit_price(self, envelope: Any) -> tuple[dict[str, Any], bool]:
        """Store one signed price point (``True``: new) and wake the valuation pass."""
        with self.db.session() as session:
            view, created = valuation.accept_price(
                session, envelope, now=datetime.now(timezone.utc), max_age_s=self.settings.price_max_age_s,
                max_future_skew_s=self.settings.max_future_skew_s,
            )  # fmt: skip
        if created:
            self.valuer.wake()
        return view, created

    def submit_prices(self, envelopes: list[Any]) -> list[dict[str, Any]]:
        """Each point on its own (one refused point does not stop the others): ``{"id", "status", "code"}`` each."""
        results = []
        for envelope in envelopes:
            try:
                view, created = self.submit_price(envelope)
                results.append({"id": view["id"], "status": "accepted" if created else "duplicate", "code": None})
            except (LedgerError, AttestationError) as exc:
                results.append({"id": None, "status": "rejected", "code": exc.code, "message": exc.message})
        return results

    def prices(self, *, commodity: str | None, currency: str | None, limit: int) -> list[dict[str, Any]]:
        with self.db.session() as session:
            return valuation.list_prices(session, commodity=commodity, currency=currency, limit=limit)

    def lot_valuation(self, org: Organisation, lot_id: str) -> dict[str, Any]:
        with self.db.session() as session:
            return valuation.lot_valuation(session, org, lot_id, now=datetime.now(timezone.utc),
                                           max_age_s=self.settings.price_max_age_s)  # fmt: skip

    def margin_calls(self, org: Organisation, *, status: str | None, lot: str | None, limit: int) -> list[dict[str, Any]]:
        with self.db.session() as session:
            return valuation.list_margin_calls(session, org, status=status, lot=lot, limit=limit)

    def reading(self, reading_id: str) -> dict[str, Any]:
        with self.db.session() as session:
            r = proofs.get_reading(session, reading_id)
            return {
                "id": r.id,
                "reading": json.loads(r.envelope),
                "received_at": utc(r.received_at).isoformat().replace("+00:00", "Z"),
                "batch": r.batch_index,
                "prev_mismatch": r.prev_mismatch,
            }

    def proof(self, reading_id: str) -> dict[str, Any]:
        with self.db.session() as session:
            return proofs.proof_bundle(session, reading_id, interval_s=self.settings.batch_interval_s)

    def multiproof(self, index: int, lot: str) -> dict[str, Any]:
        with self.db.session() as session:
            return proofs.multiproof_bundle(session, index, lot, interval_s=self.settings.batch_interval_s)

    def production(self, org: Organisation, metric: str, device: str, **params: str | None) -> dict[str, Any]:
        """A production-metric answer with its evidence (:mod:`ledger.production`); ``params`` as
        :meth:`attestation.production.ProductionQuery.parse` takes them."""
        query = ProductionQuery.parse(metric, device, **params)
        with self.db.session() as session:
            return production.production_answer(session, org, query)

    def batch_tree(self, index: int) -> dict[str, Any]:
        with self.db.session() as session:
            return proofs.tree_export(session, index)

    def audit(self) -> dict[str, Any]:
        return audit.run_audit(self.db, self.chain.client).as_dict()

    def device_history(self, device_id: str) -> dict[str, Any]:
        return audit.audit_device(self.db, self.chain.client, device_id).as_dict()

    def evidence(self, org: Organisation, lot_id: str) -> tuple[str, IO[bytes]]:
        """The lot's evidence package (:mod:`ledger.evidence`) as ``(file name, zip file at offset 0)``, for
        whoever may read the lot (:func:`ledger.lots.visible_lot`); the caller closes the file. Up to 32 MiB stay in memory, a larger package goes to a temporary file."""
        out = tempfile.SpooledTemporaryFile(max_size=32 << 20)
        try:
            with self.db.session() as session:
                lot = lots.visible_lot(session, org, lot_id)
                from_block = self.chain.client.deployment.block_number
                manifest = evidence.build_evidence(
                    session, self.chain.client, lot, out, interval_s=self.settings.batch_interval_s,
                    timeline=lambda: lots.timeline(session, self.collateral, lot, from_block=from_block),
                )  # fmt: skip
                name = evidence.evidence_filename(lot, manifest["chain"]["head"]["number"])
        except ChainError as exc:
            out.close()
            raise Unavailable(f"could not read the chain to make the package: {exc}; try again", code="chain_unavailable") from exc
        except BaseException:
            out.close()
            raise
        out.seek(0)
        return name, out


def _signature_bytes(signature: Any) -> bytes:
    text = signature if isinstance(signature, str) else ""
    try:
        raw = bytes.fromhex(text[2:]) if text.startswith("0x") else b""
    except ValueError:
        raw = b""
    if len(raw) != 65:
        raise Invalid("signature must be 0x and the 65-byte r||s||v of eth_signTypedData_v4 (132 hex digits)", code="invalid_signature")
    return raw


def _organisation_view(org: Organisation, registration: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": org.id, "name": org.name, "role": org.role, "signer": org.signer, "chain_org": org.chain_org,
        "chain_tx": org.chain_tx, "registration": registration,
    }  # fmt: skip


def _finality(settings: Settings, kind: str) -> Finality:
    """A JSON-RPC chain: its node's ``finalized`` block where it has one, else confirmations. The dev
    chains mine each transaction at once and never reorganise: final once included, unless
    ``confirmations`` says otherwise (anvil's ``finalized`` trails by 64 blocks it does not mine)."""
    if kind == "rpc":
        return Finality(confirmations=settings.confirmations or RPC_CONFIRMATIONS, use_finalized_tag=None)
    return Finality(confirmations=settings.confirmations or DEV_CONFIRMATIONS, use_finalized_tag=False)


def _device_view(device: Any, tx_hash: str | None) -> dict[str, Any]:
    """The device with its whole key history; ``tx_hash`` of the change just made, if any."""
    view = devices.describe_device(device)
    current = view["keys"][-1]
    return {**view, "alg": current["alg"], "fingerprint": current["fingerprint"], "valid_from": current["valid_from"], "tx_hash": tx_hash}
