"""Study & subjects mapping: ResearchStudy, Organization, Location, Patient, ResearchSubject,
Condition, Encounter."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_admsc import terminology as term
from fhir_admsc.mappings import study as family
from fhir_admsc.study import Participant, StudyInfo
from tests.mappings.helpers import CTX, by_type, get, ref, small_study

FULL_INFO = StudyInfo(
    study_id="S1",
    title="T",
    registry_id="ACTRN1",
    status="completed",
    sponsor="Sponsor Ltd",
    start="2020-01-01",
    end="2021-06-30",
    arm={"name": "arm-a", "description": "10M cells"},
    sites=[{"site_id": "A", "name": "Site A"}],
)
WITHDRAWN = Participant(
    participant_id="P1",
    sex="male",
    birth_year=1970,
    site_id="A",
    enrolled_on="2020-01-01",
    disc_level="L5-S1",
    symptom_months=24,
    status="withdrawn",
    withdrawn_on="2020-03-01",
    withdrawal_reason="moved",
)


def mapped(**tables: Any) -> list[dict[str, Any]]:
    return list(family.to_fhir(small_study(**tables), CTX))


@pytest.mark.parametrize(
    ("resource_type", "path", "expected"),
    [
        pytest.param("ResearchStudy", "identifier[0].value", "S1", id="study-identifier"),
        pytest.param("ResearchStudy", "identifier[1].value", "ACTRN1", id="registry-id"),
        pytest.param("ResearchStudy", "status", "completed", id="study-status"),
        pytest.param("ResearchStudy", "period.end", "2021-06-30", id="study-period"),
        pytest.param("ResearchStudy", "arm[0].description", "10M cells", id="arm"),
        pytest.param(
            "ResearchStudy", "sponsor.reference", ref("Organization", "sponsor"), id="sponsor-ref"
        ),
        pytest.param("ResearchStudy", "site[0].reference", ref("Location", "A"), id="site-ref"),
        pytest.param("Organization", "name", "Sponsor Ltd", id="sponsor-name"),
        pytest.param("Location", "identifier[0].value", "S1/A", id="site-identifier"),
        pytest.param("Patient", "gender", "male", id="gender"),
        pytest.param("Patient", "birthDate", "1970", id="birth-year-only"),
        pytest.param("Patient", "identifier[0].value", "S1/P1", id="patient-identifier"),
        pytest.param("ResearchSubject", "status", "withdrawn", id="subject-status"),
        pytest.param("ResearchSubject", "period.end", "2020-03-01", id="withdrawn-on"),
        pytest.param(
            "ResearchSubject",
            "extension[url=withdrawal-reason].valueString",
            "moved",
            id="withdrawal-reason",
        ),
        pytest.param(
            "ResearchSubject",
            "extension[url=study-site].valueReference.reference",
            ref("Location", "A"),
            id="subject-site",
        ),
        pytest.param(
            "ResearchSubject", "study.reference", ref("ResearchStudy", "S1"), id="subject-study"
        ),
        pytest.param("ResearchSubject", "assignedArm", "arm-a", id="subject-arm"),
        pytest.param("Condition", "code.coding[1].code", "279039007", id="low-back-pain"),
        pytest.param("Condition", "bodySite[0].coding[0].code", "L5-S1", id="index-disc"),
        pytest.param(
            "Condition",
            "extension[url=symptom-duration].valueDuration.value",
            24,
            id="symptom-months",
        ),
        pytest.param(
            "Condition",
            "extension[url=research-study].valueReference.reference",
            ref("ResearchStudy", "S1"),
            id="condition-study-link",
        ),
    ],
)
def test_study_and_subject_mapping(resource_type: str, path: str, expected: Any) -> None:
    resources = mapped(info=FULL_INFO, participants=[WITHDRAWN])
    (resource,) = by_type(resources, resource_type)
    assert get(resource, path) == expected
    assert resource["meta"]["profile"][0].startswith(term.CANONICAL_BASE)


def test_study_link_follows_what_r4_allows() -> None:
    """workflow-researchStudy where R4 allows it (Encounter); the project's own research-study
    extension on a Condition; none on a Patient (tied through its ResearchSubject)."""
    resources = mapped()
    urls = {r["resourceType"]: [e["url"] for e in r.get("extension", [])] for r in resources}
    assert urls["Encounter"] == ["http://hl7.org/fhir/StructureDefinition/workflow-researchStudy"]
    assert urls["Condition"] == ["https://fhir-admsc.org/fhir/StructureDefinition/research-study"]
    assert urls["Patient"] == []


def test_optional_study_fields_leave_no_trace() -> None:
    resources = mapped()
    assert {r["resourceType"] for r in resources} == {
        "ResearchStudy",
        "Patient",
        "ResearchSubject",
        "Condition",
        "Encounter",
    }
    study = by_type(resources, "ResearchStudy")[0]
    assert "sponsor" not in study and "site" not in study and "period" not in study
    assert "birthDate" not in by_type(resources, "Patient")[0]
    assert "extension" not in by_type(resources, "ResearchSubject")[0]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("type[0].coding[0].code", "month12", id="visit-code"),
        pytest.param("period.start", "2021-01-05", id="visit-date"),
        pytest.param("status", "finished", id="status"),
        pytest.param("subject.reference", ref("Patient", "P1"), id="subject"),
        pytest.param("identifier[0].value", "S1/P1/month12", id="identifier"),
    ],
)
def test_each_visit_is_an_encounter(path: str, expected: Any) -> None:
    encounters = by_type(mapped(), "Encounter")
    assert len(encounters) == 2
    assert get(encounters[1], path) == expected
