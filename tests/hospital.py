"""A hospital's routine records of the demo participants, as the hospital's own FHIR server holds
them: other ids, the patients known by a medical record number, names and full birth dates, the
study's values in US Core-shaped resources (pain scores, questionnaires, MRI reports with their
findings, procedures, analgesic statements), plus records of no interest to the study and a second
patient with a similar name."""

from __future__ import annotations

from typing import Any

from fhir_admsc import terminology as term
from fhir_admsc.mappings.context import concept
from fhir_admsc.mappings.observations import measure_value
from fhir_admsc.study import Study

MRN = "urn:oid:1.2.36.146.595.217.0.1"  # the test hospital's medical record numbers
NAMES = [
    "Alvarez",
    "Brennan",
    "Chandra",
    "Dubois",
    "Eriksen",
    "Fujita",
    "Garcia",
    "Haddad",
    "Ivanova",
]
INGREDIENTS = {name: code for code, (name, _) in term.ANALGESICS.items()}
WEIGHT = {"system": term.LOINC, "code": "29463-7", "display": "Body weight"}


def mrn(index: int) -> str:
    return f"MRN-{40417 + 13 * index}"


class Hospital:
    """Builds the records; ids are the hospital's own (H-...)."""

    def __init__(self) -> None:
        self.resources: list[dict[str, Any]] = []

    def add(self, resource: dict[str, Any]) -> dict[str, str]:
        resource["id"] = f"H{len(self.resources) + 1:04d}"
        self.resources.append(resource)
        return {"reference": f"{resource['resourceType']}/{resource['id']}"}

    def patient(self, index: int, sex: str, birth_year: int | None, family: str) -> dict[str, str]:
        return self.add(
            {
                "resourceType": "Patient",
                "identifier": [{"system": MRN, "value": mrn(index)}],
                "name": [{"family": family, "given": ["Sam"]}],
                "gender": sex,
                "birthDate": f"{birth_year or 1970}-03-14",
            }
        )

    def observation(
        self, patient: dict[str, str], measure: term.Measure, day: str, value: Any, category: str
    ) -> dict[str, str]:
        return self.add(
            {
                "resourceType": "Observation",
                "status": "final",
                "category": [{"coding": [{"system": term.OBSERVATION_CATEGORY, "code": category}]}],
                "code": concept(measure.concept),
                "subject": patient,
                "effectiveDateTime": day,
                **measure_value(measure, value),
            }
        )


def hospital_records(study: Study) -> list[dict[str, Any]]:
    """Every record of the demo participants, and others."""
    hospital = Hospital()
    dates = {(v.participant_id, v.visit): v.visit_date.isoformat() for v in study.visits}
    patients = {}
    for i, p in enumerate(study.participants):
        patients[p.participant_id] = hospital.patient(i, p.sex, p.birth_year, NAMES[i % 9])
        hospital.add(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [WEIGHT]},
                "subject": patients[p.participant_id],
                "effectiveDateTime": p.enrolled_on.isoformat(),
                "valueQuantity": {"value": 71, "unit": "kg", "system": term.UCUM, "code": "kg"},
            }
        )
    hospital.patient(99, "female", 1968, NAMES[0])  # another patient of a similar name
    for o in study.outcomes:
        hospital.observation(
            patients[o.participant_id],
            term.OUTCOME_MEASURES[o.measure],
            dates[(o.participant_id, o.visit)],
            o.value,
            "survey",
        )
    _imaging(hospital, study, patients)
    procedures = {}
    for p in study.procedures:
        procedure = {
            "resourceType": "Procedure",
            "status": "completed",
            "code": concept(term.PROCEDURES[p.type]),
            "subject": patients[p.participant_id],
            "performedDateTime": p.performed_on.isoformat(),
        }
        if p.disc_level:
            procedure["bodySite"] = [concept(term.DISC_LEVELS[p.disc_level])]
        procedures[p.procedure_id] = hospital.add(procedure)
    for e in study.adverse_events:
        hospital.add(adverse_event(e, patients[e.participant_id], procedures))
    for m in study.medications:
        hospital.add(medication_statement(m, patients[m.participant_id], dates))
    return hospital.resources


