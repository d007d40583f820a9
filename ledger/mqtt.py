"""MQTT bridge (SPEC §5): signed readings in over MQTT, acknowledgements out.

Devices publish the SPEC §1 JSON envelope (UTF-8) to ``pledgeledger/v1/readings/<device id>``
at QoS 1. The bridge ingests each message exactly like ``POST /v1/readings`` and answers on
``pledgeledger/v1/acks/<device id>`` (QoS 1, not retained) with::

    {"seq": 42, "status": "accepted" | "duplicate" | "rejected",
     "code": null | "snake_case", "id": "<reading id: digest hex>" | null}

``seq`` echoes ``payload.seq`` when the message has one; ``id`` is the reading id when the
reading is (or already was) stored; ``duplicate`` answers an identical re-delivery (a device
whose acknowledgement was lost simply publishes the same reading again). Codes are those of
the HTTP API plus ``topic_mismatch`` (the topic's device id is not ``payload.device``),
``invalid_json`` (not UTF-8 JSON) and ``internal_error`` (an unexpected failure, logged; the
device should retry later; the bridge itself never sends it, see below).

Delivery guarantees
-------------------
* **Acknowledged only once durable.** The client uses paho-mqtt's manual acknowledgement: the
  broker's PUBACK is sent only after :func:`ledger.ingest.ingest` has committed (or after a
  definitive rejection). A bridge that dies before that leaves the message unacknowledged in
  its broker session and the broker delivers it again when the bridge comes back; the second
  delivery is then stored or, if the first commit did happen, answered ``duplicate``.
* **Persistent session.** MQTT v5 (for its session expiry interval, Receive Maximum and
  reason codes; any MQTT 5 broker, e.g. Mosquitto >= 1.6), a stable client id,
  ``clean_start=False`` on every connect and a session expiry interval (default 7 days): the
  subscription and the QoS-1 readings published while the bridge is down are kept by the
  broker (up to its own queue limits, e.g. Mosquitto's ``max_queued_messages``) and delivered
  when it reconnects.
* **Failures are retried, not answered.** When storing fails for a reason that is not the
  reading's fault (the database down or restarting), the bridge keeps the message
  unacknowledged and tries again with exponential backoff (up to ``retry_max_delay_s``); the
  device's later readings wait behind it, and if the bridge stops meanwhile the broker delivers
  the message again next session. Nothing the broker handed over is lost.
* **Order.** Messages are processed off the network thread on worker threads chosen by device
  id, so each device's readings are ingested in the order the broker delivered them.
  ``Receive Maximum`` bounds how many unacknowledged readings the broker sends at once.
* **Reconnects.** The first connection and every later one are retried with exponential
  backoff (``reconnect_delay_set``); the subscription is renewed on every connect.

One client id is one session: run one bridge per client id (two bridges sharing an id keep
taking the session from each other). ``topic_root`` (default ``pledgeledger/v1``) can move the
topics, e.g. to keep staging and production apart on one broker.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from attestation.encoding import b64url_encode
from attestation.errors import AttestationError
from attestation.readings import parse_reading
from ledger.errors import Invalid, LedgerError
from ledger.ingest import ingest
from ledger.store.db import Database, database_unavailable, first_line

COSE_SIGN1_TAG = b"\xd2"  # CBOR tag 18 in its one-byte form: a COSE_Sign1 message

__all__ = [
    "ACKS_TOPIC",
    "READINGS_TOPIC",
    "TOPIC_ROOT",
    "MqttBridge",
    "MqttUrl",
    "handle_reading",
    "parse_mqtt_url",
]

log = logging.getLogger(__name__)

TOPIC_ROOT = "pledgeledger/v1"
READINGS_TOPIC = TOPIC_ROOT + "/readings/"  # + <device id>
ACKS_TOPIC = TOPIC_ROOT + "/acks/"  # + <device id>
DEFAULT_SESSION_EXPIRY_S = 7 * 24 * 3600


# --- broker URL -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MqttUrl:
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        """The URL without the password, for logs."""
        user = f"{self.username}:***@" if self.username is not None else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}"


def _redacted(url: str) -> str:
    return re.sub(r"(//[^/@]*?:)[^/@]*@", r"\1***@", url)


def parse_mqtt_url(url: str) -> MqttUrl:
    """``mqtt://[user[:pass]@]host[:port]`` (default port 1883) or ``mqtts://…`` (TLS, 8883, system CAs).

    Raises :class:`ValueError` saying what is wrong (the password left out).
    """
    parts = urlsplit(url.strip())
    url = _redacted(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"MQTT URL must start with mqtt:// or mqtts:// (got {url!r})")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"MQTT URL has an invalid port: {url!r}") from None
    if not parts.hostname:
        raise ValueError(f"MQTT URL names no broker host: {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"MQTT URL takes no path or query, only [user:pass@]host[:port]: {url!r}")
    tls = parts.scheme == "mqtts"
    return MqttUrl(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


# --- one message -------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _seq_of(envelope: Any) -> int | None:
    inner = envelope.get("payload") if isinstance(envelope, dict) else None
    seq = inner.get("seq") if isinstance(inner, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def handle_reading(db: Database, topic_device: str, payload: bytes, *, max_future_skew_s: float) -> dict[str, Any]:
    """Ingest one MQTT message published for ``topic_device``; return the acknowledgement.

    Never raises: a rejection is an acknowledgement with ``status: rejected`` and its code.
    When it returns ``accepted`` or ``duplicate``, the reading is committed.
    """
    if payload[:1] == COSE_SIGN1_TAG:  # a COSE_Sign1 reading (SPEC §1), as raw CBOR bytes
        envelope: Any = {"cose": b64url_encode(payload)}
    else:
        try:
            envelope = json.loads(payload.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError, RecursionError):
            return {"seq": None, "status": "rejected", "code": "invalid_json", "id": None}
    seq = _seq_of(envelope)
    try:
        reading = parse_reading(envelope)  # structure first: the topic check needs payload.device
        seq = reading.payload["seq"]
        if reading.payload["device"] != topic_device:
            raise Invalid(
                f"payload.device {reading.payload['device']} does not match the topic's device {topic_device}",
                code="topic_mismatch",
            )
        result = ingest(db, reading, max_future_skew_s=max_future_skew_s)
    except (LedgerError, AttestationError) as exc:
        log.info("mqtt reading from %s (seq %s) rejected: %s: %s", topic_device, seq, exc.code, exc.message)
        return {"seq": seq, "status": "rejected", "code": exc.code, "id": None}
    except Exception as exc:  # not the reading's fault: the bridge tries again
        if database_unavailable(exc):
            log.warning("mqtt reading from %s (seq %s) not stored, database unavailable: %s", topic_device, seq, first_line(exc))
        else:
            log.exception("mqtt reading from %s (seq %s) failed", topic_device, seq)
        return {"seq": seq, "status": "rejected", "code": "internal_error", "id": None}
    return {"seq": seq, "status": result.status, "code": result.code, "id": result.id}


# --- the bridge --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Message:
    generation: int
    mid: int
    qos: int
    device: str
    payload: bytes


_STOP = object()


class MqttBridge:
    """Subscribes to ``<topic_root>/readings/+`` and ingests into ``db``; see the module doc.

    ``topic_root`` is ``pledgeledger/v1`` (SPEC §5); another root keeps ledgers that share a
    broker (staging and production, or test runs) apart.

    ``start()`` returns at once and connects in the background (retrying with backoff while the
    broker is unreachable); ``stop()`` disconnects and leaves unprocessed readings to the broker
    session. A stopped bridge can be started again.
    """

    def __init__(
        self,
        db: Database,
        url: str,
        *,
        max_future_skew_s: float,
        client_id: str = "pledgeledger-bridge",
        session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S,
        workers: int | None = None,
        receive_maximum: int = 64,
        keepalive_s: int = 30,
        reconnect_min_delay_s: float = 1,
        reconnect_max_delay_s: float = 60,
        retry_max_delay_s: float = 30,
        topic_root: str = TOPIC_ROOT,
    ) -> None:
        if not client_id:
            raise ValueError("the MQTT bridge needs a stable, non-empty client id")
        if not topic_root or topic_root.endswith("/") or any(c in topic_root for c in "+#\0"):
            raise ValueError(f"MQTT topic root must be a topic name, no wildcards or trailing slash: {topic_root!r}")
        self.db = db
        self.url = parse_mqtt_url(url)
        self.client_id = client_id
        # SPEC §5 topics; another root (e.g. "staging/pledgeledger/v1") separates ledgers sharing a broker
        self.readings_topic = f"{topic_root}/readings/"
        self.acks_topic = f"{topic_root}/acks/"
        self.subscription = self.readings_topic + "+"
        self.max_future_skew_s = max_future_skew_s
        self.session_expiry_s = session_expiry_s
        # SQLite has one writer: one worker avoids lock contention; PostgreSQL ingests devices in parallel
        self.workers = workers or (1 if db.dialect == "sqlite" else 4)
        self.receive_maximum = receive_maximum
        self.keepalive_s = keepalive_s
        self.reconnect_delay_s = (reconnect_min_delay_s, reconnect_max_delay_s)
        self.retry_max_delay_s = retry_max_delay_s
        self._stopping = threading.Event()
        self.accepted = 0
        self.duplicates = 0
        self.rejected = 0
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._running = False
        self._generation = 0  # bumped on every disconnect: a PUBACK belongs to the connection that delivered
        self._client: paho.Client | None = None
        self._queues: list[queue.Queue[Any]] = []
        self._threads: list[threading.Thread] = []

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Connected to the broker with the readings subscription in place."""
        return self._subscribed.is_set()

    def wait_connected(self, timeout: float | None = None) -> bool:
        return self._subscribed.wait(timeout)

    def start(self) -> None:
        if self._running:
            return
        self._running = True
        self._stopping.clear()
        self._queues = [queue.Queue() for _ in range(self.workers)]
        self._threads = [
            threading.Thread(target=self._work, args=(q,), name=f"mqtt-bridge-worker-{i}", daemon=True)
            for i, q in enumerate(self._queues)
        ]
        for thread in self._threads:
            thread.start()
        client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=paho.MQTTv5,
            manual_ack=True,
        )
        client.suppress_exceptions = True  # a bug in a callback must not end the network loop
        client.enable_logger(logging.getLogger(__name__ + ".paho"))
        if self.url.username is not None:
            client.username_pw_set(self.url.username, self.url.password)
        if self.url.tls:
            client.tls_set()  # system CAs, hostname checked
        client.reconnect_delay_set(*self.reconnect_delay_s)  # type: ignore[arg-type]
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        props.ReceiveMaximum = self.receive_maximum
        self._client = client
        # clean_start=False on every connect, the first included: resume the session (and the
        # readings queued in it) that a previous run of this bridge left on the broker
        client.connect_async(
            self.url.host, self.url.port, keepalive=self.keepalive_s, clean_start=False, properties=props
        )
        client.loop_start()  # connects in the background; the first failure is retried with backoff too
        log.info("mqtt bridge %r connecting to %s", self.client_id, self.url)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the reading in hand, disconnect; readings not yet processed stay with the broker."""
        if not self._running:
            return
        self._running = False
        self._stopping.set()  # ends a retry in progress, its message unacknowledged
        for q in self._queues:
            q.put(_STOP)
        for thread in self._threads:
            thread.join(timeout)
        client = self._client
        if client is not None:
            client.disconnect()
            client.loop_stop()
        with self._lock:
            self._generation += 1  # a reading still in hand is not acknowledged: the broker keeps it
        self._subscribed.clear()
        log.info(
            "mqtt bridge %r stopped (%d accepted, %d duplicate, %d rejected)",
            self.client_id, self.accepted, self.duplicates, self.rejected,
        )

    def __enter__(self) -> MqttBridge:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- paho callbacks (network thread) --------------------------------------------------------

    def _on_connect(self, client: paho.Client, _userdata: Any, flags: Any, reason: ReasonCode, _props: Any) -> None:
        if reason.is_failure:
            log.error("mqtt broker %s refused the bridge: %s (retrying)", self.url, reason)
            return
        log.info("mqtt bridge connected to %s (session %s)", self.url, "resumed" if flags.session_present else "new")
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        client.subscribe(self.subscription, options=options)

    def _on_connect_fail(self, _client: paho.Client, _userdata: Any) -> None:
        log.warning("mqtt broker %s unreachable; retrying with backoff", self.url)

    def _on_disconnect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        with self._lock:
            self._generation += 1
        self._subscribed.clear()
        if self._running:
            log.warning("mqtt bridge lost the broker %s: %s (reconnecting)", self.url, reason)

    def _on_subscribe(
        self, _client: paho.Client, _userdata: Any, _mid: int, reasons: list[ReasonCode], _props: Any
    ) -> None:
        if any(r.is_failure for r in reasons):
            log.error("mqtt broker %s refused the subscription to %s: %s", self.url, self.subscription, reasons)
            return
        log.info("mqtt bridge subscribed to %s", self.subscription)
        self._subscribed.set()

    def _on_message(self, client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        if not self._running:
            return  # stopping: left unacknowledged, the broker delivers it again next session
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = ""
        device = topic[len(self.readings_topic):] if topic.startswith(self.readings_topic) else None
        if device is None or "/" in device:
            log.warning("mqtt bridge ignores a message on %s", topic)
            client.ack(message.mid, message.qos)
            return
        if message.dup:
            log.info("mqtt redelivery from %s (mid %d)", device, message.mid)
        with self._lock:
            generation = self._generation
        shard = zlib.crc32(device.encode("utf-8")) % len(self._queues)
        self._queues[shard].put(_Message(generation, message.mid, message.qos, device, bytes(message.payload)))

    # -- workers ------------------------------------------------------------------------------

    def _work(self, q: queue.Queue[Any]) -> None:
        while True:
            item = q.get()
            if item is _STOP:
                return
            if not self._running:
                continue  # stopping: not acknowledged, so the broker keeps it for the next session
            try:
                self._process(item)
            except Exception:  # never lose the worker (and with it every later reading of its devices)
                log.exception("mqtt bridge failed to answer %s (mid %d)", item.device, item.mid)

    def _process(self, msg: _Message) -> None:
        delay = 0.25
        while True:
            answer = handle_reading(self.db, msg.device, msg.payload, max_future_skew_s=self.max_future_skew_s)
            if answer["code"] != "internal_error":
                break
            log.warning("mqtt reading from %s (mid %d) not stored; retrying in %.2g s", msg.device, msg.mid, delay)
            if self._stopping.wait(delay):
                return  # unacknowledged: the broker delivers it again next session
            delay = min(delay * 2, self.retry_max_delay_s)
        with self._lock:
            if answer["status"] == "accepted":
                self.accepted += 1
            elif answer["status"] == "duplicate":
                self.duplicates += 1
            else:
                self.rejected += 1
        client = self._client
        if client is None:
            return
        # the answer first, then the PUBACK: both only now that the reading is committed (or refused)
        client.publish(self.acks_topic + msg.device, json.dumps(answer, separators=(",", ":")), qos=1)
        with self._lock:
            if msg.generation == self._generation:
                client.ack(msg.mid, msg.qos)
            # else the connection that delivered it is gone: the broker redelivers it on the new
            # one and that copy is answered "duplicate" and acknowledged
