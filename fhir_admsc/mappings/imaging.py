"""MRI: per report an ImagingStudy and a DiagnosticReport, and per finding an imaging Observation
(body site = disc level) listed in the report's ``result``."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from functools import partial
from typing import Any

from fhir_admsc import terminology as term
from fhir_admsc.mappings.context import (
    FhirIndex,
    StudyContext,
    coding,
    concept,
    date_part,
    iso,
    key_for,
    own_code,
)
from fhir_admsc.mappings.observations import measure_of, observation, read_value
from fhir_admsc.mappings.study import visit_key, visit_of
from fhir_admsc.study import ImagingFinding, ImagingReport, Study


def finding_key(f: ImagingFinding) -> str:
    return f"{f.report_id}/{f.disc_level}/{f.finding}"


def to_fhir(study: Study, ctx: StudyContext) -> Iterator[dict[str, Any]]:
    """Per report: its ImagingStudy, its finding Observations, then its DiagnosticReport."""
    findings: dict[str, list[ImagingFinding]] = defaultdict(list)
    for f in study.imaging_findings:
        findings[f.report_id].append(f)
    for report in study.imaging_reports:
        yield imaging_study(report, ctx)
        for f in findings[report.report_id]:
            yield finding(f, report, ctx)
        yield diagnostic_report(report, findings[report.report_id], ctx)


def imaging_study(report: ImagingReport, ctx: StudyContext) -> dict[str, Any]:
    r = ctx.resource("ImagingStudy", report.report_id, "mri-study")
    if report.study_uid is not None:
        r["identifier"].append({"system": term.DICOM_UID, "value": f"urn:oid:{report.study_uid}"})
    r["status"] = "available"
    r["modality"] = [coding(term.DICOM_DCM, report.modality, term.MODALITIES[report.modality])]
    r["subject"] = ctx.ref("Patient", report.participant_id)
    r["encounter"] = ctx.ref("Encounter", visit_key(report.participant_id, report.visit))
    r["started"] = iso(report.study_date)
    r["procedureCode"] = [concept(term.LUMBAR_MRI)]
    return r


def finding(f: ImagingFinding, report: ImagingReport, ctx: StudyContext) -> dict[str, Any]:
    r = observation(
        ctx,
        finding_key(f),
        term.IMAGING_FINDINGS[f.finding],
        "imaging",
        report.participant_id,
        report.study_date,
        ctx.ref("Encounter", visit_key(report.participant_id, report.visit)),
        f.value,
    )
    r["partOf"] = [ctx.ref("ImagingStudy", report.report_id)]
    r["bodySite"] = concept(term.DISC_LEVELS[f.disc_level])
    return r


def diagnostic_report(
    report: ImagingReport, findings: list[ImagingFinding], ctx: StudyContext
) -> dict[str, Any]:
    r = ctx.resource("DiagnosticReport", report.report_id, "mri-report")
    r["status"] = "final"
    r["category"] = [{"coding": [coding(*term.RADIOLOGY)]}]
    r["code"] = concept(term.LUMBAR_MRI)
    r["subject"] = ctx.ref("Patient", report.participant_id)
    r["encounter"] = ctx.ref("Encounter", visit_key(report.participant_id, report.visit))
    r["effectiveDateTime"] = iso(report.study_date)
    if findings:
        r["result"] = [ctx.ref("Observation", finding_key(f)) for f in findings]
    r["imagingStudy"] = [ctx.ref("ImagingStudy", report.report_id)]
    if report.conclusion is not None:
        r["conclusion"] = report.conclusion
    return r


def from_fhir(index: FhirIndex) -> dict[str, Any]:
    """imaging_reports.csv and imaging_findings.csv rows read back from DiagnosticReports."""
    reports, findings = [], []
    for r in index.of_type("DiagnosticReport"):
        report = index.convert(r, _report)
        reports.append(report)
        for ref in r.get("result", []):
            obs = index.resolve(ref, "DiagnosticReport.result")
            findings.append(index.convert(obs, partial(_finding, report_id=report.report_id)))
    return {"imaging_reports": reports, "imaging_findings": findings}


def _report(r: dict[str, Any], index: FhirIndex) -> ImagingReport:
    study = index.resolve(r["imagingStudy"][0], "DiagnosticReport.imagingStudy")
    uid = next(
        (
            i["value"].removeprefix("urn:oid:")
            for i in study.get("identifier", [])
            if i.get("system") == term.DICOM_UID
        ),
        None,
    )
    return ImagingReport(
        participant_id=index.ref_key(r["subject"], "DiagnosticReport.subject"),
        visit=visit_of(index, r["encounter"], "DiagnosticReport.encounter"),
        report_id=index.key(r),
        study_date=date_part(r["effectiveDateTime"]),
        modality=study["modality"][0]["code"],
        study_uid=uid,
        conclusion=r.get("conclusion"),
    )


def _finding(r: dict[str, Any], index: FhirIndex, report_id: str) -> ImagingFinding:
    measure = measure_of(r, term.IMAGING_FINDINGS)
    if measure is None:
        raise ValueError("its code is not an imaging finding of the study")
    return ImagingFinding(
        report_id=report_id,
        disc_level=key_for(term.DISC_LEVELS, own_code(r["bodySite"])),
        finding=measure.key,
        value=read_value(measure, r),
    )
