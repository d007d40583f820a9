"""Production metrics: the computation rules, and the verifier of a production answer (pure, no chain)."""

from __future__ import annotations

import copy
import random
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from typing import Any

import pytest

from attestation.bundle import MULTIPROOF_FORMAT, ChainFacts, OnChainKey, chain_queries, verify_any
from attestation.devices import key_fingerprint
from attestation.encoding import to_hex
from attestation.errors import InvalidProductionQuery
from attestation.merkle import StandardTree, leaf_hash
from attestation.production import PRODUCTION_FORMAT, ProductionQuery, compute, decimal_text, verify_production
from attestation.readings import parse_reading
from ledger.simulator import SimulatedDevice

UTC = timezone.utc


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def meter(points: list[tuple[str, float]], device: SimulatedDevice | None = None) -> list[dict[str, Any]]:
    device = device or SimulatedDevice("plant-meter-1", "power_meter")
    return [device.reading({"energy_kwh": kwh}, ts=at(ts)) for ts, kwh in points]


def parsed(envelopes: list[dict[str, Any]]) -> list:  # type: ignore[type-arg]
    return [parse_reading(e) for e in envelopes]


def energy(period: str, start: str, end: str, device: str = "plant-meter-1") -> ProductionQuery:
    return ProductionQuery.parse("energy", device, period=period, start=start, end=end)


def kwh(result: dict[str, Any]) -> list[str]:
    return [p["kwh"] for p in result["periods"]]


def kinds(period: dict[str, Any]) -> list[str]:
    return [i["kind"] for i in period["issues"]]


# --- the rules ------------------------------------------------------------------------------------


def test_day_boundaries_interpolate_linearly_and_exactly() -> None:
    readings = parsed(meter([("2026-03-01T00:00:00", 100), ("2026-03-01T22:00:00", 120.5), ("2026-03-02T02:00:00", 124.5),
                             ("2026-03-03T00:00:00", 130.1)]))
    result = compute(energy("day", "2026-03-01", "2026-03-02"), readings)
    # 22:00 -> 02:00 carries 4 kWh, half of it before midnight
    assert kwh(result) == ["22.500", "7.600"] and result["kwh"] == "30.100"
    assert result["unit"] == "kWh" and result["complete"] and all(p["complete"] and p["issues"] == [] for p in result["periods"])
    assert [p["readings"] for p in result["periods"]] == [2, 1]
    assert result["periods"][0]["start"] == "2026-03-01T00:00:00Z" and result["periods"][1]["end"] == "2026-03-03T00:00:00Z"
    # exact decimals: 0.1 and 0.3 are one and three tenths, not their binary neighbours
    tenths = parsed(meter([("2026-03-01T00:00:00", 0.1), ("2026-03-02T00:00:00", 0.3)]))
    assert compute(energy("day", "2026-03-01", "2026-03-01"), tenths)["kwh"] == "0.200"


def test_month_boundaries_including_february_and_leap_years() -> None:
    # 24 kWh from 31 Jan 12:00 to 1 Feb 12:00: 12 in each month; then February 2028 has 29 days
    readings = parsed(meter([("2028-01-01T00:00:00", 0), ("2028-01-31T12:00:00", 100), ("2028-02-01T12:00:00", 124),
                             ("2028-03-01T00:00:00", 124 + 684)]))  # 28.5 days at 24 kWh a day
    result = compute(energy("month", "2028-01", "2028-02"), readings)
    assert kwh(result) == ["112.000", "696.000"]  # 29 days × 24 kWh
    assert [p["start"] for p in result["periods"]] == ["2028-01-01T00:00:00Z", "2028-02-01T00:00:00Z"]
    assert result["periods"][1]["end"] == "2028-03-01T00:00:00Z" and result["complete"]
    # December to January crosses the year
    q = energy("month", "2026-12", "2027-01")
    assert [s.isoformat() for s, _ in q.periods()] == ["2026-12-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"]


