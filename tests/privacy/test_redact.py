"""Redaction: the trigger-guided scan must redact exactly what the full pattern would."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatledger.privacy.redact import (
    _SECRET_VALUE_RE,
    REDACTED,
    _label,
    _redact_text,
    redact,
)

# Pieces that make secrets, near-secrets and ordinary text, including characters whose
# case-folding is unusual (long s, dotless and dotted i, sharp s, Kelvin sign).
FRAGMENTS = [
    "Bearer ",
    "basic ",
    "BASIC\t",
    "abcdefghijklmnopqrstuvwxyz0123",
    "ABCDEFGHIJKLMNOP",
    "-----BEGIN RSA PRIVATE KEY-----",
    "\nMIIEpAIBAAKCAQEA\n",
    "-----END RSA PRIVATE KEY-----",
    "eyJhbGciOiJIUzI1NiJ9",
    ".",
    "sk-",
    "pk-",
    "rk-",
    "clk_",
    "cls_",
    "_",
    "AKIA",
    "ghp_",
    "gh",
    "xoxb-",
    "password",
    "pass",
    "passage",
    "PWD",
    "secret",
    "api_key",
    "apikey",
    "API-KEY",
    "token",
    "=",
    ": ",
    " ",
    ",",
    "'",
    "through the high road ",
    "pa\u017f\u017fword",  # long s: re matches it case-insensitively as "s"
    "ap\u0131_key",  # dotless i
    "\u0130",  # dotted capital I: folds to two characters
    "\u00df",  # sharp s: folds to "ss"
    "to\u212aen",  # Kelvin sign: folds to "k"
    "\u00e9t\u00e9 ",
]


def reference(text: str) -> str:
    return _SECRET_VALUE_RE.sub(_label, text)


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=14))
def test_same_result_as_the_full_pattern(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert _redact_text(text) == reference(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80), st.sampled_from(FRAGMENTS), st.text(max_size=80))
def test_same_result_on_arbitrary_text(before: str, middle: str, after: str) -> None:
    text = before + middle + after
    assert _redact_text(text) == reference(text)


def test_known_secret_shapes_are_redacted() -> None:
    text = (
        "header Authorization: Bearer abcdefghijklmnop1234, key sk-abcdefghijklmnopqrst "
        "and password=hunter2hunter2; ghp_" + "a" * 36 + " AKIAABCDEFGHIJKLMNOP end"
    )
    out = _redact_text(text)
    for secret in ("abcdefghijklmnop1234", "sk-abcdef", "hunter2", "ghp_aaa", "AKIAABCD"):
        assert secret not in out
    assert out.startswith("header Authorization: [REDACTED:bearer]")
    assert out.endswith(" end")


def test_everyday_words_that_look_like_triggers_stay() -> None:
    text = "The passages say the basic plan passes tokens through the API gateway."
    assert _redact_text(text) is text


def test_unchanged_values_come_back_as_the_same_objects() -> None:
    value: dict[str, Any] = {"a": "plain text that is long enough", "n": 3, "l": [1, "x"]}
    assert redact(value) is value
    assert redact(value["l"]) is value["l"]


def test_secret_keys_and_nested_values_are_replaced_in_a_copy() -> None:
    value: dict[str, Any] = {
        "api_key": "abc",
        "empty_token": "",
        "nested": ({"note": "token: abcdefgh1234"},),
        "keep": "model",
    }
    out = redact(value)
    assert out is not value
    assert out["api_key"] == REDACTED
    assert out["empty_token"] == ""
    assert out["nested"] == [{"note": "[REDACTED:pair]"}]
    assert out["keep"] == "model"
    assert value["api_key"] == "abc"  # the input is left alone


@pytest.mark.parametrize("text", ["pwd=abcd", "PWD=Bearer ", "token:wxyz"])
def test_the_shortest_secrets_are_redacted(text: str) -> None:
    assert _redact_text(text) == reference(text) != text
