"""Where FHIRPath says "empty" and the HL7 validator says false, base invariants follow the HL7
validator: its string tests (contains, startsWith, endsWith) of nothing are false, so bdl-8 holds
for an entry without a fullUrl and ref-1 for a Reference with only a display. dom-3 is answered
natively (the FHIRPath engine cannot run it)."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_admsc.validation.fhirpath import evaluate, holds
from fhir_admsc.validation.native import native

BDL_8 = "fullUrl.contains('/_history/').not()"
REF_1 = (
    "reference.startsWith('#').not() or (reference.substring(1).trace('url') in "
    "%rootResource.contained.id.trace('ids'))"
)
DOM_3 = (
    "contained.where((('#'+id in (%resource.descendants().reference | "
    "%resource.descendants().as(canonical) | %resource.descendants().as(uri) | "
    "%resource.descendants().as(url))) or descendants().where(reference = '#').exists() or "
    "descendants().where(as(canonical) = '#').exists() or "
    "descendants().where(as(canonical) = '#').exists()).not()).trace('unmatched', id).empty()"
)


@pytest.mark.parametrize(
    "expression, node, resource, expected",
    [
        pytest.param(BDL_8, {"resource": {}}, {}, True, id="bdl-8-no-fullurl"),
        pytest.param(BDL_8, {"fullUrl": "urn:uuid:1"}, {}, True, id="bdl-8-fullurl"),
        pytest.param(BDL_8, {"fullUrl": "http://x/P/1/_history/2"}, {}, False, id="bdl-8-version"),
        pytest.param(REF_1, {"display": "a vitamin"}, {}, True, id="ref-1-display-only"),
        pytest.param(REF_1, {"reference": "#a"}, {"contained": [{"id": "a"}]}, True, id="ref-1-ok"),
        pytest.param(
            REF_1, {"reference": "#b"}, {"contained": [{"id": "a"}]}, False, id="ref-1-bad"
        ),
        pytest.param("name.family.endsWith('x')", {"name": []}, {}, False, id="endswith-nothing"),
    ],
)
def test_string_tests_of_nothing_are_false(
    expression: str, node: Any, resource: dict, expected: bool
) -> None:
    assert evaluate(expression, node, resource) is expected
    assert holds(expression, node, resource) is expected


def _with_contained(reference: str | None, inner: dict | None = None) -> dict:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "contained": [{"resourceType": "Patient", "id": "p", **(inner or {})}],
    }
    if reference is not None:
        resource["subject"] = {"reference": reference}
    return resource


@pytest.mark.parametrize(
    "resource, expected",
    [
        pytest.param(_with_contained("#p"), True, id="pointed-to"),
        pytest.param(_with_contained(None), False, id="not-pointed-to"),
        pytest.param(_with_contained("#q"), False, id="pointed-elsewhere"),
        pytest.param(
            _with_contained(None, {"link": [{"other": {"reference": "#"}}]}),
            True,
            id="points-to-its-container",
        ),
        pytest.param({"resourceType": "Observation"}, True, id="nothing-contained"),
    ],
)
def test_dom_3(resource: dict, expected: bool) -> None:
    answer = native(DOM_3)
    assert answer is not None
    assert answer(resource, resource) is expected
