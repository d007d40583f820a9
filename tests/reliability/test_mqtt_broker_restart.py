"""The MQTT broker restarted under the running service: a private Mosquitto (never the machine's
shared one) with a persistence file, the service's bridge (``PLEDGELEDGER_MQTT_URL``) ingesting
what a gateway publishes at QoS 1, and the broker stopped and started again mid-stream.

Every reading acknowledged ``accepted`` before the restart is stored; the readings the broker
held for the bridge (persisted with its session), the ones the gateway published while the
broker was away (kept by its client) and the acknowledgements in flight are delivered after
both reconnect, without the gateway sending anything again; nothing is stored twice."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import func, select

from attestation import parse_reading
from ledger.chain import AnvilNode
from ledger.mqtt import ACKS_TOPIC, READINGS_TOPIC
from ledger.simulator import SimulatedDevice
from ledger.store.models import Reading
from tests.reliability.harness import count_readings, organisations, running_service, say, stored_ids, wait_for
from tests.reliability.servers import PrivateMosquitto
from tests.reliability.soundness import assert_service_sound

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

DEVICES = 2
PER_DEVICE = 150
RESTART_AFTER_ACKS = 100
DOWN_S = 2.0


class Gateway:
    """Devices behind one MQTT client with a persistent session: publish at QoS 1, collect the acks."""

    def __init__(self, broker: PrivateMosquitto, devices: list[SimulatedDevice]) -> None:
        self.acks: dict[str, list[str]] = {}  # reading id -> the statuses it was answered with
        self.other: list[dict[str, Any]] = []  # acks without a reading id (rejections)
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="reliability-gateway", protocol=paho.MQTTv5)
        self.client.reconnect_delay_set(0.2, 2)
        self.client.on_connect = lambda c, *_: c.subscribe([(ACKS_TOPIC + d.id, 1) for d in devices])
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600  # acks published while we are away wait for us
        self.client.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
        self.client.loop_start()
        assert self._subscribed.wait(10), "the gateway did not subscribe to its acks"

    def _on_message(self, _client: Any, _userdata: Any, message: paho.MQTTMessage) -> None:
        ack = json.loads(message.payload)
        with self._lock:
            if ack.get("id"):
                self.acks.setdefault(ack["id"], []).append(ack["status"])
            else:
                self.other.append(ack)

    def publish(self, device: SimulatedDevice, reading: dict[str, Any]) -> None:
        """Hand the reading to the client: sent now, or kept and sent once it is connected again."""
        self.client.publish(READINGS_TOPIC + device.id, json.dumps(reading), qos=1)

    def acked(self) -> dict[str, list[str]]:
        with self._lock:
            return {k: list(v) for k, v in self.acks.items()}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def test_mqtt_broker_restarted_mid_stream(tmp_path: Path, node: AnvilNode, private_mosquitto: PrivateMosquitto) -> None:
    db_url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    say("MQTT broker restart: starting the service with its bridge on a private Mosquitto")
    with running_service(tmp_path / "data", node, db_url, PLEDGELEDGER_MQTT_URL=private_mosquitto.url) as (service, db):
        operator, _ = organisations(db)
        devices = [SimulatedDevice(f"mq-rel-{i}", "load_cell", alg="EdDSA", lot="LOT-MQ") for i in range(DEVICES)]
        for device in devices:
            r = httpx.post(f"{service.url}/v1/devices", json=device.registration(), headers={"Authorization": f"Bearer {operator}"}, timeout=30)
            assert r.status_code == 201, r.text
        with Gateway(private_mosquitto, devices) as gateway:
            wait_for(lambda: "subscribed" in service.log.read_text(), "the bridge to subscribe")

            published: list[str] = []

            def publish_all() -> None:  # the devices' pace: about 60 readings/s, whatever the broker does
                for n in range(PER_DEVICE):
                    for device in devices:
                        reading = device.reading({"weight_kg": 500.0 + n})
                        published.append(parse_reading(reading).id)
                        gateway.publish(device, reading)
                    time.sleep(0.03)

            publisher = threading.Thread(target=publish_all, name="gateway-publisher")
            publisher.start()
            try:
                wait_for(lambda: len(gateway.acked()) >= RESTART_AFTER_ACKS, "the first acknowledgements", timeout=60)
                private_mosquitto.stop()  # mid-stream: readings in flight both ways
                accepted = {i for i, s in gateway.acked().items() if "accepted" in s}
                say(f"broker stopped after {len(published)} readings published, {len(accepted)} acknowledged accepted")
                missing = accepted - stored_ids(db, accepted)
                assert not missing, f"{len(missing)} readings acknowledged accepted are not stored"
                time.sleep(DOWN_S)
                private_mosquitto.start()
                say(f"broker started again ({len(published)} readings published so far)")
            finally:
                publisher.join()
            say(f"all {len(published)} readings published")

            acks = wait_for(lambda: (a := gateway.acked()).keys() >= set(published) and a, "every reading acknowledged", timeout=90)
            say(f"every reading acknowledged: {sum(len(s) for s in acks.values())} acks for {len(published)} readings, "
                f"{sum(1 for s in acks.values() if 'duplicate' in s)} redelivered (answered duplicate)")  # fmt: skip
            assert not gateway.other, gateway.other[:3]
            assert all(set(s) <= {"accepted", "duplicate"} for s in acks.values()), {i: s for i, s in acks.items() if set(s) - {"accepted", "duplicate"}}
            assert set(acks) == set(published)
        with db.session() as session:  # nothing stored twice: one row per reading, one per device and seq
            rows = session.execute(select(Reading.device_id, func.count(), func.count(Reading.seq.distinct())).group_by(Reading.device_id)).all()
        assert sorted(rows) == [(d.id, PER_DEVICE, PER_DEVICE) for d in devices], rows
        assert count_readings(db) == len(published) == len(set(published))

        assert_service_sound(db, node.url, tmp_path / "data", published, timeout=90)
