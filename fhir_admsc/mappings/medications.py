"""Analgesic use: one MedicationStatement per medications.csv row, tied to its visit Encounter.

The daily dose is an amount per day, so it travels as ``dosage.doseAndRate.rateRatio`` (dose / 1 d).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

from fhir_admsc import terminology as term
from fhir_admsc.mappings.context import (
    FhirIndex,
    StudyContext,
    add_extensions,
    code_in,
    concept,
    extension,
    extension_value,
    iso,
    key_for,
    number,
    own_code,
    quantity,
)
from fhir_admsc.mappings.study import visit_key, visit_of
from fhir_admsc.study import Medication, Study

_STATUS_FROM_FHIR = {fhir: row for row, fhir in term.MEDICATION_STATUS.items()}


def to_fhir(study: Study, ctx: StudyContext) -> Iterator[dict[str, Any]]:
    """One MedicationStatement per medication row, in input order."""
    dates = study.visit_dates()
    for m in study.medications:
        yield medication_statement(m, dates[(m.participant_id, m.visit)], ctx)


def medication_statement(m: Medication, visit_date: date, ctx: StudyContext) -> dict[str, Any]:
    visit = visit_key(m.participant_id, m.visit)
    r = ctx.resource("MedicationStatement", f"{visit}/{m.medication}", "analgesic-use")
    add_extensions(
        r, extension("analgesic-category", concept(term.ANALGESIC_CATEGORIES[m.category]))
    )
    r["status"] = term.MEDICATION_STATUS[m.status]
    medication: dict[str, Any] = {"text": m.medication}
    if m.rxnorm is not None:
        medication = {"coding": [{"system": term.RXNORM, "code": m.rxnorm}], "text": m.medication}
    r["medicationCodeableConcept"] = medication
    r["subject"] = ctx.ref("Patient", m.participant_id)
    r["context"] = ctx.ref("Encounter", visit)
    r["effectiveDateTime"] = iso(visit_date)
    if m.daily_dose is not None or m.dose_unit is not None:
        numerator: dict[str, Any] = {} if m.daily_dose is None else {"value": number(m.daily_dose)}
        if m.dose_unit is not None:
            numerator.update({"unit": m.dose_unit, "system": term.UCUM, "code": m.dose_unit})
        r["dosage"] = [
            {
                "doseAndRate": [
                    {"rateRatio": {"numerator": numerator, "denominator": quantity(1, term.DAY)}}
                ]
            }
        ]
    return r


def from_fhir(index: FhirIndex) -> dict[str, Any]:
    """medications.csv rows read back from MedicationStatements."""
    return {
        "medications": [index.convert(r, _medication) for r in index.of_type("MedicationStatement")]
    }


def _medication(r: dict[str, Any], index: FhirIndex) -> Medication:
    rate = (
        ((r.get("dosage") or [{}])[0].get("doseAndRate") or [{}])[0]
        .get("rateRatio", {})
        .get("numerator", {})
    )
    return Medication(
        participant_id=index.ref_key(r["subject"], "MedicationStatement.subject"),
        visit=visit_of(index, r["context"], "MedicationStatement.context"),
        medication=r["medicationCodeableConcept"]["text"],
        rxnorm=code_in(r["medicationCodeableConcept"], term.RXNORM),
        category=key_for(
            term.ANALGESIC_CATEGORIES, own_code(extension_value(r, "analgesic-category"))
        ),
        daily_dose=rate.get("value"),
        dose_unit=rate.get("unit"),
        status=_STATUS_FROM_FHIR[r["status"]],
    )
