"""The MQTT bridge (SPEC §5) against the real Mosquitto broker, on SQLite and PostgreSQL.

Every test uses its own device ids and bridge client id, and most their own topic root, so
test runs sharing the broker stay apart. The tests on the SPEC topics (``pledgeledger/v1/…``)
may meet another run's live bridge there: it answers our readings with ``unknown_device`` (its
database has never heard of them), which :meth:`DeviceClient.ack` ignores, and it only ever
adds rejections to our bridge's counters.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import func, select

from attestation.encoding import canonical_json
from ledger.errors import LedgerError
from ledger.mqtt import TOPIC_ROOT, MqttBridge, MqttUrl, parse_mqtt_url
from ledger.simulator import SimulatedDevice
from ledger.store.db import Database
from ledger.store.models import Organisation, Reading
from tests.conftest import IN_CI, ROOT, free_port
from tests.reliability.servers import find_mosquitto

BROKER_URL = os.environ.get("PLEDGELEDGER_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def broker() -> MqttUrl:
    url = parse_mqtt_url(BROKER_URL)
    try:
        socket.create_connection((url.host, url.port), timeout=3).close()
    except OSError:
        if IN_CI:
            pytest.fail(f"an MQTT broker is required in CI but {url} does not answer")
        pytest.skip(f"no MQTT broker at {url}")
    return url


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def registered_device(ledger) -> SimulatedDevice:  # type: ignore[no-untyped-def]
    org = ledger.create_organisation(name=uid("WH"), role="operator")
    with ledger.db.session() as session:
        operator = session.get(Organisation, org.id)
    device = SimulatedDevice(uid("mq"), "load_cell", lot="LOT-MQ-1")
    ledger.register_device(operator, device.registration())
    return device


def reading_id(reading: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(reading["payload"])).hexdigest()


def is_stored(ledger, rid: str | None) -> bool:  # type: ignore[no-untyped-def]
    if rid is None:
        return False
    try:
        ledger.reading(rid)
    except LedgerError:
        return False
    return True


def stored_count(ledger, device_id: str) -> int:  # type: ignore[no-untyped-def]
    with ledger.db.session() as session:
        return session.scalar(select(func.count()).select_from(Reading).where(Reading.device_id == device_id)) or 0


def v5_client(client_id: str) -> paho.Client:
    return paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)


def forget_session(broker: MqttUrl, client_id: str) -> None:
    """Remove a persistent session from the broker: connect with clean start and expiry 0."""
    client = v5_client(client_id)
    client.connect(broker.host, broker.port, clean_start=True)
    client.loop_start()
    client.disconnect()
    client.loop_stop()


class DeviceClient:
    """The devices' side: publish readings at QoS 1, collect the acks of the given device ids.

    ``probe(ack)`` runs the moment an ack arrives (in paho's thread); its result is kept with it.
    """

    def __init__(self, broker: MqttUrl, *device_ids: str, root: str = TOPIC_ROOT,
                 probe: Callable[[dict[str, Any]], Any] | None = None) -> None:
        self.readings_topic, self.acks_topic = f"{root}/readings/", f"{root}/acks/"
        self.acks: dict[str, queue.Queue[tuple[dict[str, Any], Any]]] = {d: queue.Queue() for d in device_ids}
        self.probe = probe
        subscribed = threading.Event()
        self.client = v5_client(uid("test-device"))
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe([(self.acks_topic + d, 1) for d in device_ids])
        assert subscribed.wait(TIMEOUT)

    def _on_message(self, _client: Any, _userdata: Any, message: paho.MQTTMessage) -> None:
        ack = json.loads(message.payload)
        self.acks[message.topic[len(self.acks_topic):]].put((ack, self.probe(ack) if self.probe else None))

    def publish(self, device_id: str, body: dict[str, Any] | bytes) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.client.publish(self.readings_topic + device_id, payload, qos=1).wait_for_publish(TIMEOUT)

    def ack_probe(self, device_id: str, timeout: float = TIMEOUT) -> tuple[dict[str, Any], Any]:
        deadline = time.monotonic() + timeout
        while True:
            ack, probed = self.acks[device_id].get(timeout=max(0.0, deadline - time.monotonic()))
            if ack.get("code") != "unknown_device":  # another ledger's bridge on the shared broker
                return ack, probed

    def ack(self, device_id: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        return self.ack_probe(device_id, timeout)[0]

    def no_ack(self, device_id: str, wait: float = 0.5) -> bool:
        try:
            self.ack(device_id, timeout=wait)
        except queue.Empty:
            return True
        return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> DeviceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture
def root() -> str:
    """This test's own topic root: other runs' bridges neither see nor answer its readings."""
    return f"{uid('test')}/pledgeledger/v1"


@pytest.fixture
def bridges(broker: MqttUrl, ledger_factory, root: str) -> Iterator[Callable[..., MqttBridge]]:  # type: ignore[no-untyped-def]
    """Make bridges on the test broker (own topic root, short session expiry so the broker forgets them)."""
    made: list[MqttBridge] = []

    def make(ledger, *, start: bool = True, **kw: Any) -> MqttBridge:  # type: ignore[no-untyped-def]
        kw.setdefault("client_id", uid("test-bridge"))
        kw.setdefault("topic_root", root)
        kw.setdefault("session_expiry_s", 60)
        bridge = MqttBridge(ledger.db, BROKER_URL, max_future_skew_s=300, **kw)
        made.append(bridge)
        if start:
            bridge.start()
            assert bridge.wait_connected(TIMEOUT), "the bridge did not connect and subscribe"
        return bridge

    yield make
    for bridge in made:
        bridge.stop()


def test_parse_mqtt_url() -> None:
    assert parse_mqtt_url("mqtt://127.0.0.1") == MqttUrl("127.0.0.1", 1883, False)
    assert parse_mqtt_url("mqtt://broker.example:1884/") == MqttUrl("broker.example", 1884, False)
    assert parse_mqtt_url("mqtts://broker.example") == MqttUrl("broker.example", 8883, True)
    url = parse_mqtt_url("mqtts://led%40ger:p%3Ass@broker.example:9883")
    assert (url.username, url.password, url.port, url.tls) == ("led@ger", "p:ss", 9883, True)
    assert str(url) == "mqtts://led@ger:***@broker.example:9883" and "p:ss" not in repr(url)
    assert parse_mqtt_url("mqtt://[::1]:1883").host == "::1"
    for bad in ("http://broker", "broker:1883", "mqtt://", "mqtt://broker:99999", "mqtt://broker/topic", "mqtt://b?x=1"):
        with pytest.raises(ValueError):
            parse_mqtt_url(bad)
    with pytest.raises(ValueError) as info:
        parse_mqtt_url("mqtt://user:s3cret@broker:99999")
    assert "s3cret" not in str(info.value)


def test_reading_is_acknowledged_only_after_commit_and_redelivery_is_duplicate(db_url, ledger_factory, bridges, broker) -> None:  # type: ignore[no-untyped-def]
    ledger = ledger_factory(db_url)
    device = registered_device(ledger)
    bridge = bridges(ledger, topic_root=TOPIC_ROOT)  # the SPEC §5 topics
    reading = device.reading({"weight_kg": 1250.5})
    rid = reading_id(reading)
    with DeviceClient(broker, device.id, probe=lambda ack: is_stored(ledger, ack["id"])) as dev:
        dev.publish(device.id, reading)
        ack, stored_when_acked = dev.ack_probe(device.id)
        assert ack == {"seq": 1, "status": "accepted", "code": None, "id": rid}
        assert stored_when_acked, "the ack left the bridge before the reading was committed"
        assert ledger.reading(rid)["reading"] == reading
        dev.publish(device.id, reading)  # a QoS-1 redelivery, or a device retrying after a lost ack
        assert dev.ack(device.id) == {"seq": 1, "status": "duplicate", "code": None, "id": rid}
    assert stored_count(ledger, device.id) == 1
    assert (bridge.accepted, bridge.duplicates) == (1, 1)  # (other runs' readings on the shared topics are rejected)


def test_forged_and_replayed_readings_are_rejected(db_url, ledger_factory, bridges, broker, root) -> None:  # type: ignore[no-untyped-def]
    ledger = ledger_factory(db_url)
    device = registered_device(ledger)
    bridge = bridges(ledger)
    with DeviceClient(broker, device.id, root=root) as dev:
        forged = device.reading({"weight_kg": 1250.5})
        forged["payload"]["data"]["weight_kg"] = 9999.0  # tampered after signing
        dev.publish(device.id, forged)
        assert dev.ack(device.id) == {"seq": 1, "status": "rejected", "code": "invalid_signature", "id": None}
        assert stored_count(ledger, device.id) == 0

        good = device.reading({"weight_kg": 1250.0})
        dev.publish(device.id, good)
        assert dev.ack(device.id)["status"] == "accepted"
        device.seq -= 1  # the same seq again with other content
        dev.publish(device.id, device.reading({"weight_kg": 1.0}))
        assert dev.ack(device.id) == {"seq": 2, "status": "rejected", "code": "replayed", "id": None}
    assert stored_count(ledger, device.id) == 1
    assert (bridge.accepted, bridge.rejected) == (1, 2)


def test_topic_mismatch_and_bad_json_are_answered_and_the_bridge_lives_on(db_url, ledger_factory, bridges, broker, root) -> None:  # type: ignore[no-untyped-def]
    ledger_ = ledger_factory(db_url)
    device = registered_device(ledger_)
    other = uid("mq")
    bridges(ledger_)
    with DeviceClient(broker, device.id, other, root=root) as dev:
        dev.publish(other, device.reading({"weight_kg": 1.0}))  # device A's reading on device B's topic
        assert dev.ack(other) == {"seq": 1, "status": "rejected", "code": "topic_mismatch", "id": None}
        assert dev.no_ack(device.id, wait=0.2)
        dev.publish(device.id, b"\xff\xfe not json")
        assert dev.ack(device.id) == {"seq": None, "status": "rejected", "code": "invalid_json", "id": None}
        dev.publish(device.id, b'{"payload": NaN}')
        assert dev.ack(device.id)["code"] == "invalid_json"
        dev.publish(device.id, b"[1, 2]")
        assert dev.ack(device.id) == {"seq": None, "status": "rejected", "code": "invalid_reading", "id": None}
        reading = device.reading({"weight_kg": 2.0})
        dev.publish(device.id, reading)
        assert dev.ack(device.id) == {"seq": 2, "status": "accepted", "code": None, "id": reading_id(reading)}
    assert stored_count(ledger_, device.id) == 1


def test_a_database_outage_delays_readings_but_loses_none(db_url, ledger_factory, bridges, broker, root) -> None:  # type: ignore[no-untyped-def]
    """The readings table disappears (a real failure of every insert) and comes back: the
    bridge answers nothing while it is gone, then stores each reading in order and acks it."""
    from sqlalchemy import text

    ledger_ = ledger_factory(db_url)
    device = registered_device(ledger_)
    bridge = bridges(ledger_, retry_max_delay_s=0.5)
    with DeviceClient(broker, device.id, root=root) as dev:
        with ledger_.db.engine.begin() as conn:
            conn.execute(text("ALTER TABLE readings RENAME TO readings_away"))
        try:
            readings = [device.reading({"weight_kg": 3.0 + i}) for i in range(3)]
            for reading in readings:
                dev.publish(device.id, reading)
            assert dev.no_ack(device.id, wait=1.5)  # neither stored nor refused: held, unacknowledged
        finally:
            with ledger_.db.engine.begin() as conn:
                conn.execute(text("ALTER TABLE readings_away RENAME TO readings"))
        acks = [dev.ack(device.id) for _ in readings]
        assert acks == [{"seq": i + 1, "status": "accepted", "code": None, "id": reading_id(r)} for i, r in enumerate(readings)]
    assert stored_count(ledger_, device.id) == 3 and bridge.rejected == 0


def test_readings_published_while_the_bridge_is_down_are_ingested_in_order(db_url, ledger_factory, bridges, broker, root) -> None:  # type: ignore[no-untyped-def]
    ledger = ledger_factory(db_url)
    devices = [registered_device(ledger), registered_device(ledger)]
    bridge = bridges(ledger)  # the first connect creates the persistent session and its subscription
    bridge.stop()
    assert not bridge.connected
    with DeviceClient(broker, *(d.id for d in devices), root=root) as dev:
        sent: dict[str, list[str]] = {d.id: [] for d in devices}
        for i in range(4):
            for device in devices:
                reading = device.reading({"weight_kg": 100.0 + i})
                sent[device.id].append(reading_id(reading))
                dev.publish(device.id, reading)  # the broker queues them in the bridge's session
        assert dev.no_ack(devices[0].id, wait=0.3) and bridge.accepted == 0
        bridge.start()
        for device in devices:
            acks = [dev.ack(device.id) for _ in range(4)]
            assert [(a["seq"], a["status"], a["id"]) for a in acks] == [(i + 1, "accepted", sent[device.id][i]) for i in range(4)]
            # each reading arrived after its predecessor: every prev link holds
            assert not any(ledger.reading(rid)["prev_mismatch"] for rid in sent[device.id])
    assert bridge.accepted == 8


def test_a_bridge_that_dies_before_commit_gets_the_reading_again(db_url, ledger_factory, bridges, broker, root, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import ledger.mqtt

    ledger_ = ledger_factory(db_url)
    device = registered_device(ledger_)
    client_id = uid("test-bridge")
    entered, release = threading.Event(), threading.Event()

    def hung_ingest(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        release.wait(TIMEOUT)
        raise RuntimeError("the process died here, before any commit")

    monkeypatch.setattr(ledger.mqtt, "ingest", hung_ingest)
    first = bridges(ledger_, client_id=client_id)
    reading = device.reading({"weight_kg": 7.0})
    with DeviceClient(broker, device.id, root=root) as dev:
        dev.publish(device.id, reading)
        assert entered.wait(TIMEOUT)
        first.stop(timeout=0.1)  # gone while the reading is in hand: no commit, no PUBACK
        release.set()
        assert dev.no_ack(device.id, wait=0.3)
        monkeypatch.undo()
        bridges(ledger_, client_id=client_id)  # the "restarted process": same client id, same session
        assert dev.ack(device.id) == {"seq": 1, "status": "accepted", "code": None, "id": reading_id(reading)}
    assert stored_count(ledger_, device.id) == 1


def test_the_bridge_reconnects_and_resubscribes(db_url, ledger_factory, bridges, broker, root) -> None:  # type: ignore[no-untyped-def]
    ledger = ledger_factory(db_url)
    device = registered_device(ledger)
    client_id = uid("test-bridge")
    bridge = bridges(ledger, client_id=client_id, reconnect_min_delay_s=0.5, reconnect_max_delay_s=2)
    # another connection with the same client id takes the session over: the broker drops the bridge
    intruder = v5_client(client_id)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 60
    intruder.connect(broker.host, broker.port, clean_start=False, properties=props)
    intruder.loop_start()
    deadline = time.monotonic() + TIMEOUT
    while bridge.connected and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not bridge.connected
    intruder.disconnect()
    intruder.loop_stop()
    assert bridge.wait_connected(TIMEOUT), "the bridge did not reconnect"
    with DeviceClient(broker, device.id, root=root) as dev:
        reading = device.reading({"weight_kg": 3.0})
        dev.publish(device.id, reading)
        assert dev.ack(device.id) == {"seq": 1, "status": "accepted", "code": None, "id": reading_id(reading)}


def test_an_unreachable_broker_is_retried_until_it_answers(tmp_path: Path) -> None:
    mosquitto = find_mosquitto()
    if mosquitto is None:
        if IN_CI:
            pytest.fail("the mosquitto binary is required in CI")
        pytest.skip("no mosquitto binary to start a private broker")
    db = Database(f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    db.migrate()
    port = free_port()
    bridge = MqttBridge(db, f"mqtt://127.0.0.1:{port}", max_future_skew_s=300, client_id=uid("test-bridge"),
                        session_expiry_s=0, reconnect_min_delay_s=0.2, reconnect_max_delay_s=0.5)
    started = time.monotonic()
    bridge.start()
    assert time.monotonic() - started < 1, "start() must not wait for the broker"
    proc = None
    try:
        time.sleep(0.5)
        assert not bridge.connected
        conf = tmp_path / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
        proc = subprocess.Popen([mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert bridge.wait_connected(TIMEOUT), "the bridge did not connect once the broker came up"
    finally:
        bridge.stop()
        if proc is not None:
            proc.terminate()
            proc.wait(TIMEOUT)
        db.dispose()


def test_cli_mqtt_bridge_needs_a_url(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from api.cli import app

    monkeypatch.delenv("PLEDGELEDGER_MQTT_URL", raising=False)
    result = CliRunner().invoke(app, ["mqtt-bridge", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "PLEDGELEDGER_MQTT_URL" in result.output


def test_cli_mqtt_bridge_runs_until_sigterm(tmp_path: Path, ledger_factory, broker) -> None:  # type: ignore[no-untyped-def]
    db_url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    ledger = ledger_factory(db_url)
    device = registered_device(ledger)
    client_id = uid("test-cli-bridge")
    env = {**os.environ, "PLEDGELEDGER_MQTT_URL": BROKER_URL}
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "mqtt-bridge", "--db-url", db_url, "--data-dir", str(tmp_path), "--client-id", client_id],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True)  # type: ignore[union-attr]
    reader.start()
    log: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while not any("subscribed to" in line for line in log):
            log.append(lines.get(timeout=max(0.0, deadline - time.monotonic())))
        with DeviceClient(broker, device.id) as dev:
            reading = device.reading({"weight_kg": 42.0})
            dev.publish(device.id, reading)
            assert dev.ack(device.id) == {"seq": 1, "status": "accepted", "code": None, "id": reading_id(reading)}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(TIMEOUT) == 0
        reader.join(TIMEOUT)
        while not lines.empty():
            log.append(lines.get())
        assert "stopped: 1 accepted, 0 duplicate," in "".join(log)  # other runs' readings may be rejected
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]
        forget_session(broker, client_id)  # the CLI keeps its session for days; drop it
    assert is_stored(ledger, reading_id(reading))


def test_cose_reading_over_mqtt(db_url, ledger_factory, bridges, broker, root) -> None:  # type: ignore[no-untyped-def]
    ledger = ledger_factory(db_url)
    device = registered_device(ledger)
    bridges(ledger)
    message = device.cose_reading({"weight_kg": 1250.5})
    with DeviceClient(broker, device.id, root=root) as dev:
        dev.publish(device.id, message)
        ack = dev.ack(device.id)
    assert ack["status"] == "accepted" and ack["seq"] == device.seq
    assert ledger.reading(ack["id"])["reading"]["cose"]


def test_the_service_runs_the_bridge_when_a_broker_is_configured(db_url, ledger_factory, broker) -> None:  # type: ignore[no-untyped-def]
    ledger = ledger_factory(db_url, mqtt_url=BROKER_URL, mqtt_client_id=uid("test-service-bridge"))
    assert ledger.mqtt is not None and ledger.mqtt.wait_connected(TIMEOUT)
    device = registered_device(ledger)
    reading = device.reading({"weight_kg": 7.0})
    with DeviceClient(broker, device.id) as dev:  # the SPEC §5 topics
        dev.publish(device.id, reading)
        assert dev.ack(device.id)["status"] == "accepted"
    assert is_stored(ledger, reading_id(reading))
    forget_session(broker, ledger.mqtt.client_id)


def test_a_malformed_broker_url_stops_the_start(db_url, ledger_factory) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        ledger_factory(db_url, mqtt_url="amqp://127.0.0.1")
