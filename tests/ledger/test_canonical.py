"""The canonical-JSON fast path must equal RFC 8785 byte for byte wherever it is taken."""

from __future__ import annotations

import hashlib
import math
from typing import Any

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from chatledger.errors import InvalidInput
from chatledger.events import Actor, Entity, Event
from chatledger.ledger.canonical import canonical_json, canonical_json_checked, fast_path_ok
from chatledger.ledger.entry import PreparedEvent, utc_timestamp

json_scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1) | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=30,
)
json_with_floats = st.recursive(
    json_scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_fast_path_equals_rfc8785(value: object) -> None:
    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        with pytest.raises(InvalidInput):
            canonical_json(value)
        return
    assert canonical_json(value) == expected


@settings(max_examples=400, deadline=None)
@given(json_with_floats)
def test_values_with_floats_encode_as_rfc8785(value: object) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@settings(max_examples=2000, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_float_the_fast_path_takes_prints_as_rfc8785(value: float) -> None:
    if fast_path_ok(value):
        assert canonical_json(value) == rfc8785.dumps(value)
        assert canonical_json([value, {"k": value}]) == rfc8785.dumps([value, {"k": value}])


@settings(max_examples=1000, deadline=None)
@given(
    st.floats(min_value=1e-4, max_value=1e16, exclude_max=True),
    st.integers(min_value=-12, max_value=15),
)
def test_ordinary_floats_take_the_fast_path(value: float, shift: int) -> None:
    for x in (value, -value, value * 10.0**shift):
        if fast_path_ok(x):
            assert canonical_json(x) == rfc8785.dumps(x)
        else:  # outside the range, or integral: the reference prints it
            assert abs(x) < 1e-4 or abs(x) >= 1e16 or x == int(x)


@pytest.mark.parametrize("value", [0.1, 0.87, 42.5, 1e-4 + 1e-9, 123456789.25, -3.25])
def test_scores_and_latencies_take_the_fast_path(value: float) -> None:
    assert fast_path_ok({"score": value, "latency_ms": value})
    assert canonical_json({"v": value}) == rfc8785.dumps({"v": value})


@pytest.mark.parametrize(
    "value", [1.0, -0.0, 0.0, 1e-07, 3.5e-06, 1e21, 123456789012345680000.0, 2.0**60, 1e16]
)
def test_float_edge_cases_use_the_reference(value: float) -> None:
    assert not fast_path_ok({"v": value})
    assert canonical_json({"v": value}) == rfc8785.dumps({"v": value})


@pytest.mark.parametrize("value", [0.0, -0.0, 1.0, 42.0, -7.0, 2.0**52])
def test_integral_floats_take_the_fast_path_as_integers(value: float) -> None:
    document = {"score": value, "nested": [value, {"v": value}], "text": "x"}
    encoded = canonical_json_checked(document)
    assert encoded.fast
    assert encoded.bytes == rfc8785.dumps(document)
    assert document["score"] is value  # the caller's value is left as it was


@pytest.mark.parametrize("value", [2.0**53, 2.0**60, -(2.0**70)])
def test_integral_floats_beyond_2_53_use_the_reference(value: float) -> None:
    encoded = canonical_json_checked({"v": value})
    assert not encoded.fast
    assert encoded.bytes == rfc8785.dumps({"v": value})


def test_keys_outside_the_bmp_sort_by_utf16() -> None:
    value = {"\U0001f600": 1, "\ufb01": 2}
    assert not fast_path_ok(value)
    assert canonical_json(value) == rfc8785.dumps(value)


@pytest.mark.parametrize(
    "bad", [math.nan, math.inf, 2**53, {"a": "\ud800"}, {1: "non-string key"}, object()]
)
def test_uncanonicalisable_values_are_refused(bad: object) -> None:
    with pytest.raises(InvalidInput):
        canonical_json(bad)


def test_deep_nesting_is_refused() -> None:
    value: object = 1
    for _ in range(100):
        value = [value]
    with pytest.raises(InvalidInput, match="nested too deeply"):
        canonical_json(value)


@settings(max_examples=300, deadline=None)
@given(
    attributes=st.dictionaries(st.text(max_size=8), json_with_floats, max_size=5),
    payload=st.none() | st.dictionaries(st.text(max_size=8), json_values, max_size=3),
    subject=st.none() | st.just("subj_" + "ab" * 20),
    seq=st.integers(min_value=0, max_value=2**53 - 1),
)
def test_spliced_envelope_is_the_rfc8785_encoding_of_the_entry(
    attributes: dict[str, Any], payload: dict[str, Any] | None, subject: str | None, seq: int
) -> None:
    """The writer splices seq, prev and ts into bytes prepared earlier: the result must be
    exactly RFC 8785 of the whole entry, on the fast path and off it."""
    event = Event(
        "message.answer",
        Actor("user", "u-1", "agent"),
        Entity("message", "m-1"),
        subject=None,
        attributes=attributes,
        payload=payload,
    )
    try:
        prepared = PreparedEvent.prepare(event, subject, max_payload_bytes=1 << 20)
    except InvalidInput:
        return  # a value RFC 8785 refuses is refused before anything is spliced
    ts = utc_timestamp()
    prev = hashlib.sha256(str(seq).encode()).hexdigest()
    body = prepared.canonical_envelope(seq, ts, prev)
    assert body == rfc8785.dumps(prepared.envelope(seq, ts, prev))
    assert orjson.loads(body)["seq"] == seq
