"""The exact rules of the eSource draft, record by record (no server): what is taken, and what
goes to review with which reason."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_admsc import terminology as term
from fhir_admsc.esource.draft import draft_study
from fhir_admsc.esource.hospital import Records
from fhir_admsc.mappings.context import concept
from fhir_admsc.study import Study

PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1968-03-14"}
SUBJECT = {"reference": "Patient/p1"}


def drafted(study: Study, *records: dict[str, Any]) -> tuple[dict, list[dict[str, str]]]:
    resources = [dict(r, id=f"r{i}", subject=SUBJECT) for i, r in enumerate(records)]
    draft = draft_study(study, [Records("P01", PATIENT, resources)], "https://ehr.test/fhir", 3)
    return draft.tables, [r for r in draft.review if r["participant_id"] == "P01"]


def pain(code: dict[str, Any], day: str, value: int = 6) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": code,
        "effectiveDateTime": day,
        "valueInteger": value,
    }


LOINC_PAIN = {"coding": [{"system": term.LOINC, "code": "72514-3"}]}


def test_a_code_two_measures_share_is_not_taken(demo_study: Study) -> None:
    tables, review = drafted(demo_study, pain(LOINC_PAIN, "2017-06-05"))
    assert tables["outcomes.csv"] == []
    assert [r["reason"] for r in review] == [
        "the code stands for several study measures (nprs_average, nprs_worst)"
    ]


def test_two_values_of_one_measure_in_one_window_are_both_referred(demo_study: Study) -> None:
    average = concept(term.OUTCOME_MEASURES[term.NPRS_AVERAGE].concept)
    tables, review = drafted(
        demo_study, pain(average, "2017-06-05", 6), pain(average, "2017-06-06", 7)
    )
    assert tables["outcomes.csv"] == []
    assert [r["reason"] for r in review] == ["nprs_average has several values at baseline"] * 2
    tables, review = drafted(
        demo_study, pain(average, "2017-06-05", 6), pain(average, "2017-06-06", 6)
    )
    assert [(r["visit"], r["value"]) for r in tables["outcomes.csv"]] == [("baseline", "6")]


@pytest.mark.parametrize(
    ("day", "reason"),
    [
        ("2017-06-20", "the date is outside every visit window (±3 days)"),
        ("2017-06", "the record's date is not a full date"),
    ],
)
def test_a_date_in_no_window_is_referred(demo_study: Study, day: str, reason: str) -> None:
    average = concept(term.OUTCOME_MEASURES[term.NPRS_AVERAGE].concept)
    tables, review = drafted(demo_study, pain(average, day))
    assert tables["outcomes.csv"] == [] and [r["reason"] for r in review] == [reason]


def test_a_dispense_says_taking_with_its_daily_dose(demo_study: Study) -> None:
    dispense = {
        "resourceType": "MedicationDispense",
        "status": "completed",
        "medicationCodeableConcept": {"coding": [{"system": term.RXNORM, "code": "25480"}]},
        "whenHandedOver": "2018-07-04T10:30:00+10:00",
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": 3, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [
                    {"doseQuantity": {"value": 300, "system": term.UCUM, "code": "mg"}}
                ],
            }
        ],
    }
    tables, review = drafted(demo_study, dispense)
    assert tables["medications.csv"] == [
        {
            "participant_id": "P01",
            "visit": "month12",
            "medication": "gabapentin",
            "rxnorm": "25480",
            "category": "neuropathic",
            "daily_dose": "900",
            "dose_unit": "mg",
            "status": "taking",
        }
    ]
    assert review == []
