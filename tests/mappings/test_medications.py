"""Analgesic use: one MedicationStatement per medications.csv row."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_admsc.mappings import medications as family
from fhir_admsc.study import Medication
from tests.mappings.helpers import CTX, get, ref, small_study

FULL = Medication(
    participant_id="P1",
    visit="baseline",
    medication="paracetamol 1 g",
    rxnorm="161",
    category="paracetamol",
    daily_dose=3000,
    dose_unit="mg",
    status="taking",
)
BARE = Medication(
    participant_id="P1", visit="month12", medication="heat rub", category="other", status="stopped"
)


def mapped(row: Medication) -> dict[str, Any]:
    (resource,) = family.to_fhir(small_study(medications=[row]), CTX)
    return resource


@pytest.mark.parametrize(
    ("row", "path", "expected"),
    [
        pytest.param(FULL, "status", "active", id="taking-is-active"),
        pytest.param(BARE, "status", "stopped", id="stopped"),
        pytest.param(FULL, "medicationCodeableConcept.text", "paracetamol 1 g", id="name"),
        pytest.param(FULL, "medicationCodeableConcept.coding[0].code", "161", id="rxnorm"),
        pytest.param(
            FULL,
            "extension[url=analgesic-category].valueCodeableConcept.coding[0].code",
            "paracetamol",
            id="category",
        ),
        pytest.param(FULL, "dosage[0].doseAndRate[0].rateRatio.numerator.value", 3000, id="dose"),
        pytest.param(FULL, "dosage[0].doseAndRate[0].rateRatio.numerator.code", "mg", id="unit"),
        pytest.param(
            FULL, "dosage[0].doseAndRate[0].rateRatio.denominator.code", "d", id="per-day"
        ),
        pytest.param(FULL, "context.reference", ref("Encounter", "P1/baseline"), id="encounter"),
        pytest.param(FULL, "effectiveDateTime", "2020-01-01", id="visit-date"),
        pytest.param(
            FULL, "identifier[0].value", "S1/P1/baseline/paracetamol 1 g", id="identifier"
        ),
    ],
)
def test_medication_mapping(row: Medication, path: str, expected: Any) -> None:
    assert get(mapped(row), path) == expected


def test_unrecorded_fields_leave_no_trace() -> None:
    r = mapped(BARE)
    assert "dosage" not in r
    assert r["medicationCodeableConcept"] == {"text": "heat rub"}
