"""Supervision rules against real readings, a real chain and both databases: each fraud case the
rules defend against (DOMAIN.md 5, 7, 9, 10, 11) raises its alert on the evidence that shows it,
critical alerts freeze the lot on chain with that evidence committed, and only an unfreeze signed
by bank and warehouse clears them."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from eth_utils import keccak

from attestation.documents import evidence_reason
from ledger.chain.collateral import Status, identifier_hash
from ledger.store.models import Alert, Lot, SupervisionCursor, WebhookDelivery
from ledger.supervision import Supervisor
from tests.ledger.lotworld import World, fast_chain, make_world


@pytest.fixture
def world(db_url, ledger_factory) -> World:  # type: ignore[no-untyped-def]
    return make_world(ledger_factory(db_url, chain=fast_chain()))


class Clock:
    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset


def supervisor(world: World, clock: Clock | None = None) -> Supervisor:
    ledger = world.ledger
    return Supervisor(ledger.db, lambda: ledger.collateral, lambda: ledger.chain.client.account, clock=clock or Clock())


def alerts(world: World, lot_id: str | None = None) -> list[Alert]:
    with world.ledger.db.session() as session:
        query = session.query(Alert).order_by(Alert.raised_at)
        return list(query.filter(Alert.lot_id == lot_id) if lot_id else query)


def chain_status(world: World, lot_id: str) -> Status:
    return world.ledger.collateral.lot(identifier_hash(lot_id)).status


def pledged_with_scale(world: World, lot_id: str, weight: float = 10_000.0, ts: datetime | None = None, **lot_kw) -> object:  # type: ignore[no-untyped-def]
    world.device(f"{lot_id}-scale", "load_cell", lot_id)
    world.lot(lot_id, devices=[f"{lot_id}-scale"], **lot_kw)
    world.send(world.devices[f"{lot_id}-scale"], {"weight_kg": weight}, ts=ts)  # the baseline, before the pledge
    world.pledge(lot_id)
    return world.devices[f"{lot_id}-scale"]


# -- fraud case 5: weight drop, geofence exit, RFID loss without a release instruction → Frozen ----


def alerts_counted(rule: str, severity: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("pledgeledger_alerts_total", {"rule": rule, "severity": severity}) or 0.0


def test_weight_drop_freezes_the_lot_with_its_evidence_committed(world: World) -> None:
    scale = pledged_with_scale(world, "LOT-W1")
    sup = supervisor(world)
    counted = alerts_counted("weight_drop", "critical")
    world.send(scale, {"weight_kg": 9_950.0})  # within the 2% tolerance
    assert sup.tick().raised == [] and chain_status(world, "LOT-W1") == Status.PLEDGED
    drop = world.send(scale, {"weight_kg": 9_000.0})  # 10% gone, nothing approved
    result = sup.tick()
    assert len(result.raised) == 1 and result.frozen == ["LOT-W1"]
    [alert] = alerts(world, "LOT-W1")
    assert (alert.rule, alert.severity, alert.status, alert.freeze_status) == ("weight_drop", "critical", "open", "confirmed")
    assert alerts_counted("weight_drop", "critical") == counted + 1
    evidence = json.loads(alert.readings)
    assert drop in evidence and len(evidence) == 2  # the baseline at pledge and the reading that fell short
    detail = json.loads(alert.detail)
    assert (detail["expected_kg"], detail["measured_kg"], detail["shortfall_pct"]) == (10_000.0, 9_000.0, 10.0)
    assert chain_status(world, "LOT-W1") == Status.FROZEN

    # the reason on chain is recomputable from the evidence alone: keccak256 of the sorted digests
    recomputed = keccak(b"".join(sorted(bytes.fromhex(d) for d in evidence)))
    assert alert.reason == "0x" + recomputed.hex() == "0x" + evidence_reason(evidence).hex()
    collateral = world.ledger.collateral
    with world.ledger.db.session() as session:
        from ledger.store.models import Action

        action = session.get(Action, alert.freeze_action_id)
        assert action.primary_type == "Freeze" and action.proposed_by is None and action.status == "confirmed"
    receipt = world.ledger.chain.client.w3.eth.get_transaction_receipt(action.tx_hash)
    [event] = collateral.contract.events.LotFrozen().process_receipt(receipt)
    assert event["args"]["reason"] == recomputed and event["args"]["lot"] == identifier_hash("LOT-W1")

    # a second drop raises nothing new while the alert is open, and freezes nothing twice
    world.send(scale, {"weight_kg": 8_000.0})
    assert sup.tick().raised == [] and len(alerts(world, "LOT-W1")) == 1


def test_geofence_exit_and_rfid_loss_freeze(world: World) -> None:
    ledger = world.ledger
    tag = world.device("LOT-G-tag", "location", "LOT-G")
    world.lot("LOT-G", devices=["LOT-G-tag"])
    world.pledge("LOT-G")
    ledger.supervision.set_rules(world.orgs["warehouse"], {"geofence": {"lat": 31.3, "lon": 120.6, "radius_m": 200}}, lot_id="LOT-G")
    sup = supervisor(world)
    now = datetime.now(timezone.utc)
    world.send(tag, {"lat": 31.3005, "lon": 120.6005, "accuracy_m": 5}, ts=now - timedelta(minutes=4))  # 70 m from the centre
    assert sup.tick().raised == []
    out = world.send(tag, {"lat": 31.31, "lon": 120.6, "accuracy_m": 5}, ts=now)  # 1.1 km north, 4 minutes later
    sup.tick()
    [alert] = alerts(world, "LOT-G")
    assert alert.rule == "geofence_exit" and json.loads(alert.readings) == [out] and chain_status(world, "LOT-G") == Status.FROZEN

    reader = world.device("LOT-R-rfid", "rfid_inventory", "LOT-R")
    world.lot("LOT-R", devices=["LOT-R-rfid"])
    world.send(reader, {"count": 40})
    world.pledge("LOT-R")
    world.send(reader, {"count": 40})
    assert sup.tick().raised == []
    world.send(reader, {"count": 39})  # one pallet gone
    sup.tick()
    [alert] = alerts(world, "LOT-R")
    assert alert.rule == "rfid_shortfall" and json.loads(alert.detail)["expected_count"] == 40
    assert chain_status(world, "LOT-R") == Status.FROZEN


# -- fraud case 7: many small withdrawals, each within the tolerance ------------------------------


def test_small_withdrawals_add_up_against_the_pledge_baseline(world: World) -> None:
    scale = pledged_with_scale(world, "LOT-S")
    sup = supervisor(world)
    weight = 10_000.0
    raised = []
    for _ in range(4):  # 0.9% at a time: each step alone is below the 2% tolerance
        weight -= 90.0
        world.send(scale, {"weight_kg": weight})
        raised += sup.tick().raised
    assert len(raised) == 1  # at 2.7% short of the pledge, not at any single step
    [alert] = alerts(world, "LOT-S")
    assert alert.rule == "weight_drop" and json.loads(alert.detail)["measured_kg"] == 10_000.0 - 3 * 90.0
    assert chain_status(world, "LOT-S") == Status.FROZEN


def test_approved_outbound_explains_a_drop_and_nothing_more(world: World) -> None:
    scale = pledged_with_scale(world, "LOT-P")
    sup = supervisor(world)
    release = world.partial_release("LOT-P", 3_000)  # the bank instructs, the warehouse executes
    world.send(scale, {"weight_kg": 7_000.0})
    world.send(scale, {"weight_kg": 6_950.0})
    assert sup.tick().raised == [] and chain_status(world, "LOT-P") == Status.PLEDGED
    world.send(scale, {"weight_kg": 6_700.0})  # 300 kg more than released
    sup.tick()
    [alert] = alerts(world, "LOT-P")
    detail = json.loads(alert.detail)
    assert (detail["expected_kg"], detail["approved_outbound"]) == (7_000.0, [release.id])


# -- fraud case 9: a weight change with no vehicle or video event ---------------------------------


def test_weight_change_needs_a_camera_frame_or_a_vehicle(world: World) -> None:
    ledger = world.ledger
    now = datetime.now(timezone.utc)
    scale = pledged_with_scale(world, "LOT-V", ts=now - timedelta(seconds=280))
    camera = world.device("LOT-V-cam", "camera_frame", "LOT-V")
    truck = world.device("truck-7", "location", None)
    ledger.supervision.set_rules(world.orgs["warehouse"], {"vehicle_devices": ["truck-7"], "movement_window_s": 60})
    ledger.supervision.set_rules(world.orgs["warehouse"], {"geofence": {"lat": 31.3, "lon": 120.6, "radius_m": 300}}, lot_id="LOT-V")
    clock = Clock()
    sup = supervisor(world, clock)
    release = world.partial_release("LOT-V", 1_000)

    world.send(camera, {"frame_sha256": "ab" * 32}, ts=now - timedelta(seconds=200))  # the loading was filmed
    world.send(scale, {"weight_kg": 9_500.0}, ts=now - timedelta(seconds=200))
    assert sup.tick(sweep=True).raised == []
    world.send(scale, {"weight_kg": 9_000.0}, ts=now - timedelta(seconds=120))
    world.send(truck, {"lat": 31.3001, "lon": 120.6001}, ts=now - timedelta(seconds=115))  # a truck inside the fence
    clock.offset = timedelta(seconds=61)
    assert sup.tick(sweep=True).raised == []  # both changes explained (and approved: 1,000 kg released)

    clock.offset = timedelta(0)
    changed = world.send(scale, {"weight_kg": 9_000.0 * 1.05}, ts=now)  # +5%: no camera, no truck within a minute
    assert sup.tick(sweep=True).raised == []  # the window after it is still open: the check waits
    clock.offset = timedelta(seconds=61)
    [raised] = sup.tick(sweep=True).raised
    [alert] = [a for a in alerts(world, "LOT-V") if a.id == raised]
    assert alert.rule == "unexplained_movement" and alert.severity == "warning" and changed in json.loads(alert.readings)
    assert alert.freeze_status is None and release.status == "confirmed"


# -- fraud cases 10 and 11: withheld readings, a key in two places, silent devices ----------------


def test_withheld_readings_and_a_forked_chain_freeze(world: World) -> None:
    scale = pledged_with_scale(world, "LOT-C")
    sup = supervisor(world)
    world.send(scale, {"weight_kg": 10_000.0})
    scale.reading({"weight_kg": 10_000.0})  # signed, never delivered: withheld
    gap = world.send(scale, {"weight_kg": 10_000.0})
    sup.tick()
    [alert] = alerts(world, "LOT-C")
    assert alert.rule == "chain_gap" and gap in json.loads(alert.readings) and json.loads(alert.detail)["gap"] == "prev_mismatch"
    assert chain_status(world, "LOT-C") == Status.FROZEN

    tag = world.device("LOT-F-tag", "location", "LOT-F")
    world.lot("LOT-F", devices=["LOT-F-tag"])
    world.pledge("LOT-F")
    first = world.send(tag, {"lat": 31.3, "lon": 120.6})
    world.send(tag, {"lat": 31.3, "lon": 120.6})
    tag.prev = first  # a clone of the key continues from the same reading elsewhere
    fork = world.send(tag, {"lat": 31.3, "lon": 120.6})
    sup.tick()
    [alert] = alerts(world, "LOT-F")
    assert alert.rule == "dual_location" and json.loads(alert.detail)["how"] == "fork" and fork in json.loads(alert.readings)


def test_a_location_jump_is_one_sensor_in_two_places(world: World) -> None:
    tag = world.device("LOT-J-tag", "location", "LOT-J")
    world.lot("LOT-J", devices=["LOT-J-tag"])
    world.pledge("LOT-J")
    sup = supervisor(world)
    now = datetime.now(timezone.utc)
    world.send(tag, {"lat": 31.3, "lon": 120.6}, ts=now - timedelta(seconds=60))
    world.send(tag, {"lat": 31.9, "lon": 120.6}, ts=now)  # 67 km in a minute
    sup.tick()
    [alert] = alerts(world, "LOT-J")
    assert alert.rule == "dual_location" and json.loads(alert.detail)["how"] == "location_jump"


def test_a_silent_device_raises_an_alert_after_its_heartbeat_interval(world: World) -> None:
    scale = pledged_with_scale(world, "LOT-H")
    world.ledger.supervision.set_rules(world.orgs["warehouse"], {"heartbeat_interval_s": 60})
    clock = Clock()
    sup = supervisor(world, clock)
    last = world.send(scale, {"weight_kg": 10_000.0})
    clock.offset = timedelta(seconds=59)
    assert sup.tick(sweep=True).raised == []
    clock.offset = timedelta(seconds=61)
    [raised] = sup.tick(sweep=True).raised
    [alert] = alerts(world, "LOT-H")
    assert alert.rule == "device_silent" and json.loads(alert.readings) == [last] and alert.id == raised
    assert chain_status(world, "LOT-H") == Status.FROZEN


# -- alarms and the insurer; clearing only by bank and warehouse together --------------------------


def test_smoke_alarm_freezes_and_tells_the_insurer(world: World) -> None:
    alarm = world.device("LOT-A-smoke", "smoke_alarm", "LOT-A")
    world.lot("LOT-A", devices=["LOT-A-smoke"], insured=True)
    world.pledge("LOT-A")
    sup = supervisor(world)
    world.send(alarm, {"alarm": False})
    assert sup.tick().raised == []
    fire = world.send(alarm, {"alarm": True})
    sup.tick()
    [alert] = alerts(world, "LOT-A")
    assert alert.rule == "smoke_alarm" and json.loads(alert.readings) == [fire] and chain_status(world, "LOT-A") == Status.FROZEN
    events = world.ledger.supervision.insurer_events(world.orgs["insurer"])
    assert [(e["event"], e["readings"][0]["id"], e["readings"][0]["proof"]) for e in events] == [("fire", fire, f"/v1/readings/{fire}/proof")]
    assert world.ledger.supervision.insurer_events(world.orgs["insurer"], lot="LOT-A")[0]["readings"][0]["data"] == {"alarm": True}


def test_only_an_unfreeze_by_bank_and_warehouse_clears_a_freezing_alert(world: World) -> None:
    from ledger.errors import Conflict

    scale = pledged_with_scale(world, "LOT-U")
    hook = world.ledger.create_webhook(world.orgs["bank"], url="http://127.0.0.1:9/x", events=["alert.cleared", "lot.unfrozen"])
    sup = supervisor(world)
    world.send(scale, {"weight_kg": 9_000.0})
    sup.tick()
    [alert] = alerts(world, "LOT-U")
    with pytest.raises(Conflict) as refused:
        world.ledger.supervision.acknowledge(world.orgs["bank"], alert.id)
    assert refused.value.code == "unfreeze_required"
    assert sup.follow_unfreezes() == []  # still frozen on chain
    world.unfreeze("LOT-U")
    assert sup.follow_unfreezes() == [alert.id]
    [alert] = alerts(world, "LOT-U")
    assert (alert.status, alert.cleared_by) == ("cleared", "unfreeze")
    with world.ledger.db.session() as session:
        told = {d.event: json.loads(d.body)["data"] for d in session.query(WebhookDelivery).filter_by(webhook_id=hook["id"])}
    assert told["alert.cleared"]["alert"]["id"] == alert.id and told["lot.unfrozen"]["alerts"] == [alert.id]
    with world.ledger.db.session() as session:
        assert session.get(Lot, "LOT-U").status == "pledged"
    # the unfreeze is a new baseline both parties accepted: the same weight raises nothing again
    world.send(scale, {"weight_kg": 9_000.0})
    assert sup.tick().raised == []
    world.send(scale, {"weight_kg": 8_000.0})
    assert len(sup.tick().raised) == 1


def test_webhooks_go_to_the_lot_parties_only(world: World) -> None:
    ledger = world.ledger
    hooks = {name: ledger.create_webhook(world.orgs[name], url="http://127.0.0.1:9/x", events=["alert.raised", "lot.frozen"])
             for name in ("bank", "warehouse", "insurer", "enterprise")}  # fmt: skip
    alarm = world.device("LOT-W-water", "water_alarm", "LOT-WW")
    world.lot("LOT-WW", devices=["LOT-W-water"], insured=True)
    world.pledge("LOT-WW")
    world.send(alarm, {"alarm": True, "level_mm": 40})
    supervisor(world).tick()
    with ledger.db.session() as session:
        got = {(d.webhook_id, d.event) for d in session.query(WebhookDelivery)}
    for name in ("bank", "warehouse", "insurer"):
        assert {(hooks[name]["id"], "alert.raised"), (hooks[name]["id"], "lot.frozen")} <= got
    assert not any(w == hooks["enterprise"]["id"] for w, _ in got)


def test_the_cursor_misses_nothing_and_reads_nothing_twice(world: World) -> None:
    scale = pledged_with_scale(world, "LOT-K")
    sup = supervisor(world)
    sup.tick()
    with world.ledger.db.session() as session:
        position = session.get(SupervisionCursor, "readings").position
    world.send(scale, {"weight_kg": 9_000.0})
    crashed = supervisor(world)
    crashed.freeze_pending = lambda: []  # type: ignore[method-assign]  # dies after committing the alert
    assert len(crashed.tick().raised) == 1
    from ledger.supervision import loop

    killed = pytest.MonkeyPatch()  # dies again, this time just after committing the signed freeze
    killed.setattr(loop.submission, "submit_complete", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("killed")))
    with pytest.raises(RuntimeError):
        supervisor(world).freeze_pending()
    killed.undo()
    [alert] = alerts(world, "LOT-K")
    signed = alert.freeze_action_id
    assert signed is not None and alert.freeze_status == "pending" and chain_status(world, "LOT-K") == Status.PLEDGED
    again = supervisor(world)  # restart: the reading is not evaluated again, the same signed freeze is sent
    result = again.tick()
    assert result.raised == [] and result.frozen == ["LOT-K"] and result.readings == 0
    [alert] = alerts(world, "LOT-K")
    assert alert.freeze_action_id == signed and alert.freeze_status == "confirmed"
    with world.ledger.db.session() as session:
        assert session.get(SupervisionCursor, "readings").position > position


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite has one writer: readings commit in pk order
def test_a_reading_committed_after_a_later_one_is_not_missed(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two ingest transactions in flight: the one with the lower pk commits last. The cursor has moved
    past it by then; the hole it left is looked at again, so its drop still freezes the lot."""
    import threading

    from ledger import ingest as ingest_module

    scale_a, scale_b = pledged_with_scale(world, "LOT-LA"), pledged_with_scale(world, "LOT-LB")
    sup = supervisor(world)
    sup.tick()
    original, stored, release = ingest_module._decide_and_store, threading.Event(), threading.Event()

    def slow(session, candidates, **kw):  # type: ignore[no-untyped-def]
        decided = original(session, candidates, **kw)
        if threading.current_thread().name == "slow-ingest":
            stored.set()  # the row and its pk exist, uncommitted
            release.wait(30)
        return decided

    monkeypatch.setattr(ingest_module, "_decide_and_store", slow)
    late = threading.Thread(target=world.send, args=(scale_a, {"weight_kg": 9_000.0}), name="slow-ingest")
    late.start()
    assert stored.wait(30)
    world.send(scale_b, {"weight_kg": 10_000.0})  # a higher pk, committed first
    assert sup.tick().raised == []
    with world.ledger.db.session() as session:
        assert json.loads(session.get(SupervisionCursor, "readings").holes)  # the late reading's pk is a hole
    release.set()
    late.join(30)
    [raised] = sup.tick().raised
    [alert] = alerts(world, "LOT-LA")
    assert alert.id == raised and alert.rule == "weight_drop" and chain_status(world, "LOT-LA") == Status.FROZEN
    with world.ledger.db.session() as session:
        assert json.loads(session.get(SupervisionCursor, "readings").holes) == []
