"""Production-supervision metrics from signed readings, and the verifier of an answer.

A bank lending against a plant's output asks the ledger how much energy a meter counted, how
long a machine ran, and how this month compares with the past year. The ledger answers with a
*production answer* (``pledgeledger.production/1``): the query, the result, and as evidence
every reading the result was computed from, in OpenZeppelin multiproofs (one multiproof bundle
per anchored batch, :mod:`attestation.bundle`). :func:`compute` is the whole computation and
:func:`verify_production` checks an answer: every reading's signature, digest, leaf, multiproof,
root and device key against chain facts, then :func:`compute` again over the proven readings,
which must give exactly the answer's ``result``. Nothing here reads a clock, a file or a chain.

The rules (README "Production metrics" says the same for banks that recompute with their own
tools):

- **Periods** are UTC calendar days or months, ``[start, end)``. A query names its first and
  last period (``YYYY-MM-DD`` or ``YYYY-MM``, both included); utilisation names one month and
  covers it and the twelve before it.
- **Numbers are exact**: a reading's ``energy_kwh`` is the decimal number its JSON shows
  (RFC 8785 prints the shortest form that round-trips, so ``0.1`` is one tenth), times are the
  microseconds of ``ts``, and everything is computed in rational arithmetic. Results are decimal
  strings rounded half to even: kWh and hours to 3 places, ratios to 4.
- **Energy**: the device's ``power_meter`` readings in sequence order give intervals between
  consecutive readings; an interval's energy is ``energy_kwh(later) - energy_kwh(earlier)``, or,
  when the count went down (a meter reset or register rollover), ``energy_kwh(later)`` as if
  counted from zero (a ``meter_reset`` issue: the energy before the reset in that interval is
  lost). Each interval's energy is spread over the periods it overlaps in proportion to time
  (linear interpolation between readings); an interval of zero length belongs to the period
  holding its instant. Totals add the exact period values, then round.
- **Run hours**: each ``equipment_state`` reading with ``running: true`` starts a run that lasts
  until the device's next ``equipment_state`` reading, spread over periods by overlap. A run
  across a break in the device's hash chain (below) is not counted: what happened in between is
  not proven.
- **Utilisation** of month M = kWh(M) ÷ the highest monthly kWh of M-12 … M-1 (the earliest on a
  tie); **year-on-year growth** = (kWh(M) - kWh(M-12)) ÷ kWh(M-12); both from the rounded monthly
  kWh, ``null`` when the divisor is 0.
- **Completeness**: each period lists its ``issues`` and is ``complete`` only when it has none:
  ``no_reading_before`` (no metric reading at or before its start: counted from the first one),
  ``no_reading_after`` (none at or after its end: counted to the last one, e.g. a month still
  running), ``chain_break`` (two consecutive readings of the device, any kind, whose ``prev``
  does not name the earlier one's digest: readings in between may be missing, whether withheld
  or lost or because the device restarted), ``meter_reset``. Readings are consecutive in the
  answer, so a reading left out of an answer shows as a ``chain_break`` in every period it
  touches: an answer cannot hide missing data and still verify.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from fractions import Fraction
from itertools import pairwise
from typing import Any, Sequence

from attestation.bundle import (
    MULTIPROOF_FORMAT,
    PRODUCTION_FORMAT,
    BundleFormatError,
    ChainFacts,
    VerificationReport,
    chain_queries,
    verify_multiproof_bundle,
)
from attestation.errors import InvalidProductionQuery
from attestation.devices import DEVICE_ID
from attestation.readings import SignedReading, parse_reading, parse_timestamp

__all__ = [
    "METRICS",
    "PRODUCTION_CHECKS",
    "PRODUCTION_FORMAT",
    "ProductionQuery",
    "compute",
    "compute_payloads",
    "metric_kinds",
    "production_queries",
    "verify_production",
]

#: The metrics and the reading kind each is computed from.
METRICS = {"energy": "power_meter", "run_hours": "equipment_state", "utilisation": "power_meter"}
PERIODS = ("day", "month")
#: The most periods one query may cover.
MAX_PERIODS = {"day": 366, "month": 36}
KWH_PLACES = 3
HOURS_PLACES = 3
RATIO_PLACES = 4
#: The checks of a production answer, in the order they are reported.
PRODUCTION_CHECKS = ("format", "evidence", "readings", "computation")

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US_PER_HOUR = 3_600_000_000
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_MONTH = re.compile(r"\d{4}-\d{2}")


def metric_kinds(metric: str) -> str:
    """The reading kind ``metric`` is computed from."""
    return METRICS[metric]


# --- the query --------------------------------------------------------------------------------------


def _month_start(text: str, name: str) -> date:
    if not _MONTH.fullmatch(text or ""):
        raise InvalidProductionQuery(f"{name} must be a month YYYY-MM, e.g. 2026-05", field=name)
    try:
        return date(int(text[:4]), int(text[5:]), 1)
    except ValueError:
        raise InvalidProductionQuery(f"{name} {text!r} is not a real month", field=name) from None


def _day(text: str, name: str) -> date:
    if not _DAY.fullmatch(text or ""):
        raise InvalidProductionQuery(f"{name} must be a day YYYY-MM-DD, e.g. 2026-05-01", field=name)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidProductionQuery(f"{name} {text!r} is not a real day", field=name) from None


def _add_months(day: date, months: int) -> date:
    n = day.year * 12 + day.month - 1 + months
    return date(n // 12, n % 12 + 1, 1)


def _instant(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


@dataclass(frozen=True)
class ProductionQuery:
    """What a production answer answers: a metric of one device over consecutive periods.

    ``first`` and ``last`` are the first and last period (included) as ``date``: a day, or the
    first day of a month. Build one with :meth:`parse` (the HTTP query) or :meth:`from_dict`
    (an answer's ``query``).
    """

    metric: str
    device: str
    period: str
    first: date
    last: date

    @classmethod
    def parse(
        cls, metric: str, device: str, *, period: str | None = None, start: str | None = None, end: str | None = None,
        month: str | None = None,
    ) -> ProductionQuery:
        """Check a query; raise :class:`InvalidProductionQuery` naming what to fix.

        ``energy`` and ``run_hours`` take ``period`` (``day`` or ``month``) and ``start`` /
        ``end`` (the first and last period, ``YYYY-MM-DD`` or ``YYYY-MM``); ``utilisation``
        takes ``month``.
        """
        if metric not in METRICS:
            raise InvalidProductionQuery(f"metric must be one of {', '.join(METRICS)}", field="metric")
        if not isinstance(device, str) or not DEVICE_ID.fullmatch(device):
            raise InvalidProductionQuery("device must be a device id: 1-64 characters of A-Z a-z 0-9 . _ : -", field="device")
        if metric == "utilisation":
            if month is None:
                raise InvalidProductionQuery("utilisation needs month=YYYY-MM", field="month")
            this = _month_start(month, "month")
            return cls(metric, device, "month", _add_months(this, -12), this)
        if period not in PERIODS:
            raise InvalidProductionQuery("period must be day or month", field="period")
        if start is None or end is None:
            raise InvalidProductionQuery(f"{metric} needs from and to (the first and last {period}, both included)", field="from")
        parse = _day if period == "day" else _month_start
        first, last = parse(start, "from"), parse(end, "to")
        if last < first:
            raise InvalidProductionQuery("to must not be before from", field="to")
        query = cls(metric, device, period, first, last)
        if len(query.periods()) > MAX_PERIODS[period]:
            raise InvalidProductionQuery(f"at most {MAX_PERIODS[period]} {period}s in one query: split the range", field="to")
        return query

    @classmethod
    def from_dict(cls, query: Any) -> ProductionQuery:
        if not isinstance(query, dict):
            raise InvalidProductionQuery("query must be an object", field="query")
        text = {k: v if isinstance(v, str) else None for k, v in query.items()}
        return cls.parse(
            text.get("metric") or "", text.get("device") or "", period=text.get("period"), start=text.get("from"),
            end=text.get("to"), month=text.get("month"),
        )

    def as_dict(self) -> dict[str, str]:
        if self.metric == "utilisation":
            return {"metric": self.metric, "device": self.device, "month": self.last.strftime("%Y-%m")}
        fmt = "%Y-%m-%d" if self.period == "day" else "%Y-%m"
        return {"metric": self.metric, "device": self.device, "period": self.period,
                "from": self.first.strftime(fmt), "to": self.last.strftime(fmt)}

    def periods(self) -> list[tuple[datetime, datetime]]:
        """The periods ``[start, end)`` in order."""
        out = []
        day = self.first
        while day <= self.last:
            following = day + timedelta(days=1) if self.period == "day" else _add_months(day, 1)
            out.append((_instant(day), _instant(following)))
            day = following
        return out

    @property
    def window(self) -> tuple[datetime, datetime]:
        """The start of the first period and the end of the last."""
        periods = self.periods()
        return periods[0][0], periods[-1][1]


# --- exact numbers ----------------------------------------------------------------------------------


def _us(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _iso(us: int) -> str:
    moment = _EPOCH + timedelta(microseconds=us)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{moment.microsecond:06d}".rstrip("0") if moment.microsecond else "") + "Z"


def _exact(value: int | float) -> Fraction:
    """The decimal number a JSON number shows: ``repr`` of a float is its shortest round-trip form,
    the same digits RFC 8785 prints."""
    return Fraction(value) if isinstance(value, int) else Fraction(repr(value))


def decimal_text(value: Fraction, places: int) -> str:
    """``value`` rounded half to even to ``places`` decimals, as a decimal string."""
    scaled = round(value * 10**places)  # Fraction.__round__ rounds half to even
    sign = "-" if scaled < 0 else ""
    digits = str(abs(scaled)).rjust(places + 1, "0")
    return f"{sign}{digits[:-places]}.{digits[-places:]}" if places else f"{sign}{digits}"


# --- the computation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Point:
    """One reading as the computation sees it."""

    seq: int
    us: int
    kind: str
    id: str
    prev: str | None
    data: dict[str, Any]


def _points(payloads: Sequence[tuple[str, dict[str, Any]]], device: str) -> list[_Point]:
    """The device's readings in sequence order; raises :class:`ValueError` if they are not one
    device's, repeat a sequence number, or go back in time."""
    points = []
    for digest, p in payloads:
        if p["device"] != device:
            raise ValueError(f"reading {digest} is of device {p['device']!r}, the query of {device!r}")
        points.append(_Point(p["seq"], _us(parse_timestamp(p["ts"])), p["kind"], digest, p["prev"], p["data"]))
    points.sort(key=lambda p: p.seq)
    for a, b in pairwise(points):
        if a.seq == b.seq:
            raise ValueError(f"two readings with seq {a.seq}: {a.id} and {b.id}")
        if b.us < a.us:
            raise ValueError(f"reading seq {b.seq} is stamped before seq {a.seq}: a device's time never goes back")
    return points


class _Periods:
    """Periods ``[start, end)`` in microseconds, with exact accumulators and issues."""

    def __init__(self, periods: Sequence[tuple[datetime, datetime]]) -> None:
        self.bounds = [(_us(s), _us(e)) for s, e in periods]
        self.starts = [s for s, _ in self.bounds]
        self.amount = [Fraction(0)] * len(self.bounds)
        self.readings = [0] * len(self.bounds)
        self.issues: list[list[dict[str, Any]]] = [[] for _ in self.bounds]

    def _from(self, us: int) -> int:
        return max(0, bisect_right(self.starts, us) - 1)

    def touching(self, lo: int, hi: int) -> list[int]:
        """Periods that ``[lo, hi]`` overlaps for a positive time (or that hold ``lo`` if ``lo == hi``)."""
        if lo == hi:
            i = bisect_right(self.starts, lo) - 1
            return [i] if 0 <= i and lo < self.bounds[i][1] else []
        out = []
        for i in range(self._from(lo), len(self.bounds)):
            start, end = self.bounds[i]
            if start >= hi:
                break
            if end > lo:
                out.append(i)
        return out

    def spread(self, lo: int, hi: int, amount: Fraction) -> None:
        """Add ``amount``, accrued evenly over ``[lo, hi]``, to the periods in proportion to overlap."""
        for i in self.touching(lo, hi):
            if lo == hi:
                self.amount[i] += amount
            else:
                start, end = self.bounds[i]
                self.amount[i] += amount * (min(hi, end) - max(lo, start)) / (hi - lo)

    def flag(self, lo: int, hi: int, issue: dict[str, Any]) -> None:
        for i in self.touching(lo, hi):
            self.issues[i].append(issue)

    def count(self, points: Sequence[_Point]) -> None:
        for p in points:
            i = bisect_right(self.starts, p.us) - 1
            if 0 <= i and p.us < self.bounds[i][1]:
                self.readings[i] += 1

    def coverage(self, points: Sequence[_Point], kind: str) -> None:
        """``no_reading_before`` / ``no_reading_after`` where the metric's readings do not reach."""
        for i, (start, end) in enumerate(self.bounds):
            if not points or points[0].us > start:
                self.issues[i].append({"kind": "no_reading_before", "reading_kind": kind,
                                       "first": _iso(points[0].us) if points else None})
            if not points or points[-1].us < end:
                self.issues[i].append({"kind": "no_reading_after", "reading_kind": kind,
                                       "last": _iso(points[-1].us) if points else None})

    def rows(self, field: str, places: int, scale: int = 1) -> list[dict[str, Any]]:
        return [
            {"start": _iso(start), "end": _iso(end), field: decimal_text(self.amount[i] / scale, places),
             "readings": self.readings[i], "complete": not self.issues[i], "issues": self.issues[i]}
            for i, (start, end) in enumerate(self.bounds)
        ]


def _breaks(points: Sequence[_Point]) -> list[tuple[_Point, _Point]]:
    """Consecutive readings whose hash link is broken: readings in between are not proven absent."""
    return [(a, b) for a, b in pairwise(points) if b.prev != a.id]


def _flag_breaks(periods: _Periods, points: Sequence[_Point]) -> list[tuple[_Point, _Point]]:
    breaks = _breaks(points)
    for a, b in breaks:
        periods.flag(a.us, b.us, {"kind": "chain_break", "after_seq": a.seq, "seq": b.seq,
                                  "reason": "restart" if b.prev is None else "prev_mismatch",
                                  "from": _iso(a.us), "to": _iso(b.us)})
    return breaks


def _energy(query: ProductionQuery, points: Sequence[_Point]) -> tuple[_Periods, list[dict[str, Any]]]:
    periods = _Periods(query.periods())
    meter = [p for p in points if p.kind == "power_meter"]
    values = [_exact(p.data["energy_kwh"]) for p in meter]
    for (a, before), (b, after) in pairwise(zip(meter, values)):
        delta = after - before
        if delta < 0:
            delta = after
            periods.flag(a.us, b.us, {"kind": "meter_reset", "after_seq": a.seq, "seq": b.seq,
                                      "from_kwh": decimal_text(before, KWH_PLACES), "to_kwh": decimal_text(after, KWH_PLACES)})
        periods.spread(a.us, b.us, delta)
    _flag_breaks(periods, points)
    periods.coverage(meter, "power_meter")
    periods.count(meter)
    return periods, periods.rows("kwh", KWH_PLACES)


def _run_hours(query: ProductionQuery, points: Sequence[_Point]) -> tuple[_Periods, list[dict[str, Any]]]:
    periods = _Periods(query.periods())
    states = [p for p in points if p.kind == "equipment_state"]
    broken_at = sorted(b.seq for _, b in _flag_breaks(periods, points))
    for a, b in pairwise(states):
        unproven = bisect_right(broken_at, b.seq) > bisect_right(broken_at, a.seq)  # a break in (a.seq, b.seq]
        if a.data["running"] is True and not unproven:
            periods.spread(a.us, b.us, Fraction(b.us - a.us))
    periods.coverage(states, "equipment_state")
    periods.count(states)
    return periods, periods.rows("hours", HOURS_PLACES, _US_PER_HOUR)


def _total(periods: _Periods, rows: list[dict[str, Any]], field: str, places: int, scale: int = 1) -> dict[str, Any]:
    return {field: decimal_text(sum(periods.amount, Fraction(0)) / scale, places), "complete": all(r["complete"] for r in rows),
            "periods": rows}


def _ratio(numerator: Fraction, divisor: Fraction) -> str | None:
    return None if divisor == 0 else decimal_text(numerator / divisor, RATIO_PLACES)


def compute(query: ProductionQuery, readings: Sequence[SignedReading]) -> dict[str, Any]:
    """The ``result`` of a production answer: ``query``'s metric over ``readings`` (the device's
    readings, any kind, verified or not: this only computes). Deterministic: the same query and
    readings give the same JSON, whatever their order. Raises :class:`ValueError` for readings
    that cannot be one device's sequence."""
    return compute_payloads(query, [(r.id, r.payload) for r in readings])


def compute_payloads(query: ProductionQuery, payloads: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """:func:`compute` over ``(digest hex, payload)`` pairs of readings already checked against
    SPEC §1 (the ledger's stored readings), without parsing their envelopes again."""
    points = _points(payloads, query.device)
    if query.metric == "run_hours":
        periods, rows = _run_hours(query, points)
        return {"unit": "h", **_total(periods, rows, "hours", HOURS_PLACES, _US_PER_HOUR)}
    periods, rows = _energy(query, points)
    if query.metric == "energy":
        return {"unit": "kWh", **_total(periods, rows, "kwh", KWH_PLACES)}
    kwh = [Fraction(r["kwh"]) for r in rows]  # the rounded monthly values, as shown
    peak = max(range(12), key=lambda i: (kwh[i], -i))
    return {
        "unit": "kWh",
        "month": query.last.strftime("%Y-%m"),
        "kwh": rows[12]["kwh"],
        "peak_prior_month": rows[peak]["start"][:7],
        "peak_prior_kwh": rows[peak]["kwh"],
        "utilisation": _ratio(kwh[12], kwh[peak]),
        "year_ago_kwh": rows[0]["kwh"],
        "yoy_growth": _ratio(kwh[12] - kwh[0], kwh[0]),
        "complete": all(r["complete"] for r in rows),
        "periods": rows,
    }


# --- the verifier -----------------------------------------------------------------------------------


def _evidence(answer: Any) -> list[Any]:
    if not isinstance(answer, dict) or answer.get("format") != PRODUCTION_FORMAT:
        raise BundleFormatError(f"answer format must be {PRODUCTION_FORMAT}", field="format")
    evidence = answer.get("evidence")
    if not isinstance(evidence, list) or not all(isinstance(g, dict) for g in evidence):
        raise BundleFormatError("evidence must be a list of multiproof bundles", field="evidence")
    for i, group in enumerate(evidence):
        if group.get("format") != MULTIPROOF_FORMAT:
            raise BundleFormatError(f"evidence[{i}] must be a {MULTIPROOF_FORMAT} bundle", field=f"evidence[{i}].format")
    return evidence


def production_queries(answer: Any) -> list:  # list[AnchorQuery]
    """What to read from the chain for a production answer: the queries of each evidence bundle,
    in order (``ChainReader.chain_facts_many`` reads each checkpoint once)."""
    return [q for group in _evidence(answer) for q in chain_queries(group)]


def _first_difference(claimed: Any, computed: Any, path: str = "result") -> str:
    if isinstance(claimed, dict) and isinstance(computed, dict):
        for key in sorted(set(claimed) | set(computed)):
            if claimed.get(key, ...) != computed.get(key, ...):
                return _first_difference(claimed.get(key), computed.get(key), f"{path}.{key}")
    if isinstance(claimed, list) and isinstance(computed, list) and len(claimed) == len(computed):
        for i, (a, b) in enumerate(zip(claimed, computed)):
            if a != b:
                return _first_difference(a, b, f"{path}[{i}]")
    return f"{path}: the answer says {claimed!r}, the readings give {computed!r}"


def verify_production(answer: Any, facts: Sequence[ChainFacts]) -> VerificationReport:
    """Check a production answer against ``facts[i]`` read for ``production_queries(answer)[i]``.

    ``format``: the answer, its query and its evidence are well formed; ``evidence``: every
    multiproof bundle verifies completely (:func:`attestation.bundle.verify_multiproof_bundle`:
    signatures, digests, leaves, multiproof, chain, ``rootOf``, link, device keys); ``readings``:
    the evidence is one device's sequence, no reading twice; ``computation``: :func:`compute`
    over the evidence's readings gives exactly the answer's ``result``. Pure; never raises on bad
    input.
    """
    report = VerificationReport(expected=PRODUCTION_CHECKS)
    parsed: dict[str, Any] = {}

    def fmt() -> str:
        evidence = _evidence(answer)
        query = parsed["query"] = ProductionQuery.from_dict(answer.get("query"))
        for i, group in enumerate(evidence):
            if group.get("device") != query.device:
                raise BundleFormatError(f"evidence[{i}] is not a bundle of device {query.device}", field=f"evidence[{i}].device")
        counts = [len(g.get("readings")) if isinstance(g.get("readings"), list) else 0 for g in evidence]
        if sum(counts) != len(facts):
            raise BundleFormatError(f"{len(facts)} chain facts for {sum(counts)} readings: read one per chain_queries(answer)")
        if not isinstance(answer.get("result"), dict):
            raise BundleFormatError("the answer has no result", field="result")
        parsed["groups"] = list(zip(evidence, counts))
        start, end = query.window
        return (f"{PRODUCTION_FORMAT}: {query.metric} of device {query.device}, {len(query.periods())} {query.period}s "
                f"from {_iso(_us(start))} to {_iso(_us(end))}, {sum(counts)} readings in {len(evidence)} batches")

    if not report.run("format", fmt):
        return report.skip_rest()
    query: ProductionQuery = parsed["query"]

    def evidence() -> str:
        failures, offset = [], 0
        for i, (group, count) in enumerate(parsed["groups"]):
            sub = verify_multiproof_bundle(group, facts[offset : offset + count])
            offset += count
            if not sub.ok:
                first = next(c for c in sub.checks if not c.ok)
                failures.append(f"evidence[{i}] (batch {group.get('anchor', {}).get('index')}) fails {', '.join(sub.failed)}: {first.detail}")
        if failures:
            more = f"; and {len(failures) - 3} more" if len(failures) > 3 else ""
            raise ValueError(f"{len(failures)} of {len(parsed['groups'])} multiproof bundles fail: " + "; ".join(failures[:3]) + more)
        return f"all {len(parsed['groups'])} multiproof bundles verify against rootOf on chain, with the device keys on chain"

    def readings() -> str:
        parsed["readings"] = found = [parse_reading(e["reading"]) for g, _ in parsed["groups"] for e in g["readings"]]
        if len({r.id for r in found}) != len(found):
            raise ValueError("a reading appears twice in the evidence")
        points = _points([(r.id, r.payload) for r in found], query.device)
        breaks = _breaks(points)
        seqs = f"seq {points[0].seq} to {points[-1].seq}" if points else "no readings"
        return f"{len(points)} readings of {query.device} ({seqs}), {len(breaks)} breaks in the hash chain"

    def computation() -> str:
        result = compute(query, parsed["readings"])
        if result != answer["result"]:
            raise ValueError(_first_difference(answer["result"], result))
        headline = {"energy": "kwh", "run_hours": "hours", "utilisation": "utilisation"}[query.metric]
        state = "complete" if result["complete"] else "INCOMPLETE (see each period's issues)"
        return f"recomputed from the proven readings: {headline} {result[headline]}, {state}"

    report.run("evidence", evidence)
    if report.run("readings", readings):
        report.run("computation", computation)
    else:
        report.skip_rest()
    return report
