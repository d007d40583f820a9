"""canonical_json's fast path (orjson, guarded by _fast_path) must write exactly what rfc8785 writes."""

from __future__ import annotations

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from attestation.encoding import _AS_INTS, _NO, _fast_path, canonical_json

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.floats(min_value=1e-4, max_value=1e16, exclude_max=True).filter(lambda x: not x.is_integer())
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1).map(float)
    | st.text()
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=1000, deadline=None)
@given(_values)
def test_fast_path_matches_rfc8785(value) -> None:
    try:
        expected = rfc8785.dumps(value)
    except Exception as exc:  # noqa: BLE001 - what rfc8785 refuses, canonical_json refuses too
        with pytest.raises(type(exc)):
            canonical_json(value)
        return
    assert canonical_json(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        {"weight_kg": 1250.5, "stable": True, "note": "tab\there \"quoted\" \\ \u0001 é 漢 \u2028"},
        {"b": [1, 2.25, None], "a": {"z": 0.0001, "y": 123456789012345.6}},
        {"small": 0.00012345, "negative": -98.76},
    ],
)
def test_typical_payloads_take_the_fast_path(value) -> None:
    assert _fast_path(value) != _NO
    assert canonical_json(value) == rfc8785.dumps(value)


@pytest.mark.parametrize(
    "value",
    [
        {"x": 1e-7},  # JCS 1e-7, repr 1e-07
        {"x": 1e16 + 2},  # JCS 10000000000000002, repr 1.0000000000000002e+16
        {"x": 2**53},  # beyond exact integers: rfc8785 refuses
        {"\u00e9": 1, "z": 2},  # non-ASCII keys sort by UTF-16 code units
        {"\U0001f600": 1, "\uff61": 2},  # code-point order differs from UTF-16 order here
    ],
)
def test_everything_else_goes_through_rfc8785(value) -> None:
    assert _fast_path(value) == _NO
    try:
        expected = rfc8785.dumps(value)
    except Exception as exc:  # noqa: BLE001
        with pytest.raises(type(exc)):
            canonical_json(value)
        return
    assert canonical_json(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        {"x": 1.0, "y": [-0.0, 21.0, 2.5]},  # JCS writes 1, 0, 21; a JSON encoder 1.0, -0.0, 21.0
        {"weight_kg": 25000.0, "nested": {"n": float(2**53 - 1)}},
    ],
)
def test_integral_floats_take_the_fast_path_as_integers(value) -> None:
    assert _fast_path(value) == _AS_INTS
    assert canonical_json(value) == rfc8785.dumps(value)


def test_a_lone_surrogate_is_refused_as_rfc8785_refuses_it() -> None:
    with pytest.raises(Exception) as expected:
        rfc8785.dumps({"x": "\ud800"})
    with pytest.raises(type(expected.value)):
        canonical_json({"x": "\ud800"})
