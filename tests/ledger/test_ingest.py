"""The set-based ingest path decides exactly as readings arriving one by one would.

One scenario holds every way a reading can fare (accepted, duplicate inside and across
requests, replay, regression, forged signature, unknown device, future time, fork, withheld
readings, restart, unparseable) and is run twice on fresh devices: once reading by reading
through ``ingest`` and once as a single ``ingest_many`` request. Outcomes, stored rows, gaps
and device state must agree, and match what SPEC §1 says.
"""

from __future__ import annotations

import copy
import threading
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select

from attestation.errors import AttestationError
from attestation.readings import parse_reading
from ledger import ingest as ingest_module
from ledger.errors import LedgerError
from ledger.simulator import SimulatedDevice
from ledger.store.models import Device, DeviceGap, Reading

SKEW = 300.0


def _scenario(ledger, operator, tag: str) -> tuple[list, list[tuple[str, str | None]]]:  # type: ignore[no-untyped-def]
    """Envelopes for fresh devices ``*-{tag}`` and the outcome SPEC §1 wants for each."""
    a = SimulatedDevice(f"wh1-scale-a{tag}", "load_cell", lot="LOT-A")
    b = SimulatedDevice(f"wh1-th-b{tag}", "temp_humidity", alg="EdDSA")
    c = SimulatedDevice(f"wh1-pm-c{tag}", "power_meter", alg="ES256K")
    stranger = SimulatedDevice(f"wh9-scale-x{tag}", "load_cell")
    for device in (a, b, c):
        ledger.register_device(operator, device.registration())
    now = datetime.now(timezone.utc)
    at = lambda s: now - timedelta(seconds=100 - s)  # noqa: E731 - timestamps one second apart

    a1 = a.reading({"weight_kg": 1000.5}, ts=at(1))
    a_after_1 = copy.deepcopy(a)  # a clone of the key and chain state: it will fork
    a2 = a.reading({"weight_kg": 1000.5}, ts=at(2))
    a2_replay = copy.deepcopy(a2)
    a2_replay["payload"]["data"]["weight_kg"] = 10.25  # same seq, other content, validly signed below
    a2_replay = _resign(a, a2_replay)
    forged = a.reading({"weight_kg": 1000.5}, ts=at(3))
    forged["payload"]["data"]["weight_kg"] = 2000.5  # signature no longer covers it
    a_old = SimulatedDevice(a.id, a.kind, lot=a.lot, _key=a._key).reading({"weight_kg": 1.5}, ts=at(4))  # seq 1 again
    a_old = _resign(a, {**a_old, "payload": {**a_old["payload"], "seq": 0}})
    a_after_1.seq += 10
    fork = a_after_1.reading({"weight_kg": 1000.5}, ts=at(5))
    future = a.reading({"weight_kg": 1000.5}, ts=now + timedelta(hours=1))
    b1 = b.reading({"temp_c": 4.25, "rh_pct": 60.5}, ts=at(1))
    b.reading({"temp_c": 4.25, "rh_pct": 60.5}, ts=at(2))  # withheld
    b3 = b.reading({"temp_c": 4.25, "rh_pct": 60.5}, ts=at(3))
    b_early = b.reading({"temp_c": 4.25, "rh_pct": 60.5}, ts=at(0))  # seq moves on, time goes back
    c1 = c.reading({"energy_kwh": 18250.5, "power_kw": 12.5}, ts=at(1))
    c.prev = None  # reboot
    c2 = c.reading({"energy_kwh": 18251.5, "power_kw": 12.5}, ts=at(2), seq_step=7)
    unknown = stranger.reading({"weight_kg": 1.5}, ts=at(1))

    plan = [
        (a1, ("accepted", None)),
        (a1, ("duplicate", None)),
        (a2, ("accepted", None)),
        (a2_replay, ("rejected", "replayed")),
        (forged, ("rejected", "invalid_signature")),
        (a_old, ("rejected", "sequence_regressed")),
        (fork, ("accepted", None)),
        (future, ("rejected", "timestamp_in_future")),
        (b1, ("accepted", None)),
        (b3, ("accepted", None)),
        (b_early, ("rejected", "timestamp_regressed")),
        (c1, ("accepted", None)),
        (c2, ("accepted", None)),
        (unknown, ("rejected", "unknown_device")),
        ({"payload": {"v": 1}, "alg": "ES256", "sig": "AA"}, ("rejected", "invalid_reading")),
    ]
    return [envelope for envelope, _ in plan], [want for _, want in plan]


def _resign(device: SimulatedDevice, envelope: dict) -> dict:
    from attestation.encoding import b64url_encode, canonical_json

    return {**envelope, "sig": b64url_encode(device.sign(canonical_json(envelope["payload"])))}