def test_meter_reset_counts_from_zero_and_says_so() -> None:
    readings = parsed(meter([("2026-03-01T00:00:00", 100), ("2026-03-01T06:00:00", 105), ("2026-03-01T12:00:00", 3),
                             ("2026-03-02T00:00:00", 10)]))
    result = compute(energy("day", "2026-03-01", "2026-03-01"), readings)
    assert result["kwh"] == "15.000"  # 5, then 3 counted from zero, then 7
    [day] = result["periods"]
    assert not day["complete"] and kinds(day) == ["meter_reset"]
    assert day["issues"][0] == {"kind": "meter_reset", "after_seq": 2, "seq": 3, "from_kwh": "105.000", "to_kwh": "3.000"}


def test_missing_data_is_named_per_period() -> None:
    device = SimulatedDevice("plant-meter-1", "power_meter")
    envelopes = meter([("2026-03-02T12:00:00", 10), ("2026-03-03T00:00:00", 20), ("2026-03-03T12:00:00", 30),
                       ("2026-03-04T00:00:00", 40), ("2026-03-04T12:00:00", 50)], device)
    # the meter starts mid-period 2 and stops mid-period 4: counted between its readings only
    result = compute(energy("day", "2026-03-01", "2026-03-05"), parsed(envelopes))
    assert kwh(result) == ["0.000", "10.000", "20.000", "10.000", "0.000"]
    assert [kinds(p) for p in result["periods"]] == [
        ["no_reading_before"], ["no_reading_before"], [], ["no_reading_after"], ["no_reading_after"]]
    assert result["periods"][1]["issues"][0]["first"] == "2026-03-02T12:00:00Z" and not result["complete"]

    # a reading left out (withheld, lost or not anchored) breaks the hash chain where it was
    dropped = [e for i, e in enumerate(envelopes) if i != 2]
    result = compute(energy("day", "2026-03-03", "2026-03-03"), parsed(dropped))
    assert result["kwh"] == "20.000"  # the meter is cumulative: the energy is still right
    [day] = result["periods"]
    assert kinds(day) == ["chain_break"] and day["issues"][0]["reason"] == "prev_mismatch"
    assert (day["issues"][0]["after_seq"], day["issues"][0]["seq"]) == (2, 4)

    # a reboot (prev null) is a break too: what came just before it is not proven
    device.prev = None
    restart = envelopes + [device.reading({"energy_kwh": 55}, ts=at("2026-03-05T00:00:00"))]
    result = compute(energy("day", "2026-03-04", "2026-03-04"), parsed(restart))
    assert [i["reason"] for i in result["periods"][0]["issues"] if i["kind"] == "chain_break"] == ["restart"]
    # no readings at all: zero, and incomplete
    empty = compute(energy("day", "2026-03-01", "2026-03-01"), [])
    assert empty["kwh"] == "0.000" and kinds(empty["periods"][0]) == ["no_reading_before", "no_reading_after"]


def test_readings_of_other_kinds_keep_the_chain_but_do_not_count() -> None:
    device = SimulatedDevice("plant-meter-1", "power_meter")
    envelopes = meter([("2026-03-01T00:00:00", 1)], device)
    device.kind = "heartbeat"
    envelopes.append(device.reading({}, ts=at("2026-03-01T12:00:00")))
    device.kind = "power_meter"
    envelopes += meter([("2026-03-02T00:00:00", 9)], device)
    result = compute(energy("day", "2026-03-01", "2026-03-01"), parsed(envelopes))
    assert result["kwh"] == "8.000" and result["complete"] and result["periods"][0]["readings"] == 1


