"""/metrics, request ids and log lines, through real HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import logging
import re

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from api.logs import JsonFormatter, RequestIdFilter, TextFormatter
from ledger.simulator import SimulatedDevice
from tests.api.conftest import bearer, register

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(http: httpx.Client) -> Samples:
    r = http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_follow_ingestion_and_anchoring(env) -> None:  # type: ignore[no-untyped-def]
    ledger, http, operator, bank = env
    before = scrape(http)
    assert value(before, "pledgeledger_database_up") == 1
    assert value(before, "process_resident_memory_bytes") > 0  # one process: its own collectors too

    device = SimulatedDevice("wh1-scale-metrics", "load_cell")
    assert register(http, operator, device).status_code == 201
    first = device.reading({"weight_kg": 10.0})
    assert http.post("/v1/readings", json=first).status_code == 201
    assert http.post("/v1/readings", json=first).status_code == 200  # duplicate
    forged = device.reading({"weight_kg": 11.0})
    forged["payload"]["data"]["weight_kg"] = 12.0
    assert http.post("/v1/readings", json=forged).json()["error"]["code"] == "invalid_signature"
    r = http.post("/v1/readings", json=[device.reading({"weight_kg": 13.0}), device.reading({"weight_kg": 14.0}), {"payload": {}}])
    assert [x["status"] for x in r.json()] == ["accepted", "accepted", "rejected"]
    assert http.get("/v1/devices/wh1-scale-metrics", headers=bearer(bank)).status_code == 200
    assert http.get("/nowhere").status_code == 404

    after = scrape(http)
    delta = lambda name, **labels: value(after, name, **labels) - value(before, name, **labels)  # noqa: E731
    assert delta("pledgeledger_readings_total", status="accepted", code="") == 3
    assert delta("pledgeledger_readings_total", status="duplicate", code="") == 1
    assert delta("pledgeledger_readings_total", status="rejected", code="invalid_signature") == 1
    assert delta("pledgeledger_readings_total", status="rejected", code="invalid_reading") == 1
    assert value(after, "pledgeledger_backlog_readings") == 3
    assert value(after, "pledgeledger_backlog_batches", status="sealed") == 0
    # requests by route template, never by the ids in their paths
    assert delta("pledgeledger_http_requests_total", method="POST", route="/v1/readings", status="201") == 1
    assert delta("pledgeledger_http_requests_total", method="POST", route="/v1/readings", status="422") == 1
    assert delta("pledgeledger_http_requests_total", method="GET", route="/v1/devices/{device_id}", status="200") == 1
    assert delta("pledgeledger_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert delta("pledgeledger_http_request_duration_seconds_count", method="POST", route="/v1/readings") == 4
    assert not any("wh1-scale-metrics" in dict(labels).get("route", "") for _, labels in after)

    sealed = ledger.anchorer.seal()
    assert sealed is not None
    waiting = scrape(http)
    assert value(waiting, "pledgeledger_backlog_readings") == 3
    assert value(waiting, "pledgeledger_backlog_batches", status="sealed") == 1
    assert value(waiting, "pledgeledger_backlog_oldest_seconds") > 0

    ledger.anchorer.anchor_pending()
    anchored = scrape(http)
    assert value(anchored, "pledgeledger_backlog_readings") == 0
    assert value(anchored, "pledgeledger_backlog_batches", status="sealed") == 0
    assert value(anchored, "pledgeledger_backlog_oldest_seconds") == 0
    assert value(anchored, "pledgeledger_anchor_latency_seconds_count") - value(before, "pledgeledger_anchor_latency_seconds_count") == 1
    assert value(anchored, "pledgeledger_anchored_readings_total") - value(before, "pledgeledger_anchored_readings_total") == 3


def test_a_request_id_is_answered_and_on_every_log_line(env) -> None:  # type: ignore[no-untyped-def]
    ledger, http, operator, bank = env
    r = http.get("/v1/thing-models")
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
    assert http.get("/v1/thing-models").headers["x-request-id"] != r.headers["x-request-id"]
    assert http.get("/healthz", headers={"X-Request-ID": "lb-7f3a:42"}).headers["x-request-id"] == "lb-7f3a:42"
    for insane in ("has spaces", "x" * 129, "quote\"d", ""):
        answered = http.get("/healthz", headers={"X-Request-ID": insane}).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", answered), insane
    big = http.post("/v1/readings", content=b"[" * (5 * 1024 * 1024), headers={"X-Request-ID": "too-big-1"})
    assert big.status_code == 413 and big.headers["x-request-id"] == "too-big-1"

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    with ledger.db.engine.begin() as conn:  # a real outage of one table: the next lookup fails inside the ledger
        conn.execute(text("ALTER TABLE readings RENAME TO readings_away"))
    try:
        r = http.get("/v1/readings/" + "ab" * 32, headers={**bearer(bank), "X-Request-ID": "outage-1"})
        ok = http.get("/v1/thing-models", headers={"X-Request-ID": "fine-1"})
    finally:
        with ledger.db.engine.begin() as conn:
            conn.execute(text("ALTER TABLE readings_away RENAME TO readings"))
        root.removeHandler(handler)
        root.setLevel(old_level)
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
    assert r.headers["x-request-id"] == "outage-1" and ok.headers["x-request-id"] == "fine-1"

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    by_id: dict[str, list[dict]] = {}
    for line in lines:
        assert {"ts", "level", "logger", "request_id", "message"} <= set(line), line
        by_id.setdefault(line["request_id"], []).append(line)
    outage = by_id["outage-1"]
    error = next(line for line in outage if line["logger"] == "api.errors")
    assert error["level"] == "ERROR" and "readings" in error["exc"]  # the traceback, tagged with the request
    access = next(line for line in outage if line["logger"] == "api.access")
    assert access["status"] == 500 and access["route"] == "/v1/readings/{reading_id}" and access["duration_ms"] > 0
    assert [line["logger"] for line in by_id["fine-1"]] == ["api.access"]
    assert not [line for line in lines if line["request_id"] is None and line["logger"].startswith("api.")]


def test_text_log_lines_carry_the_request_id_and_hide_secrets() -> None:
    from api.logs import REQUEST_ID

    record = logging.LogRecord("ledger.x", logging.INFO, __file__, 1, "key %s used", ("plk_abcdefghijklmnopqrstuvwxyz0123",), None)
    token = REQUEST_ID.set("req-9")
    try:
        RequestIdFilter().filter(record)
    finally:
        REQUEST_ID.reset(token)
    line = TextFormatter().format(record)
    assert "[req-9] ledger.x: key [redacted] used" in line and "plk_abc" not in line


@pytest.mark.parametrize("header", ["Bearer plk_secretsecretsecret", "bearer some.jwt.token"])
def test_bearer_tokens_are_redacted_wherever_they_appear(header: str) -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "header was %r", (header,), None)
    assert header.split()[1] not in JsonFormatter().format(record)


def test_the_body_limit_covers_bodies_without_content_length(env) -> None:  # type: ignore[no-untyped-def]
    """A chunked body is counted as it streams in and refused at the limit, like a declared one."""
    from api.main import MAX_BODY_BYTES

    _, http, operator, _ = env
    sent = 0

    def chunks(total: int):  # a generator: httpx sends Transfer-Encoding: chunked, no Content-Length
        nonlocal sent
        yield b"["
        while sent < total:
            sent += 64 * 1024
            yield b" " * (64 * 1024)
        yield b"]"

    for path, headers in (("/v1/readings", {}), ("/v1/devices", bearer(operator))):
        sent = 0
        r = http.post(path, content=chunks(MAX_BODY_BYTES + 1024 * 1024), headers={**headers, "content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large", (path, r.text)
        assert r.request.headers.get("transfer-encoding") == "chunked" and "content-length" not in r.request.headers
    sent = 0
    r = http.post("/v1/readings", content=chunks(MAX_BODY_BYTES - 1024 * 1024), headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json() == []  # under the limit, chunked is fine


def test_serve_chooses_multiprocess_metrics_only_with_workers_or_when_told(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import os

    from api.cli import _multiprocess_metrics

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert _multiprocess_metrics(1) is None and "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    # an operator's directory is used as it is, emptied of a previous run's counters (they would be added in)
    (tmp_path / "counter_4242.db").write_bytes(b"stale")
    (tmp_path / "notes.txt").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert _multiprocess_metrics(1) is None
    assert not (tmp_path / "counter_4242.db").exists() and (tmp_path / "notes.txt").exists()