def _state(ledger, tag: str) -> dict:  # type: ignore[no-untyped-def]
    """Stored rows of the scenario's devices, with the tag taken out so two runs compare."""
    with ledger.db.session() as session:
        devices = session.scalars(select(Device).where(Device.id.like(f"%{tag}")).order_by(Device.id)).all()
        ids = [d.id for d in devices]
        readings = session.execute(
            select(Reading.device_id, Reading.seq, Reading.prev_mismatch).where(Reading.device_id.in_(ids)).order_by(Reading.device_id, Reading.seq)
        ).all()
        gaps = session.execute(
            select(DeviceGap.device_id, DeviceGap.kind, DeviceGap.seq, DeviceGap.previous_seq).where(DeviceGap.device_id.in_(ids)).order_by(DeviceGap.id)
        ).all()
        return {
            "devices": [(d.id.removesuffix(tag), d.last_seq, d.last_digest is not None) for d in devices],
            "readings": [(r[0].removesuffix(tag), r[1], r[2]) for r in readings],
            "gaps": [(g[0].removesuffix(tag), *g[1:]) for g in gaps],
        }


def test_one_request_decides_as_readings_one_by_one(db_url, ledger_factory) -> None:  # type: ignore[no-untyped-def]
    ledger = ledger_factory(db_url)
    operator = ledger.authenticate(ledger.create_organisation(name="wh", role="operator").api_key)

    envelopes, wanted = _scenario(ledger, operator, "-one")
    one_by_one = []
    for envelope in envelopes:
        try:
            result = ingest_module.ingest(ledger.db, envelope, max_future_skew_s=SKEW)
            one_by_one.append((result.status, None))
        except (AttestationError, LedgerError) as exc:
            one_by_one.append(("rejected", exc.code))
    assert one_by_one == wanted

    envelopes, wanted = _scenario(ledger, operator, "-bulk")
    results = ingest_module.ingest_many(ledger.db, envelopes, max_future_skew_s=SKEW)
    assert [(r.status, r.code) for r in results] == wanted
    assert all(r.message for r in results if r.status == "rejected")  # each names what to fix
    assert [r.id for r in results[:-1]] == [parse_reading(e).id for e in envelopes[:-1]] and results[-1].id is None

    assert _state(ledger, "-bulk") == _state(ledger, "-one")
    assert _state(ledger, "-one")["gaps"] == [  # (device, kind, seq, previous seq), in the order found
        ("wh1-scale-a", "fork", 12, 2),
        ("wh1-th-b", "prev_mismatch", 3, 1),
        ("wh1-pm-c", "restart", 8, 1),
    ]


def test_a_request_sent_twice_is_all_duplicates(db_url, ledger_factory) -> None:  # type: ignore[no-untyped-def]
    ledger = ledger_factory(db_url)
    operator = ledger.authenticate(ledger.create_organisation(name="wh", role="operator").api_key)
    device = SimulatedDevice("wh1-scale-twice", "load_cell")
    ledger.register_device(operator, device.registration())
    batch = [device.reading({"weight_kg": 5.5}) for _ in range(300)]  # more than one verification chunk
    assert {r.status for r in ingest_module.ingest_many(ledger.db, batch, max_future_skew_s=SKEW)} == {"accepted"}
    assert {r.status for r in ingest_module.ingest_many(ledger.db, batch, max_future_skew_s=SKEW)} == {"duplicate"}
    with ledger.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Reading)) == 300


def test_concurrent_requests_with_the_same_readings_store_each_once(db_url, ledger_factory) -> None:  # type: ignore[no-untyped-def]
    """Two gateways racing with overlapping readings: every reading stored once, none lost."""
    ledger = ledger_factory(db_url)
    operator = ledger.authenticate(ledger.create_organisation(name="wh", role="operator").api_key)
    devices = [SimulatedDevice(f"wh1-scale-race{i}", "load_cell") for i in range(4)]
    for device in devices:
        ledger.register_device(operator, device.registration())
    batch = [device.reading({"weight_kg": 5.5}) for _ in range(50) for device in devices]
    outcomes: list[list[str]] = []
    errors: list[BaseException] = []

    def post() -> None:
        try:
            outcomes.append([r.status for r in ingest_module.ingest_many(ledger.db, batch, max_future_skew_s=SKEW)])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=post) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for position in range(len(batch)):  # each reading accepted by exactly one request
        assert sorted(o[position] for o in outcomes) == ["accepted", "duplicate", "duplicate"]
    with ledger.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Reading)) == len(batch)