def test_run_hours_from_running_to_the_next_state() -> None:
    machine = SimulatedDevice("press-1", "equipment_state")
    states = [("2026-03-01T00:00:00", False), ("2026-03-01T08:00:00", True), ("2026-03-01T12:00:00", False),
              ("2026-03-01T22:00:00", True), ("2026-03-02T01:30:00", True), ("2026-03-02T02:00:00", False),
              ("2026-03-03T00:00:00", False)]
    envelopes = [machine.reading({"running": running}, ts=at(ts)) for ts, running in states]
    query = ProductionQuery.parse("run_hours", "press-1", period="day", start="2026-03-01", end="2026-03-02")
    result = compute(query, parsed(envelopes))
    assert [p["hours"] for p in result["periods"]] == ["6.000", "2.000"] and result["hours"] == "8.000"
    assert result["unit"] == "h" and result["complete"]
    # a run across a break in the hash chain is not counted: the stop in between may be missing
    broken = [e for i, e in enumerate(envelopes) if i != 2]
    result = compute(query, parsed(broken))
    assert result["periods"][0]["hours"] == "2.000" and kinds(result["periods"][0]) == ["chain_break"]
    # still running at the last reading: counted up to it, the rest of the period unknown
    result = compute(query, parsed(envelopes[:5]))
    assert [p["hours"] for p in result["periods"]] == ["6.000", "1.500"]
    assert kinds(result["periods"][1]) == ["no_reading_after"]


def test_utilisation_and_year_on_year_growth() -> None:
    device = SimulatedDevice("plant-meter-1", "power_meter")
    monthly = [100, 120, 90, 150, 150, 80, 100, 100, 100, 100, 100, 100, 135]  # 2025-05 … 2026-05
    points, total = [("2025-05-01T00:00:00", 0)], 0
    for i, used in enumerate(monthly):
        total += used
        points.append(((datetime(2025, 5, 1) + timedelta(days=32 * (i + 1))).strftime("%Y-%m-01T00:00:00"), total))
    readings = parsed(meter(points, device))
    query = ProductionQuery.parse("utilisation", "plant-meter-1", month="2026-05")
    result = compute(query, readings)
    assert result["month"] == "2026-05" and result["kwh"] == "135.000" and len(result["periods"]) == 13
    assert (result["peak_prior_month"], result["peak_prior_kwh"]) == ("2025-08", "150.000")  # the earlier of two peaks
    assert result["utilisation"] == "0.9000" and result["year_ago_kwh"] == "100.000" and result["yoy_growth"] == "0.3500"
    assert result["complete"]
    assert query.as_dict() == {"metric": "utilisation", "device": "plant-meter-1", "month": "2026-05"}
    # nothing counted a year ago: no growth figure, and the answer says why
    late = compute(query, [r for r in readings if r.ts >= at("2025-06-01T00:00:00")])
    assert late["yoy_growth"] is None and not late["complete"] and kinds(late["periods"][0])[0] == "no_reading_before"


def test_results_do_not_depend_on_reading_order() -> None:
    readings = parsed(meter([(f"2026-03-0{d}T0{h}:00:00", d * 10 + h * 1.25) for d in range(1, 4) for h in (0, 5)]))
    query = energy("day", "2026-03-01", "2026-03-02")
    shuffled = readings[:]
    random.Random(7).shuffle(shuffled)
    assert compute(query, shuffled) == compute(query, readings)


def test_rounding_is_half_even() -> None:
    assert [decimal_text(Fraction(n, 2000), 3) for n in (1, 3, 5, -3)] == ["0.000", "0.002", "0.002", "-0.002"]
    assert decimal_text(Fraction(2, 3), 4) == "0.6667"


@pytest.mark.parametrize(
    "args",
    [
        {"metric": "power", "period": "day", "start": "2026-01-01", "end": "2026-01-02"},
        {"metric": "energy", "period": "week", "start": "2026-01-01", "end": "2026-01-02"},
        {"metric": "energy", "period": "day", "start": "2026-01-02", "end": "2026-01-01"},
        {"metric": "energy", "period": "day", "start": "2026-02-30", "end": "2026-03-01"},
        {"metric": "energy", "period": "month", "start": "2026-01-01", "end": "2026-02"},
        {"metric": "energy", "period": "day", "start": "2025-01-01", "end": "2026-12-31"},
        {"metric": "energy", "period": "day", "start": "2025-01-01"},
        {"metric": "utilisation", "month": "2026-13"},
        {"metric": "run_hours", "device": "no spaces", "period": "day", "start": "2026-01-01", "end": "2026-01-01"},
    ],
)
def test_invalid_queries_say_what_to_fix(args: dict[str, str]) -> None:
    args = {"device": "plant-meter-1", **args}
    with pytest.raises(InvalidProductionQuery) as info:
        ProductionQuery.parse(args.pop("metric"), args.pop("device"), **args)
    assert info.value.code == "invalid_query" and info.value.field


