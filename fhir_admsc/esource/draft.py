"""The hospital's records as a draft of the study tables: a value is taken only under an exact rule
(a code of ``terminology.py``, a date inside exactly one visit window of the participant), every
value keeps where it came from, and everything else goes to the review list with the reason.

Hospital identifiers (the patient's, the resources' ids) go only into the provenance table; the
draft's rows and the review list name participants by their study id and resources by their type,
date and code."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from .. import terminology as term
from ..mappings.context import code_in, date_part, key_for, own_code
from ..mappings.observations import read_value
from ..resources import key as resource_key
from ..resources import reference_key
from ..study import TABLES, Study, cell_text
from .hospital import Records

COLUMNS = {table.file: table.columns for table in TABLES}
FINAL = {"final", "amended", "corrected"}
# The columns no hospital record holds: named once in the review list.
NOT_HELD = {
    "participants.csv": [
        "site_id", "enrolled_on", "disc_level", "symptom_months", "status", "withdrawn_on",
        "withdrawal_reason",
    ],
    "visits.csv": ["visit_date"],
    "procedures.csv": [
        "procedure_id", "cell_dose", "volume_ml", "product_lot", "viability_pct",
        "harvest_procedure_id", "guidance", "notes",
    ],
    "imaging_reports.csv": ["report_id"],
    "adverse_events.csv": [
        "event_id", "resolved_on", "suspected_procedure_id", "expected", "action_taken",
    ],
}  # fmt: skip
MEDICATION_STATUS = {"active": term.TAKING, "completed": term.STOPPED, "stopped": term.STOPPED}
DISPENSE_STATUS = {"completed": term.TAKING}
# The table a record of each type would have filled, named when none of the rules took it.
RECORD_FILES = {
    "MedicationStatement": "medications.csv",
    "MedicationRequest": "medications.csv",
    "MedicationDispense": "medications.csv",
    "Procedure": "procedures.csv",
    "DiagnosticReport": "imaging_reports.csv",
    "AdverseEvent": "adverse_events.csv",
}
# Cells the draft fills itself (the keys it files a value under, the report ids it makes up):
# no provenance line.
OWN_COLUMNS = {"participant_id", "visit", "measure", "finding", "report_id"}
PROVENANCE = ["file", "row", "column", "server", "resource", "version_id", "last_updated"]
REVIEW = ["participant_id", "file", "column", "record", "reason"]


@dataclass
class Draft:
    """The draft tables (rows as dicts of the contract's columns), where each value came from,
    and what could not be taken."""

    server: str
    tables: dict[str, list[dict[str, str]]] = field(
        default_factory=lambda: {name: [] for name in COLUMNS}
    )
    provenance: list[dict[str, str]] = field(default_factory=list)
    review: list[dict[str, str]] = field(default_factory=list)

    def add(self, file: str, row: dict[str, Any], source: dict[str, Any]) -> None:
        """A row of ``file`` whose filled cells all come from ``source``."""
        cells = {c: cell_text(row.get(c)) for c in COLUMNS[file]}
        self.tables[file].append(cells)
        meta = source.get("meta", {})
        for column, value in cells.items():
            if value and column not in OWN_COLUMNS:
                self.provenance.append(
                    {
                        "file": file,
                        "row": str(len(self.tables[file])),
                        "column": column,
                        "server": self.server,
                        "resource": f"{source['resourceType']}/{source.get('id', '')}",
                        "version_id": meta.get("versionId", ""),
                        "last_updated": meta.get("lastUpdated", ""),
                    }
                )

    def refer(self, pid: str, file: str, column: str, record: str, reason: str) -> None:
        self.review.append(
            {
                "participant_id": pid,
                "file": file,
                "column": column,
                "record": record,
                "reason": reason,
            }
        )


def describe(resource: dict[str, Any]) -> str:
    """A record as the review list names it: type, date and codes, never its id."""
    codes = [
        f"{c.get('system', '').rsplit('/', 1)[-1]} {c.get('code', '')}"
        for key in ("code", "medicationCodeableConcept", "event")
        if isinstance(resource.get(key), dict)
        for c in (resource.get(key) or {}).get("coding", [])
    ]
    when = _when(resource)
    return " ".join(
        [
            resource.get("resourceType", "?"),
            *([f"of {when}"] if when else []),
            *(["coded"] + codes if codes else ["uncoded"]),
        ]
    )


def _when(resource: dict[str, Any]) -> str | None:
    for key in (
        "effectiveDateTime",
        "performedDateTime",
        "authoredOn",
        "whenHandedOver",
        "dateAsserted",
        "date",
        "started",
    ):
        if resource.get(key):
            return date_part(resource[key])
    for key in ("effectivePeriod", "performedPeriod"):
        if (resource.get(key) or {}).get("start"):
            return date_part(resource[key]["start"])
    return None


def match_concept(
    codeable: dict[str, Any] | None, concepts: dict[str, term.Concept]
) -> tuple[str | None, str | None]:
    """The key of ``concepts`` a CodeableConcept names: by the project's code, else by a standard
    code that one concept alone carries. Returns (key, None) or (None, why not)."""
    own = key_for(concepts, own_code(codeable))
    if own is not None:
        return own, None
    codings = {(c.get("system"), c.get("code")) for c in (codeable or {}).get("coding", [])}
    keys = [
        key
        for key, concept in concepts.items()
        if codings & {(system, code) for system, code, _ in concept.standard}
    ]
    if len(keys) == 1:
        return keys[0], None
    if keys:
        return None, f"the code stands for several study measures ({', '.join(sorted(keys))})"
    return None, "no rule of the study maps this code"


class Windows:
    """The visits of each participant, and which one a date falls in (within ``days``)."""

    def __init__(self, study: Study, days: int) -> None:
        self.days = days
        self.visits: dict[str, list[tuple[str, date]]] = defaultdict(list)
        for v in study.visits:
            self.visits[v.participant_id].append((v.visit, v.visit_date))

    def visit(self, pid: str, when: str | None) -> tuple[str | None, str | None]:
        """(visit, None) when ``when`` is in exactly one window, else (None, why not)."""
        if when is None:
            return None, "the record has no date"
        try:
            day = date.fromisoformat(when)
        except ValueError:
            return None, "the record's date is not a full date"
        inside = [v for v, d in self.visits[pid] if abs((day - d).days) <= self.days]
        if len(inside) == 1:
            return inside[0], None
        if inside:
            return None, f"the date is in the windows of {' and '.join(inside)}"
        return None, f"the date is outside every visit window (±{self.days} days)"


def draft_study(study: Study, records: Iterable[Records], server: str, window_days: int) -> Draft:
    """The draft tables of ``records`` (one Records a linked participant)."""
    draft = Draft(server)
    windows = Windows(study, window_days)
    for file, columns in NOT_HELD.items():
        for column in columns:
            draft.refer("", file, column, "", "no hospital record holds this column")
    for r in records:
        if r.problem is not None:
            draft.refer(r.participant_id, "", "", "Patient", r.problem)
            continue
        _participant(draft, r)
        # in one order whatever order the server answered in: the same records, the same draft
        ordered = sorted(
            r.resources, key=lambda x: (x["resourceType"], _when(x) or "", str(x.get("id", "")))
        )
        by_id = {resource_key(x): x for x in ordered}
        used: set[str] = set()
        _imaging(draft, r.participant_id, by_id, windows, used)
        _outcomes(draft, r.participant_id, by_id, windows, used)
        _procedures(draft, r.participant_id, by_id, used)
        _medications(draft, r.participant_id, by_id, windows, used)
        _adverse_events(draft, r.participant_id, by_id, used)
        for key, resource in by_id.items():
            if key not in used and resource["resourceType"] != "ImagingStudy":
                file = RECORD_FILES.get(resource["resourceType"], "")
                draft.refer(
                    r.participant_id,
                    file,
                    "",
                    describe(resource),
                    "no rule of the study maps this record",
                )
    return draft


def _participant(draft: Draft, r: Records) -> None:
    patient = r.patient or {}
    birth = patient.get("birthDate")
    sex = patient.get("gender")
    draft.add(
        "participants.csv",
        {
            "participant_id": r.participant_id,
            "sex": sex if sex in ("female", "male", "other", "unknown") else None,
            "birth_year": birth[:4] if birth else None,
        },
        patient,
    )


def _value(measure: term.Measure, resource: dict[str, Any]) -> tuple[Any, str | None]:
    """The table value of an Observation of ``measure``, or why it cannot be taken."""
    try:
        if measure.kind == "integer" and "valueQuantity" in resource:
            number = resource["valueQuantity"].get("value")
            value = int(number) if float(number).is_integer() else None
        else:
            value = read_value(measure, resource)
    except (KeyError, TypeError, ValueError):
        return None, f"the value is not one {measure.key} takes"
    if value is None or (
        not isinstance(value, str)
        and (
            (measure.minimum is not None and value < measure.minimum)
            or (measure.maximum is not None and value > measure.maximum)
        )
    ):
        return None, f"the value is not one {measure.key} takes"
    return value, None


def _outcomes(draft: Draft, pid: str, by_id: dict, windows: Windows, used: set) -> None:
    """outcomes.csv from Observations coded as a study measure; two different values of one
    measure in one visit window are both referred, neither taken."""
    found: dict[tuple[str, str], list[tuple[Any, dict[str, Any]]]] = defaultdict(list)
    observations = [
        (key, o)
        for key, o in by_id.items()
        if o["resourceType"] == "Observation" and key not in used
    ]
    for key, o in observations:
        measure_key, why = match_concept(o.get("code"), _OUTCOME_CONCEPTS)
        if measure_key is None and why.startswith("no rule"):
            continue  # perhaps a finding, or nothing of the study: referred at the end
        used.add(key)
        if why is None and o.get("status") not in FINAL:
            why = f"the observation's status is {o.get('status')!r}"
        visit = None
        if why is None:
            visit, why = windows.visit(pid, _when(o))
        if why is None:
            value, why = _value(term.OUTCOME_MEASURES[measure_key], o)
        if why is not None:
            draft.refer(pid, "outcomes.csv", "value", describe(o), why)
            continue
        found[(visit, measure_key)].append((value, o))
    for (visit, measure_key), values in found.items():
        if len({v for v, _ in values}) > 1:
            for _, o in values:
                draft.refer(
                    pid,
                    "outcomes.csv",
                    "value",
                    describe(o),
                    f"{measure_key} has several values at {visit}",
                )
            continue
        value, o = values[0]
        draft.add(
            "outcomes.csv",
            {"participant_id": pid, "visit": visit, "measure": measure_key, "value": value},
            o,
        )


_OUTCOME_CONCEPTS = {key: m.concept for key, m in term.OUTCOME_MEASURES.items()}
_FINDING_CONCEPTS = {key: m.concept for key, m in term.IMAGING_FINDINGS.items()}
_MRI = {"lumbar-mri": term.LUMBAR_MRI}


def _referenced(reference: dict[str, Any] | None) -> str:
    """``Type/id`` of the resource a Reference names ("" for none)."""
    return reference_key((reference or {}).get("reference") or "")


def _imaging(draft: Draft, pid: str, by_id: dict, windows: Windows, used: set) -> None:
    """imaging_reports.csv from DiagnosticReports of a lumbar MRI, imaging_findings.csv from
    their result Observations coded as a study finding at a lumbar disc."""
    for key, report in list(by_id.items()):
        if (
            report["resourceType"] != "DiagnosticReport"
            or match_concept(report.get("code"), _MRI)[0] is None
        ):
            continue
        used.add(key)
        visit, why = windows.visit(pid, _when(report))
        if why is None and report.get("status") not in FINAL:
            why = f"the report's status is {report.get('status')!r}"
        if why is not None:
            draft.refer(pid, "imaging_reports.csv", "", describe(report), why)
            continue
        report_id = f"{pid}-{visit}-MRI"
        draft.add(
            "imaging_reports.csv",
            {
                "participant_id": pid,
                "visit": visit,
                "report_id": report_id,
                "study_date": _when(report),
                "modality": "MR",  # the lumbar MRI concept is a magnetic resonance study
                "study_uid": _study_uid(report, by_id),
                "conclusion": report.get("conclusion"),
            },
            report,
        )
        for reference in report.get("result", []):
            _finding(draft, pid, report_id, by_id, _referenced(reference), used)


def _study_uid(report: dict[str, Any], by_id: dict) -> str | None:
    for reference in report.get("imagingStudy", []):
        study = by_id.get(_referenced(reference))
        for identifier in (study or {}).get("identifier", []):
            if identifier.get("system") == term.DICOM_UID:
                return identifier.get("value", "").removeprefix("urn:oid:") or None
    return None


def _finding(draft: Draft, pid: str, report_id: str, by_id: dict, key: str, used: set) -> None:
    o = by_id.get(key)
    if o is None:
        draft.refer(
            pid,
            "imaging_findings.csv",
            "",
            "DiagnosticReport result",
            "the result was not among the records read",
        )
        return
    used.add(key)
    finding, why = match_concept(o.get("code"), _FINDING_CONCEPTS)
    disc = key_for(term.DISC_LEVELS, own_code(o.get("bodySite")))
    if why is None and disc is None:
        why = "the finding names no lumbar disc the study codes"
    if why is None:
        value, why = _value(term.IMAGING_FINDINGS[finding], o)
    if why is not None:
        draft.refer(pid, "imaging_findings.csv", "value", describe(o), why)
        return
    draft.add(
        "imaging_findings.csv",
        {"report_id": report_id, "disc_level": disc, "finding": finding, "value": value},
        o,
    )


def _procedures(draft: Draft, pid: str, by_id: dict, used: set) -> None:
    """procedures.csv from completed Procedures coded as the harvest or the injection; the
    injections numbered in date order."""
    found: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for key, p in list(by_id.items()):
        if p["resourceType"] != "Procedure":
            continue
        kind, _ = match_concept(p.get("code"), term.PROCEDURES)
        if kind is None:
            continue
        used.add(key)
        when = _when(p)
        if p.get("status") != "completed" or when is None:
            draft.refer(
                pid, "procedures.csv", "", describe(p), "not a completed procedure with a date"
            )
            continue
        found[kind].append((when, p))
    for kind, done in found.items():
        for number, (when, p) in enumerate(sorted(done, key=lambda item: item[0]), start=1):
            sites = [key_for(term.DISC_LEVELS, own_code(s)) for s in p.get("bodySite", [])]
            injection = kind == term.INJECTION_TYPE
            draft.add(
                "procedures.csv",
                {
                    "participant_id": pid,
                    "type": kind,
                    "performed_on": when,
                    "disc_level": next((s for s in sites if s), None) if injection else None,
                    "injection_number": number if injection else None,
                },
                p,
            )


def _daily_dose(statement: dict[str, Any]) -> tuple[float | None, str | None]:
    """The daily amount of a dosage stated as a dose and a timing per hours or days."""
    for dosage in statement.get(
        "dosage" if statement["resourceType"] == "MedicationStatement" else "dosageInstruction", []
    ):
        repeat = (dosage.get("timing") or {}).get("repeat") or {}
        hours = {"h": 1, "d": 24}.get(repeat.get("periodUnit", ""))
        for rate in dosage.get("doseAndRate", []):
            dose = rate.get("doseQuantity") or {}
            if (
                dose.get("system") == term.UCUM
                and isinstance(dose.get("value"), int | float)
                and hours
                and repeat.get("period")
            ):
                per_day = repeat.get("frequency", 1) * 24 / (hours * repeat["period"])
                return dose["value"] * per_day, dose.get("code")
    return None, None


def _medications(draft: Draft, pid: str, by_id: dict, windows: Windows, used: set) -> None:
    """medications.csv from MedicationStatements and MedicationRequests of a listed analgesic."""
    for key, m in list(by_id.items()):
        if m["resourceType"] not in (
            "MedicationStatement",
            "MedicationRequest",
            "MedicationDispense",
        ):
            continue
        rxnorm = next(
            (
                c.get("code")
                for c in (m.get("medicationCodeableConcept") or {}).get("coding", [])
                if c.get("system") == term.RXNORM and c.get("code") in term.ANALGESICS
            ),
            None,
        )
        if rxnorm is None:
            continue
        used.add(key)
        # a dispense handed over in the window says the drug was being taken then
        statuses = (
            DISPENSE_STATUS if m["resourceType"] == "MedicationDispense" else MEDICATION_STATUS
        )
        status = statuses.get(m.get("status", ""))
        visit, why = windows.visit(pid, _when(m))
        if why is None and status is None:
            why = f"the status {m.get('status')!r} says neither taking nor stopped"
        if why is not None:
            draft.refer(pid, "medications.csv", "", describe(m), why)
            continue
        name, category = term.ANALGESICS[rxnorm]
        dose, unit = _daily_dose(m)
        if dose is None:
            draft.refer(
                pid, "medications.csv", "daily_dose", describe(m), "no dose per day is stated"
            )
        draft.add(
            "medications.csv",
            {
                "participant_id": pid,
                "visit": visit,
                "medication": name,
                "rxnorm": rxnorm,
                "category": category,
                "daily_dose": dose,
                "dose_unit": unit,
                "status": status,
            },
            m,
        )


def _adverse_events(draft: Draft, pid: str, by_id: dict, used: set) -> None:
    """adverse_events.csv from AdverseEvents that happened (R4's own severity, seriousness and
    outcome codes; causality as the study's categories or the WHO-UMC terms paired with them)."""
    for key, e in list(by_id.items()):
        if e["resourceType"] != "AdverseEvent" or e.get("actuality", "actual") != "actual":
            continue
        used.add(key)
        event = e.get("event") or {}
        name = event.get("text") or next(
            (c.get("display") for c in event.get("coding", []) if c.get("display")), None
        )
        onset = date_part(e.get("date"))
        if not name or not onset:
            draft.refer(pid, "adverse_events.csv", "", describe(e), "the event has no term or date")
            continue
        severity = code_in(e.get("severity"), term.AE_SEVERITY)
        seriousness = code_in(e.get("seriousness"), term.AE_SERIOUSNESS_SYSTEM)
        outcome = code_in(e.get("outcome"), term.AE_OUTCOME)
        assessments = [
            c.get("assessment")
            for suspect in e.get("suspectEntity", [])
            for c in suspect.get("causality", [])
        ]
        causality = next(
            (k for a in assessments if (k := match_concept(a, term.CAUSALITY)[0])), None
        )
        row = {
            "participant_id": pid,
            "term": name,
            "snomed": code_in(event, term.SNOMED),
            "onset_on": onset,
            "severity": severity if severity in term.AE_SEVERITY_DISPLAY else None,
            "serious": {v: k for k, v in term.AE_SERIOUSNESS.items()}.get(seriousness),
            "outcome": outcome if outcome in term.AE_OUTCOME_DISPLAY else None,
            "causality": causality,
        }
        for column in ("severity", "serious", "outcome", "causality"):
            if row[column] is None:
                draft.refer(
                    pid,
                    "adverse_events.csv",
                    column,
                    describe(e),
                    "the record does not say it in the codes R4 or the study define",
                )
        draft.add("adverse_events.csv", row, e)
