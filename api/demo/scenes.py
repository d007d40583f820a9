"""The three modes of the source articles, played against a running service (issue 7, DOMAIN.md).

1. **Pledge supervision**: steel coils on load cells, an RFID reader and a geofence tag; the lot is
   registered, verified, pledged by three signatures, partly released, then an outflow nobody approved
   is caught and the lot is frozen on chain by the supervision key.
2. **Production supervision**: power meters and a loom's run state at a textile plant; the bank gets
   verified kWh and run hours with the proofs to recompute them.
3. **Disaster prevention**: smoke and water alarms in an insured warehouse reach the insurer's webhook.

Each scene records claims (:class:`api.demo.world.Claim`) that the closing report lists with their proofs.
"""

from __future__ import annotations

import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from api.demo.world import DemoError, WebhookReceiver, World

__all__ = ["SCENES", "disaster_prevention", "pledge_supervision", "production_supervision"]

# a bonded warehouse yard (the geofence) and a spot inside it
YARD = {"lat": 31.2304, "lon": 121.4737, "radius_m": 150.0}
COIL_KG = 25_000  # one hot-rolled coil


def _verified(world: World, document: dict[str, Any]) -> bool:
    """Check a proof bundle, multiproof or production answer against the chain alone, as a bank would."""
    from ledger.verification import verify_with_chain

    if not world.rpc_url:
        return False
    return verify_with_chain(document, world.rpc_url).ok


def _evidence_verified(world: World, path: Path) -> bool:
    from ledger.verification import verify_evidence_with_chain

    if not world.rpc_url:
        return False
    with path.open("rb") as package:
        return bool(verify_evidence_with_chain(package, world.rpc_url).ok)


def _save(world: World, name: str, document: Any) -> str:
    import json

    path = Path(tempfile.gettempdir()) / f"pledgeledger-demo-{world.tag}-{name}.json"
    path.write_text(json.dumps(document, indent=2))
    return str(path)