# --- the verifier, with chain facts made here --------------------------------------------------------


CONTRACT = "0x" + "aa" * 20


def answer_of(query: ProductionQuery, envelopes: list[dict[str, Any]], devices: dict[str, SimulatedDevice],
              batches: list[list[int]]) -> tuple[dict[str, Any], list[ChainFacts]]:
    """A production answer as the ledger builds it, the readings sealed into ``batches`` (indices
    into ``envelopes``, each batch with one unrelated reading too), and the facts a node would give."""
    readings = parsed(envelopes)
    groups, roots = [], []
    for index, members in enumerate(batches):
        salts = [bytes([index, i]) * 16 for i in range(len(members) + 1)]
        values = [(salts[i], readings[m].digest) for i, m in enumerate(members)] + [(salts[-1], bytes([index + 1]) * 32)]
        tree = StandardTree.of(values)
        order, multiproof = tree.multiproof(list(range(len(members))))
        entries = [{
            "reading": envelopes[members[i]],
            "digest": to_hex(values[i][1]), "salt": to_hex(values[i][0]), "leaf": to_hex(leaf_hash(*values[i])),
            "device": {"id": query.device, "alg": "ES256", "public_key": devices[query.device].public_key_pem},
        } for i in order]
        groups.append({
            "format": MULTIPROOF_FORMAT, "device": query.device, "readings": entries,
            "multiproof": {"leaves": [[e["salt"], e["digest"]] for e in entries], "proof": [to_hex(p) for p in multiproof.proof],
                           "proofFlags": multiproof.proof_flags},
            "root": to_hex(tree.root),
            "anchor": {"chain_id": 31337, "contract": CONTRACT, "index": index, "tx_hash": "0x" + f"{index:064x}",
                       "block_number": 10 + index, "status": "final"},
        })
        roots.append(tree.root)
    answer = {"format": PRODUCTION_FORMAT, "query": query.as_dict(), "pending": [],
              "result": compute(query, [readings[m] for members in batches for m in members]), "evidence": groups}
    return answer, facts_for(answer, devices, roots)


def facts_for(answer: dict[str, Any], devices: dict[str, SimulatedDevice], roots: list[bytes]) -> list[ChainFacts]:
    """What an honest node holding ``roots`` says for each reading of ``answer``."""
    facts = []
    for q in chain_queries(answer):
        key = OnChainKey(key_fingerprint(devices[q.device].public_key_pem), "ES256", 0, 2**63)
        facts.append(ChainFacts(chain_id=31337, contract=CONTRACT, root=roots[q.index] if q.index < len(roots) else None,
                                device_key=key, previous_root=roots[q.index - 1] if q.index else None,
                                anchored=(q.index, roots[q.index])))
    return facts


@pytest.fixture
def proven() -> tuple[dict[str, Any], list[ChainFacts], dict[str, SimulatedDevice], list[bytes]]:
    device = SimulatedDevice("plant-meter-1", "power_meter")
    envelopes = meter([("2026-03-01T00:00:00", 100), ("2026-03-01T12:00:00", 106), ("2026-03-02T00:00:00", 112),
                       ("2026-03-02T12:00:00", 118), ("2026-03-03T00:00:00", 130)], device)
    devices = {device.id: device}
    answer, facts = answer_of(energy("day", "2026-03-01", "2026-03-02"), envelopes, devices, [[0, 1, 2], [3], [4]])
    roots = [bytes.fromhex(g["root"][2:]) for g in answer["evidence"]]
    return answer, facts, devices, roots


def test_an_honest_answer_verifies(proven) -> None:  # type: ignore[no-untyped-def]
    answer, facts, _, _ = proven
    report = verify_any(answer, facts)
    assert report.ok, report.as_dict()
    assert [c.name for c in report.checks] == ["format", "evidence", "readings", "computation"]
    assert answer["result"]["kwh"] == "30.000" and "kwh 30.000, complete" in report.checks[-1].detail
    assert verify_production(answer, facts).ok