def medication_statement(m: Any, patient: dict[str, str], dates: dict) -> dict[str, Any]:
    code = INGREDIENTS.get(m.medication)
    statement: dict[str, Any] = {
        "resourceType": "MedicationStatement",
        "status": term.MEDICATION_STATUS[m.status],
        "medicationCodeableConcept": {
            "coding": [{"system": term.RXNORM, "code": code}] if code else [],
            "text": m.medication,
        },
        "subject": patient,
        "effectiveDateTime": dates[(m.participant_id, m.visit)],
    }
    if m.daily_dose is not None:
        statement["dosage"] = [
            {
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [
                    {
                        "doseQuantity": {
                            "value": m.daily_dose,
                            "unit": m.dose_unit,
                            "system": term.UCUM,
                            "code": m.dose_unit,
                        }
                    }
                ],
            }
        ]
    return statement


def _imaging(hospital: Hospital, study: Study, patients: dict[str, dict[str, str]]) -> None:
    findings: dict[str, list] = {}
    for f in study.imaging_findings:
        findings.setdefault(f.report_id, []).append(f)
    for r in study.imaging_reports:
        patient = patients[r.participant_id]
        results = []
        for f in findings.get(r.report_id, []):
            result = hospital.observation(
                patient,
                term.IMAGING_FINDINGS[f.finding],
                r.study_date.isoformat(),
                f.value,
                "imaging",
            )
            hospital.resources[-1]["bodySite"] = concept(term.DISC_LEVELS[f.disc_level])
            results.append(result)
        study_record: dict[str, Any] = {
            "resourceType": "ImagingStudy",
            "status": "available",
            "subject": patient,
        }
        if r.study_uid:
            study_record["identifier"] = [
                {"system": term.DICOM_UID, "value": f"urn:oid:{r.study_uid}"}
            ]
        imaging = hospital.add(study_record)
        report = {
            "resourceType": "DiagnosticReport",
            "status": "final",
            "code": concept(term.LUMBAR_MRI),
            "subject": patient,
            "effectiveDateTime": r.study_date.isoformat(),
            "imagingStudy": [imaging],
            "result": results,
        }
        if r.conclusion:
            report["conclusion"] = r.conclusion
        hospital.add(report)


def transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """The records as a transaction that puts each at its id."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }


def adverse_event(e: Any, patient: dict[str, str], procedures: dict) -> dict[str, Any]:
    """As a hospital's incident system records it: R4's codes, causality in WHO-UMC terms."""
    record: dict[str, Any] = {
        "resourceType": "AdverseEvent",
        "actuality": "actual",
        "event": {"text": e.term},
        "subject": patient,
        "date": e.onset_on.isoformat(),
        "seriousness": {
            "coding": [
                {"system": term.AE_SERIOUSNESS_SYSTEM, "code": term.AE_SERIOUSNESS[e.serious]}
            ]
        },
        "severity": {"coding": [{"system": term.AE_SEVERITY, "code": e.severity}]},
        "outcome": {"coding": [{"system": term.AE_OUTCOME, "code": e.outcome}]},
    }
    if e.snomed:
        record["event"]["coding"] = [{"system": term.SNOMED, "code": e.snomed}]
    who_umc = [
        c
        for c in concept(term.CAUSALITY[e.causality])["coding"]
        if c["system"] == term.AE_CAUSALITY
    ]
    if e.suspected_procedure_id and who_umc:
        record["suspectEntity"] = [
            {
                "instance": procedures[e.suspected_procedure_id],
                "causality": [{"assessment": {"coding": who_umc}}],
            }
        ]
    return record