def pledge_supervision(world: World) -> None:
    scene = "pledge"
    c = world.console
    c.rule("[bold]1. Pledge supervision: steel coils in a bonded warehouse")
    warehouse = world.party("Yangshan Bonded Warehouse", "operator")
    steel = world.party("Huadong Steel Trading", "enterprise")
    bank = world.party("Pudong Commercial Bank", "bank")
    c.print(f"  three organisations on chain, each with its own signing key: {warehouse.name}, {steel.name}, {bank.name}")

    lot_id = f"EWR-STEEL-{world.tag}"
    scales = [world.device(warehouse, f"yard-scale-{i}", "load_cell", lot_id) for i in (1, 2)]
    rfid = world.device(warehouse, "gate-rfid", "rfid_inventory", lot_id, alg="EdDSA")
    tag = world.device(warehouse, "coil-geotag", "location", lot_id, alg="ES256K")
    camera = world.device(warehouse, "gate-camera", "camera_frame", lot_id)
    c.print("  devices registered with proofs of possession: 2 load cells (P-256), RFID reader (Ed25519), geotag (secp256k1), camera")

    world.put("/v1/rules", {"geofence": YARD, "weight_tolerance_pct": 2.0, "heartbeat_interval_s": 3600}, warehouse)
    coils = 20
    made = world.post("/v1/lots", {
        "id": lot_id, "enterprise": steel.name, "quantity": coils * COIL_KG, "unit": "kg",
        "goods": {"commodity": "steel_hrc", "description": "hot-rolled coils, Q235B, 2.75 mm", "coils": coils},
        "devices": [d.id for d in (*scales, rfid, tag, camera)],
    }, warehouse)  # fmt: skip
    world.sign_action(made["action"], warehouse)

    def weigh(total_kg: float) -> list[str]:
        return [world.send(s, {"weight_kg": total_kg / len(scales)}) for s in scales]

    weigh(coils * COIL_KG)
    world.send(rfid, {"count": coils})
    world.send(tag, {"lat": YARD["lat"] + 0.0002, "lon": YARD["lon"], "accuracy_m": 3.0})
    verify = world.act(lot_id, "verify", {"quantity": coils * COIL_KG, "assay": {"lab": "CCIC Shanghai", "grade": "Q235B",
                       "certificate": f"CCIC-{world.tag}"}}, warehouse, warehouse, steel)  # fmt: skip
    world.claim(scene, f"lot {lot_id} verified in: {coils} coils, {coils * COIL_KG:,} kg, assay recorded", f"tx {verify['tx_hash']}")

    terms = {"loan_value": "2800000.00", "currency": "CNY", "commodity": "steel_hrc", "haircut": "0.70",
             "warning_ltv": "0.80", "disposal_ltv": "0.90", "min_quantity": 10 * COIL_KG, "cure_period_s": 259200}  # fmt: skip
    pledge = world.act(lot_id, "pledge", {"bank": bank.name, "registration": f"PBOC-DJ-{world.tag}", "terms": terms},
                       steel, steel, bank, warehouse)  # fmt: skip
    world.claim(scene, f"pledged to {bank.name} by the signatures of enterprise, bank and warehouse", f"tx {pledge['tx_hash']}, gas {pledge['gas_used']:,}")

    # a partial release the bank instructs: the coils leave on a truck the camera sees
    released = 2 * COIL_KG
    partial = world.act(lot_id, "partial_release", {"quantity": released}, bank, bank, warehouse)
    world.send(camera, {"frame_sha256": "ab" * 32})
    weigh((coils - 2) * COIL_KG)
    world.send(rfid, {"count": coils - 2})
    world.claim(scene, f"partial release of {released:,} kg on the bank's instruction; the scales agree, no alert", f"tx {partial['tx_hash']}")

    # an outflow nobody approved: two more coils leave at night
    outflow = weigh((coils - 4) * COIL_KG)
    c.print("  [yellow]two coils leave without an instruction[/]: the scales drop by 10%")
    lot = world.wait_until("the lot frozen on chain", lambda: (v := world.get(f"/v1/lots/{lot_id}", bank))["status"] == "frozen" and v, timeout=90)
    alerts = world.get(f"/v1/lots/{lot_id}/alerts", bank)
    alert = next((a for a in alerts if a["rule"] == "weight_drop"), alerts[0] if alerts else None)
    if alert is None:
        raise DemoError(f"lot {lot_id} is frozen but shows no alert")
    freeze_tx = alert.get("freeze", {}).get("tx_hash") if isinstance(alert.get("freeze"), dict) else alert.get("freeze_tx_hash")
    world.claim(scene, f"the outflow raised {alert['rule']} and froze the lot on chain through the supervision key",
                f"alert {alert['id']}, freeze tx {freeze_tx}, chain status {lot['chain']['status'] if lot.get('chain') else lot['status']}")

    bundle = world.proof(outflow[0], bank)
    path = _save(world, "outflow-proof", bundle)
    world.claim(scene, "the reading that caught the outflow is signed by the scale and anchored", f"{path}: checkpoint {bundle['anchor']['index']}",
                _verified(world, bundle))  # fmt: skip

    # what the bank hands a court: every event, signed action and reading of the lot, checked against the chain
    package = world.http.get(f"/v1/lots/{lot_id}/evidence", headers=bank.headers)
    if package.status_code != 200:
        world._answer(package, "GET evidence")
    zip_path = Path(tempfile.gettempdir()) / f"pledgeledger-demo-{world.tag}-evidence.zip"
    zip_path.write_bytes(package.content)
    world.claim(scene, "the lot's evidence package (every transition above with its signatures and receipt, every reading with its proof)",
                f"{zip_path} (pledgeledger verify-evidence {zip_path} --rpc {world.rpc_url})", _evidence_verified(world, zip_path))  # fmt: skip