def test_a_tampered_reading_value_fails(proven) -> None:  # type: ignore[no-untyped-def]
    answer, facts, _, _ = proven
    forged = copy.deepcopy(answer)
    forged["evidence"][0]["readings"][0]["reading"]["payload"]["data"]["energy_kwh"] = 90
    report = verify_production(forged, facts)
    assert not report.ok and "evidence" in report.failed and "signature" in report.checks[1].detail
    # the result alone inflated: the readings give another number
    inflated = copy.deepcopy(answer)
    inflated["result"]["periods"][1]["kwh"] = "19.000"
    report = verify_production(inflated, facts)
    assert report.failed == ["computation"]
    assert "result.periods[1].kwh" in report.checks[-1].detail and "'18.000'" in report.checks[-1].detail


def test_a_dropped_reading_fails_or_is_disclosed(proven) -> None:  # type: ignore[no-untyped-def]
    answer, facts, devices, roots = proven
    # dropped from a multiproof: the multiproof no longer leads to the root
    dropped = copy.deepcopy(answer)
    del dropped["evidence"][0]["readings"][1]
    del dropped["evidence"][0]["multiproof"]["leaves"][1]
    report = verify_production(dropped, facts_for(dropped, devices, roots))
    assert not report.ok and "evidence" in report.failed
    # a whole batch dropped, result kept: the readings no longer give the result
    whole = copy.deepcopy(answer)
    del whole["evidence"][1]
    report = verify_production(whole, facts_for(whole, devices, roots[:1] + [b"\0" * 32] + roots[2:]))
    assert report.failed == ["computation"]
    # ...and with the result recomputed, the answer verifies but says the data has a hole
    query = ProductionQuery.from_dict(whole["query"])
    whole["result"] = compute(query, [parse_reading(e["reading"]) for g in whole["evidence"] for e in g["readings"]])
    report = verify_production(whole, facts_for(whole, devices, roots))
    assert report.ok and not whole["result"]["complete"]
    assert [i["kind"] for i in whole["result"]["periods"][1]["issues"]] == ["chain_break"]


def test_evidence_of_another_device_or_a_wrong_root_fails(proven) -> None:  # type: ignore[no-untyped-def]
    answer, facts, devices, roots = proven
    other = copy.deepcopy(answer)
    other["query"]["device"] = "plant-meter-2"
    assert verify_production(other, facts).failed == ["format", "evidence", "readings", "computation"]
    wrong_root = list(facts)
    wrong_root[-1] = ChainFacts(**{**facts[-1].__dict__, "root": b"\1" * 32})
    report = verify_production(answer, wrong_root)
    assert report.failed == ["evidence"] and "root" in report.checks[1].detail
    assert not verify_production(answer, facts[:-1]).ok  # facts for the wrong number of readings
    malformed = {**answer, "evidence": [{"format": "pledgeledger.proof/1"}]}
    assert verify_any(malformed, []).failed[0] == "format"


def test_cose_readings_count_like_json_ones() -> None:
    from attestation.encoding import b64url_encode

    device = SimulatedDevice("plant-meter-1", "power_meter")
    envelopes: list[dict[str, Any]] = [device.reading({"energy_kwh": 10.25}, ts=at("2026-03-01T00:00:00"))]
    envelopes.append({"cose": b64url_encode(device.cose_reading({"energy_kwh": 12.5}, ts=at("2026-03-01T12:00:00")))})
    envelopes.append(device.reading({"energy_kwh": 20.75}, ts=at("2026-03-02T00:00:00")))
    result = compute(energy("day", "2026-03-01", "2026-03-01"), parsed(envelopes))
    assert result["kwh"] == "10.500" and result["complete"]  # the prev links run across both envelopes
    answer, facts = answer_of(energy("day", "2026-03-01", "2026-03-01"), envelopes, {device.id: device}, [[0, 1], [2]])
    assert verify_production(answer, facts).ok
