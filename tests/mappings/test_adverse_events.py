"""Adverse events: one AdverseEvent per row, suspect entity pointing at the Procedure."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_admsc.mappings import adverse_events as family
from fhir_admsc.study import AdverseEvent, Procedure
from tests.mappings.helpers import CTX, get, ref, small_study

HARVEST = Procedure(
    participant_id="P1", procedure_id="H1", type="harvest", performed_on="2020-01-03"
)
FLARE = AdverseEvent(
    participant_id="P1",
    event_id="AE1",
    term="low back pain flare",
    snomed="279039007",
    onset_on="2020-02-02",
    resolved_on="2020-02-09",
    severity="moderate",
    serious=False,
    outcome="resolved",
    causality="probable",
    suspected_procedure_id="H1",
    expected=True,
    action_taken="analgesia",
)
UNRELATED = AdverseEvent(
    participant_id="P1",
    event_id="AE2",
    term="fall",
    onset_on="2020-05-01",
    severity="severe",
    serious=True,
    outcome="recovering",
    causality="unrelated",
)


def mapped(row: AdverseEvent) -> dict[str, Any]:
    (resource,) = family.to_fhir(small_study(procedures=[HARVEST], adverse_events=[row]), CTX)
    return resource


@pytest.mark.parametrize(
    ("row", "path", "expected"),
    [
        pytest.param(FLARE, "actuality", "actual", id="actuality"),
        pytest.param(FLARE, "identifier.value", "S1/AE1", id="identifier-0..1"),
        pytest.param(FLARE, "event.text", "low back pain flare", id="term"),
        pytest.param(FLARE, "event.coding[0].code", "279039007", id="snomed"),
        pytest.param(FLARE, "date", "2020-02-02", id="onset"),
        pytest.param(
            FLARE, "extension[url=ae-resolved-date].valueDate", "2020-02-09", id="resolved"
        ),
        pytest.param(FLARE, "severity.coding[0].code", "moderate", id="severity"),
        pytest.param(FLARE, "seriousness.coding[0].code", "Non-serious", id="not-serious"),
        pytest.param(UNRELATED, "seriousness.coding[0].code", "Serious", id="serious"),
        pytest.param(FLARE, "outcome.coding[0].code", "resolved", id="outcome"),
        pytest.param(
            FLARE,
            "extension[url=ae-causality].valueCodeableConcept.coding[0].code",
            "probable",
            id="causality",
        ),
        pytest.param(
            FLARE,
            "suspectEntity[0].causality[0].assessment.coding[0].code",
            "Probably-Likely",
            id="who-umc",
        ),
        pytest.param(
            FLARE,
            "suspectEntity[0].instance.reference",
            ref("Procedure", "H1"),
            id="suspect-procedure",
        ),
        pytest.param(FLARE, "extension[url=ae-expected].valueBoolean", True, id="expected"),
        pytest.param(FLARE, "extension[url=ae-action-taken].valueString", "analgesia", id="action"),
        pytest.param(FLARE, "study[0].reference", ref("ResearchStudy", "S1"), id="study"),
        pytest.param(
            UNRELATED,
            "extension[url=ae-causality].valueCodeableConcept.coding",
            [
                {
                    "system": "https://fhir-admsc.org/fhir/CodeSystem/admsc",
                    "code": "unrelated",
                    "display": "Not related",
                }
            ],
            id="unrelated-own-only",
        ),
    ],
)
def test_adverse_event_mapping(row: AdverseEvent, path: str, expected: Any) -> None:
    assert get(mapped(row), path) == expected


def test_no_suspect_means_no_suspect_entity() -> None:
    r = mapped(UNRELATED)
    assert "suspectEntity" not in r
    assert "event" in r and "coding" not in r["event"]