def production_supervision(world: World) -> None:
    scene = "production"
    c = world.console
    c.rule("[bold]2. Production supervision: a textile plant's power meters")
    plant = world.party("Shaoxing Textile Park Supervisor", "operator")
    bank = world.party("Zhejiang Rural Bank", "bank")
    meter = world.device(plant, "weaving-hall-meter", "power_meter", None)
    loom = world.device(plant, "loom-17", "equipment_state", None, alg="EdDSA")
    energy = 182_400.0
    ids = []
    for step in range(6):
        energy += 42.5
        ids.append(world.send(meter, {"energy_kwh": energy, "power_kw": 510.0}))
        world.send(loom, {"running": step % 3 != 2})
        time.sleep(0.5)
    last = ids[-1]
    world.proof(last, bank)  # wait until the readings are on chain
    today = datetime.now(timezone.utc).date().isoformat()
    answer = world.get("/v1/production/energy", bank, device=meter.id, period="day", **{"from": today, "to": today})
    path = _save(world, "energy", answer)
    result = answer["result"]
    kwh = result["periods"][0]["kwh"] if result.get("periods") else result
    world.claim(scene, f"kWh of {meter.id} today computed from {len(answer['evidence'])} proven batch(es): {kwh}",
                f"{path} (pledgeledger verify {path} --rpc {world.rpc_url})", _verified(world, answer))
    month = datetime.now(timezone.utc).strftime("%Y-%m")
    utilisation = world.get("/v1/production/utilisation", bank, device=meter.id, month=month)
    upath = _save(world, "utilisation", utilisation)
    ratio = utilisation["result"].get("utilisation")
    world.claim(scene, f"utilisation for {month}: {ratio if ratio is not None else 'not yet computable: it needs the prior twelve months of readings'}",
                upath, _verified(world, utilisation))  # fmt: skip


def disaster_prevention(world: World) -> None:
    scene = "disaster"
    c = world.console
    c.rule("[bold]3. Disaster prevention: alarms reach the insurer")
    warehouse = world.party("Ningbo Cold Chain Warehouse", "operator")
    owner = world.party("Eastern Seafood Import", "enterprise")
    insurer = world.party("Pacific Property Insurance", "insurer")
    receiver = WebhookReceiver()
    hook = world.post("/v1/webhooks", {"url": receiver.url, "events": ["alert.raised"]}, insurer)
    receiver.secret = hook["secret"]
    lot_id = f"EWR-COLD-{world.tag}"
    smoke = world.device(warehouse, "hall-3-smoke", "smoke_alarm", lot_id)
    water = world.device(warehouse, "hall-3-water", "water_alarm", lot_id, alg="EdDSA")
    made = world.post("/v1/lots", {
        "id": lot_id, "enterprise": owner.name, "insurer": insurer.name, "quantity": 40_000, "unit": "kg",
        "goods": {"commodity": "frozen_shrimp", "pallets": 40}, "devices": [smoke.id, water.id],
    }, warehouse)  # fmt: skip
    world.sign_action(made["action"], warehouse)
    world.send(smoke, {"alarm": False})
    world.send(water, {"alarm": False, "level_mm": 0.0})
    c.print("  [yellow]smoke detected in hall 3[/], then water on the floor")
    alarm = world.send(smoke, {"alarm": True})
    world.send(water, {"alarm": True, "level_mm": 35.0})
    delivery = receiver.wait_for("alert.raised", timeout=90)
    data = delivery["body"].get("data", {}) if isinstance(delivery["body"], dict) else {}
    rule = data.get("rule") or (data.get("alert") or {}).get("rule") or "an alarm"
    world.claim(scene, f"the insurer's endpoint received {delivery['event']} ({rule}) for lot {lot_id}",
                f"delivery {delivery['delivery']}, HMAC-SHA256 checked by the receiver", delivery["signature_ok"])  # fmt: skip
    events = world.get("/v1/insurer/events", insurer)
    world.claim(scene, f"the insurer's view lists {len(events)} event(s) for its lots: {', '.join(sorted({e['event'] for e in events}))}",
                "GET /v1/insurer/events", None)
    bundle = world.proof(alarm, insurer)
    path = _save(world, "smoke-proof", bundle)
    world.claim(scene, "the smoke alarm's reading is signed by the detector and anchored", path, _verified(world, bundle))
    receiver.close()


SCENES = {"pledge": pledge_supervision, "production": production_supervision, "disaster": disaster_prevention}

