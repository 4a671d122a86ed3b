"""Outcome observations: one survey Observation per outcomes.csv row, coded and typed per measure."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_admsc import terminology as term
from fhir_admsc.mappings import observations as family
from fhir_admsc.study import Outcome
from tests.mappings.helpers import CTX, get, ref, small_study


def mapped_one(measure: str, value: float) -> dict[str, Any]:
    row = Outcome(participant_id="P1", visit="month12", measure=measure, value=value)
    (resource,) = family.to_fhir(small_study(outcomes=[row]), CTX)
    return resource


@pytest.mark.parametrize(
    ("measure", "value", "value_path", "expected", "standard"),
    [
        pytest.param("nprs_average", 3, "valueInteger", 3, "72514-3", id="nprs-average"),
        pytest.param("nprs_worst", 8, "valueInteger", 8, "72514-3", id="nprs-worst"),
        pytest.param("odi", 42.5, "valueQuantity.value", 42.5, "97909-6", id="odi"),
        pytest.param("eq5d_mobility", 2, "valueInteger", 2, "301438001", id="eq5d-mobility"),
        pytest.param("eq5d_selfcare", 1, "valueInteger", 1, "284773001", id="eq5d-selfcare"),
        pytest.param("eq5d_activities", 3, "valueInteger", 3, None, id="eq5d-activities"),
        pytest.param("eq5d_pain", 2, "valueInteger", 2, None, id="eq5d-pain"),
        pytest.param("eq5d_anxiety", 1, "valueInteger", 1, None, id="eq5d-anxiety"),
        pytest.param("eq5d_vas", 65, "valueInteger", 65, "736535009", id="eq5d-vas"),
        pytest.param("standing_min", 30, "valueQuantity.code", "min", None, id="standing"),
        pytest.param("sitting_min", 12.5, "valueQuantity.value", 12.5, None, id="sitting"),
        pytest.param("walking_min", 45, "valueQuantity.value", 45, None, id="walking"),
        pytest.param("work_capacity_pct", 80, "valueQuantity.code", "%", None, id="work"),
    ],
)
def test_each_measure(
    measure: str, value: float, value_path: str, expected: Any, standard: str | None
) -> None:
    r = mapped_one(measure, value)
    assert get(r, value_path) == expected
    codes = [c["code"] for c in r["code"]["coding"]]
    assert codes[0] == term.OUTCOME_MEASURES[measure].concept.code
    assert codes[1:] == ([standard] if standard else [])
    assert r["meta"]["profile"] == [term.profile_url(term.OUTCOME_MEASURES[measure].profile)]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("category[0].coding[0].code", "survey", id="category"),
        pytest.param("status", "final", id="status"),
        pytest.param("subject.reference", ref("Patient", "P1"), id="subject"),
        pytest.param("encounter.reference", ref("Encounter", "P1/month12"), id="visit-encounter"),
        pytest.param("effectiveDateTime", "2021-01-05", id="visit-date"),
        pytest.param("identifier[0].value", "S1/P1/month12/odi", id="identifier"),
        pytest.param(
            "extension[url=workflow-researchStudy].valueReference.reference",
            ref("ResearchStudy", "S1"),
            id="study-link",
        ),
    ],
)
def test_common_elements(path: str, expected: Any) -> None:
    assert get(mapped_one("odi", 40), path) == expected
