"""MRI: ImagingStudy, DiagnosticReport and one imaging Observation per finding."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_admsc.mappings import imaging as family
from fhir_admsc.study import ImagingFinding, ImagingReport
from tests.mappings.helpers import CTX, by_type, get, ref, small_study

REPORT = ImagingReport(
    participant_id="P1",
    visit="baseline",
    report_id="R1",
    study_date="2020-01-02",
    modality="MR",
    study_uid="2.25.1234",
    conclusion="Modic 2, no fissure.",
)
FINDINGS = [
    ImagingFinding(report_id="R1", disc_level="L4-L5", finding="disc_height_mm", value=9.5),
    ImagingFinding(report_id="R1", disc_level="L4-L5", finding="pfirrmann_grade", value=3),
    ImagingFinding(report_id="R1", disc_level="L4-L5", finding="modic_type", value=2),
    ImagingFinding(report_id="R1", disc_level="L4-L5", finding="annular_fissure", value="absent"),
    ImagingFinding(report_id="R1", disc_level="L4-L5", finding="protrusion", value="present"),
    ImagingFinding(report_id="R1", disc_level="L3-L4", finding="protrusion_mm", value=3),
]


def mapped() -> list[dict[str, Any]]:
    return list(
        family.to_fhir(small_study(imaging_reports=[REPORT], imaging_findings=FINDINGS), CTX)
    )


def test_order_and_counts() -> None:
    types = [r["resourceType"] for r in mapped()]
    assert types == ["ImagingStudy", *["Observation"] * 6, "DiagnosticReport"]


@pytest.mark.parametrize(
    ("finding", "path", "expected"),
    [
        pytest.param(
            0,
            "valueQuantity",
            {
                "value": 9.5,
                "unit": "millimetres",
                "system": "http://unitsofmeasure.org",
                "code": "mm",
            },
            id="disc-height-mm",
        ),
        pytest.param(1, "valueInteger", 3, id="pfirrmann"),
        pytest.param(2, "valueInteger", 2, id="modic"),
        pytest.param(3, "valueCodeableConcept.coding[0].code", "absent", id="fissure"),
        pytest.param(4, "valueCodeableConcept.coding[0].code", "present", id="protrusion"),
        pytest.param(5, "valueQuantity.value", 3, id="protrusion-mm"),
        pytest.param(5, "bodySite.coding[0].code", "L3-L4", id="other-level"),
        pytest.param(0, "bodySite.coding[0].code", "L4-L5", id="body-site"),
        pytest.param(0, "category[0].coding[0].code", "imaging", id="category"),
        pytest.param(0, "partOf[0].reference", ref("ImagingStudy", "R1"), id="part-of-study"),
        pytest.param(0, "encounter.reference", ref("Encounter", "P1/baseline"), id="encounter"),
        pytest.param(0, "effectiveDateTime", "2020-01-02", id="study-date"),
        pytest.param(0, "identifier[0].value", "S1/R1/L4-L5/disc_height_mm", id="identifier"),
    ],
)
def test_findings(finding: int, path: str, expected: Any) -> None:
    observations = by_type(mapped(), "Observation")
    assert get(observations[finding], path) == expected


@pytest.mark.parametrize(
    ("resource_type", "path", "expected"),
    [
        pytest.param("ImagingStudy", "modality[0].code", "MR", id="modality"),
        pytest.param(
            "ImagingStudy",
            "identifier[1]",
            {"system": "urn:dicom:uid", "value": "urn:oid:2.25.1234"},
            id="study-uid",
        ),
        pytest.param("ImagingStudy", "started", "2020-01-02", id="started"),
        pytest.param("ImagingStudy", "procedureCode[0].coding[1].code", "113091000", id="mri"),
        pytest.param("DiagnosticReport", "conclusion", "Modic 2, no fissure.", id="conclusion"),
        pytest.param(
            "DiagnosticReport",
            "imagingStudy[0].reference",
            ref("ImagingStudy", "R1"),
            id="report-study",
        ),
        pytest.param("DiagnosticReport", "category[0].coding[0].code", "RAD", id="radiology"),
        pytest.param("DiagnosticReport", "status", "final", id="status"),
    ],
)
def test_report_and_study(resource_type: str, path: str, expected: Any) -> None:
    (resource,) = by_type(mapped(), resource_type)
    assert get(resource, path) == expected


def test_report_lists_every_finding_in_result() -> None:
    resources = mapped()
    (report,) = by_type(resources, "DiagnosticReport")
    findings = [f"Observation/{o['id']}" for o in by_type(resources, "Observation")]
    assert [r["reference"] for r in report["result"]] == findings
