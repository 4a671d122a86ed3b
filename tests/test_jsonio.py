"""The compact JSON writer: orjson's text is the standard library's for FHIR content (floats
below 1e-4 aside, which are the same numbers), and what orjson cannot encode exactly goes to json."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_admsc import jsonio


def standard(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def tiny(value: Any) -> bool:
    """Whether ``value`` holds a float written with a negative exponent by Python (below 1e-4)."""
    if isinstance(value, float):
        return value != 0 and abs(value) < 1e-4
    if isinstance(value, dict):
        return any(tiny(v) for v in value.values())
    if isinstance(value, list):
        return any(tiny(v) for v in value)
    return False


leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def test_orjson_is_the_encoder_under_test() -> None:
    assert jsonio.orjson is not None  # the test extra installs it


@settings(max_examples=400, deadline=None)
@given(values)
def test_text_is_the_standard_librarys(value: Any) -> None:
    text = jsonio.compact(value)
    if tiny(value):
        assert json.loads(text) == value  # the same numbers, written without an exponent
    else:
        assert text == standard(value)


def test_what_orjson_cannot_write_exactly_goes_to_json() -> None:
    value = {"valueInteger": 2**64 + 1, "text": "é\u2028\x00", "lone": "\ud800"}
    assert jsonio.compact(value) == standard(value)


def test_without_orjson_the_standard_library_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonio, "orjson", None)
    value = {"a": [1.5e-05, math.pi, "ü", None, True]}
    assert jsonio.compact(value) == standard(value)
