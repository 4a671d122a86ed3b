"""The Study model: one pydantic class per table of the study data contract, and its cross-table rules.

Values arrive as CSV text (empty cell = ``None``) or as Python values; both are checked the same way.
The models know nothing of files: ``check_study`` reports cross-table defects by table and row index,
and the folder reader turns those into file and line positions.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationInfo, field_validator

from fhir_admsc import terminology as term

_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# Excel saves a date cell formatted as a date and time as "2017-06-05 00:00:00"
_DATE_TIME = re.compile(r"(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}(?::\d{2})?)")
# 05/06/2017, 5.6.2017, 05-06-2017: day and month in an order the text cannot tell
_LOCAL_DATE = re.compile(r"\d{1,2}([/.-])\d{1,2}\1\d{4}")
_INTEGER = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_DICOM_UID = re.compile(r"(0|[1-9]\d*)(\.(0|[1-9]\d*))*")
# UCUM codes are printable ASCII without spaces (and go into Quantity.code, which allows no tab)
_UCUM = re.compile(r"[!-~]+")
# FHIR strings carry no control characters but tab, CR and LF
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _identifier(value: Any) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise ValueError("is not an identifier (letters, digits, '.', '_' or '-', at most 64)")
    return value


def _iso_date(value: Any) -> date:
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise ValueError("is not a date (expected YYYY-MM-DD)")
    moment = _DATE_TIME.fullmatch(value)
    if moment:
        if moment.group(2).strip("0:"):
            raise ValueError("has a time of day: expected a date only (YYYY-MM-DD)")
        value = moment.group(1)
    if _LOCAL_DATE.fullmatch(value):
        raise ValueError(
            "is not a date in the form YYYY-MM-DD (the order of day and month in such dates is "
            "not certain): format the column as yyyy-mm-dd in Excel (Format Cells, Custom) "
            "before saving"
        )
    if not _DATE.fullmatch(value):
        raise ValueError("is not a date (expected YYYY-MM-DD)")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError("is not a calendar date") from None


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        return int(value)
    raise ValueError("is not an integer")


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("is not a number")
    if isinstance(value, int | float) or isinstance(value, str) and _NUMBER.fullmatch(value):
        number = float(value)
    else:
        raise ValueError("is not a number")
    if not math.isfinite(number):
        raise ValueError("is not a finite number")
    return number


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    # Excel writes TRUE and FALSE
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError("is not a boolean (expected true or false)")


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("is not a non-empty text")
    control = _CONTROL.search(value)
    if control:
        raise ValueError(f"holds the control character U+{ord(control.group()):04X}")
    return value


def _pattern(regex: re.Pattern[str], what: str):
    def check(value: Any) -> str:
        if not isinstance(value, str) or not regex.fullmatch(value):
            raise ValueError(f"is not {what}")
        return value

    return check


def _code_of(system: str):
    """A check that a value is a code of ``system`` by its format (the validator's own rule, so
    that a code the reader accepts never fails validation after export)."""

    def check(value: Any) -> str:
        problem = (
            term.external_code_problem(system, value) if isinstance(value, str) else "is not a code"
        )
        if problem:
            raise ValueError(problem)
        return value

    return check


Identifier = Annotated[str, BeforeValidator(_identifier)]
Date = Annotated[date, BeforeValidator(_iso_date)]
Integer = Annotated[int, BeforeValidator(_integer)]
Number = Annotated[float, BeforeValidator(_number)]
Boolean = Annotated[bool, BeforeValidator(_boolean)]
Text = Annotated[str, BeforeValidator(_text)]
DicomUid = Annotated[str, BeforeValidator(_pattern(_DICOM_UID, "a DICOM UID (digits and dots)"))]
SnomedCode = Annotated[str, BeforeValidator(_code_of(term.SNOMED))]
RxNormCode = Annotated[str, BeforeValidator(_code_of(term.RXNORM))]
UcumUnit = Annotated[
    str, BeforeValidator(_pattern(_UCUM, "a UCUM unit (printable ASCII, no spaces)"))
]

Sex = Literal["female", "male", "other", "unknown"]
DiscLevel = Literal[tuple(term.DISC_LEVELS)]  # type: ignore[valid-type]
VisitCode = Literal[tuple(term.VISITS)]  # type: ignore[valid-type]
ResearchStudyStatus = Literal[tuple(term.RESEARCH_STUDY_STATUS)]  # type: ignore[valid-type]
ResearchSubjectStatus = Literal[tuple(term.RESEARCH_SUBJECT_STATUS)]  # type: ignore[valid-type]
MeasureKey = Literal[tuple(term.OUTCOME_MEASURES)]  # type: ignore[valid-type]
FindingKey = Literal[tuple(term.IMAGING_FINDINGS)]  # type: ignore[valid-type]
AnalgesicCategory = Literal[tuple(term.ANALGESIC_CATEGORIES)]  # type: ignore[valid-type]
Causality = Literal[tuple(term.CAUSALITY)]  # type: ignore[valid-type]
Guidance = Literal[tuple(term.GUIDANCE)]  # type: ignore[valid-type]
Severity = Literal[tuple(term.AE_SEVERITY_DISPLAY)]  # type: ignore[valid-type]
AeOutcome = Literal[tuple(term.AE_OUTCOME_DISPLAY)]  # type: ignore[valid-type]
ProcedureType = Literal[tuple(term.PROCEDURES)]  # type: ignore[valid-type]
MedicationStatus = Literal[tuple(term.MEDICATION_STATUS)]  # type: ignore[valid-type]


def _check_measure(measure: term.Measure, value: float | str) -> float | int | str:
    """Check ``value`` against one measure's kind and range; integers come back as ``int``."""
    if measure.kind == "presence":
        if value not in term.PRESENCE:
            raise ValueError(f"is not allowed for {measure.key}: expected {measure.expected()}")
        return value
    number = _number(value)
    if measure.kind == "integer" and not number.is_integer():
        raise ValueError(f"is not allowed for {measure.key}: expected {measure.expected()}")
    low, high = measure.minimum, measure.maximum
    too_low = low is not None and (number <= low if measure.minimum_exclusive else number < low)
    if too_low or (high is not None and number > high):
        raise ValueError(f"is out of range for {measure.key}: expected {measure.expected()}")
    return int(number) if measure.kind == "integer" else number


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Arm(_Row):
    name: Text
    description: Text | None = None


class Site(_Row):
    site_id: Identifier
    name: Text


class StudyInfo(_Row):
    """study.json: study-level metadata."""

    study_id: Identifier
    title: Text
    registry_id: Text | None = None
    status: ResearchStudyStatus
    sponsor: Text | None = None
    start: Date | None = None
    end: Date | None = None
    arm: Arm
    sites: list[Site] | None = None

    @field_validator("sites")
    @classmethod
    def _no_empty_sites(cls, sites: list[Site] | None) -> list[Site] | None:
        return sites or None


class Participant(_Row):
    participant_id: Identifier
    sex: Sex
    birth_year: Integer | None = None
    site_id: Identifier | None = None
    enrolled_on: Date
    disc_level: DiscLevel
    symptom_months: Integer | None = None
    status: ResearchSubjectStatus
    withdrawn_on: Date | None = None
    withdrawal_reason: Text | None = None

    @field_validator("birth_year")
    @classmethod
    def _plausible_year(cls, year: int | None) -> int | None:
        if year is not None and not 1900 <= year <= 2100:
            raise ValueError("is not a plausible birth year (1900-2100)")
        return year

    @field_validator("symptom_months")
    @classmethod
    def _not_negative(cls, months: int | None) -> int | None:
        if months is not None and months < 0:
            raise ValueError("must not be negative")
        return months


class Visit(_Row):
    participant_id: Identifier
    visit: VisitCode
    visit_date: Date


class Procedure(_Row):
    participant_id: Identifier
    procedure_id: Identifier
    type: ProcedureType
    performed_on: Date
    disc_level: DiscLevel | None = None
    injection_number: Literal[1, 2] | None = None
    cell_dose: Integer | None = None
    volume_ml: Number | None = None
    product_lot: Identifier | None = None
    viability_pct: Number | None = None
    harvest_procedure_id: Identifier | None = None
    guidance: Guidance | None = None
    notes: Text | None = None

    @field_validator("injection_number", mode="before")
    @classmethod
    def _injection_number(cls, value: Any) -> Any:
        return None if value is None else _integer(value)

    @field_validator("cell_dose", "volume_ml")
    @classmethod
    def _positive(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("must be greater than 0")
        return value

    @field_validator("viability_pct")
    @classmethod
    def _percent(cls, value: float | None) -> float | None:
        if value is not None and not 0 <= value <= 100:
            raise ValueError("is out of range: expected a number from 0 to 100")
        return value


class Outcome(_Row):
    participant_id: Identifier
    visit: VisitCode
    measure: MeasureKey
    value: int | float

    @field_validator("value", mode="before")
    @classmethod
    def _measure_value(cls, value: Any, info: ValidationInfo) -> int | float:
        measure = term.OUTCOME_MEASURES.get(info.data.get("measure", ""))
        return _number(value) if measure is None else _check_measure(measure, value)


class Medication(_Row):
    participant_id: Identifier
    visit: VisitCode
    medication: Text
    rxnorm: RxNormCode | None = None
    category: AnalgesicCategory
    daily_dose: Number | None = None
    dose_unit: UcumUnit | None = None
    status: MedicationStatus

    @field_validator("daily_dose")
    @classmethod
    def _not_negative(cls, dose: float | None) -> float | None:
        if dose is not None and dose < 0:
            raise ValueError("must not be negative")
        return dose


class AdverseEvent(_Row):
    participant_id: Identifier
    event_id: Identifier
    term: Text
    snomed: SnomedCode | None = None
    onset_on: Date
    resolved_on: Date | None = None
    severity: Severity
    serious: Boolean
    outcome: AeOutcome
    causality: Causality
    suspected_procedure_id: Identifier | None = None
    expected: Boolean | None = None
    action_taken: Text | None = None


class ImagingReport(_Row):
    participant_id: Identifier
    visit: VisitCode
    report_id: Identifier
    study_date: Date
    modality: Literal[tuple(term.MODALITIES)]  # type: ignore[valid-type]
    study_uid: DicomUid | None = None
    conclusion: Text | None = None

    @field_validator("study_uid")
    @classmethod
    def _uid_length(cls, uid: str | None) -> str | None:
        if uid is not None and len(uid) > 64:
            raise ValueError("is longer than the 64 characters a DICOM UID may have")
        return uid


class ImagingFinding(_Row):
    report_id: Identifier
    disc_level: DiscLevel
    finding: FindingKey
    value: int | float | str

    @field_validator("value", mode="before")
    @classmethod
    def _finding_value(cls, value: Any, info: ValidationInfo) -> int | float | str:
        finding = term.IMAGING_FINDINGS.get(info.data.get("finding", ""))
        return value if finding is None else _check_measure(finding, value)


@dataclass(frozen=True)
class Table:
    """One CSV table of the study folder: its file, its row model, its attribute on Study, and
    whether every study folder must have it (the others may be absent when they have no rows)."""

    file: str
    model: type[_Row]
    attribute: str
    required: bool = False

    @property
    def columns(self) -> list[str]:
        return list(self.model.model_fields)


TABLES = [
    Table("participants.csv", Participant, "participants", required=True),
    Table("visits.csv", Visit, "visits"),
    Table("procedures.csv", Procedure, "procedures"),
    Table("outcomes.csv", Outcome, "outcomes"),
    Table("medications.csv", Medication, "medications"),
    Table("adverse_events.csv", AdverseEvent, "adverse_events"),
    Table("imaging_reports.csv", ImagingReport, "imaging_reports"),
    Table("imaging_findings.csv", ImagingFinding, "imaging_findings"),
]
STUDY_FILE = "study.json"


class Study(BaseModel):
    """A whole study: its metadata and every table, rows in the order they were read."""

    model_config = ConfigDict(frozen=True)

    info: StudyInfo
    participants: list[Participant] = []
    visits: list[Visit] = []
    procedures: list[Procedure] = []
    outcomes: list[Outcome] = []
    medications: list[Medication] = []
    adverse_events: list[AdverseEvent] = []
    imaging_reports: list[ImagingReport] = []
    imaging_findings: list[ImagingFinding] = []

    def visit_dates(self) -> dict[tuple[str, str], date]:
        """(participant_id, visit) -> visit date."""
        return {(v.participant_id, v.visit): v.visit_date for v in self.visits}


def cell_text(value: Any) -> str:
    """The CSV text of one value: empty for None, ISO dates, true/false, numbers without '.0'."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        # positional, never 1e-05: the readers take digits and one point only
        return str(int(value)) if value.is_integer() else format(Decimal(repr(value)), "f")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


@dataclass(frozen=True)
class RowProblem:
    """A cross-table defect: the table file, the row's index in it, the column and the value."""

    file: str
    index: int | None
    column: str | None
    value: str | None
    message: str


def check_study(study: Study) -> list[RowProblem]:
    """Every cross-table defect of ``study`` (duplicates, dangling references, dates out of order)."""
    return [problem for rule in RULES for problem in rule.check(study)]


@dataclass(frozen=True)
class Rule:
    """A cross-table rule of the data contract: its check, the columns it reads by Study
    attribute ("info" for study.json), and whether it relates the rows of one participant to
    those of others (the streamed reader then shows it those rows, with the columns it reads)."""

    check: Callable[[Study], Iterator[RowProblem]]
    reads: Mapping[str, tuple[str, ...]]
    across_participants: bool = False


def columns_read_across(attribute: str) -> list[str]:
    """The columns of table ``attribute`` that the rules across participants read."""
    columns = (c for r in RULES if r.across_participants for c in r.reads.get(attribute, ()))
    return list(dict.fromkeys(columns))


def _show(value: Any) -> str | None:
    return None if value is None else cell_text(value)


def _duplicates(
    file: str, rows: list[Any], key: Any, column: str, what: str
) -> Iterator[RowProblem]:
    """Every row whose key another row shares (rows whose key is None take no part)."""
    counts = Counter(key(row) for row in rows)
    for index, row in enumerate(rows):
        if key(row) is not None and counts[key(row)] > 1:
            yield RowProblem(
                file,
                index,
                column,
                _show(getattr(row, column)),
                f"is a duplicate: {what} must be unique",
            )


def _unknown_participants(study: Study, file: str, rows: list[Any]) -> Iterator[RowProblem]:
    """Rows whose participant is not in participants.csv."""
    known = {p.participant_id for p in study.participants}
    for i, row in enumerate(rows):
        if row.participant_id not in known:
            yield RowProblem(
                file, i, "participant_id", row.participant_id, "is not in participants.csv"
            )


def _at_visits(study: Study, file: str, rows: list[Any]) -> Iterator[RowProblem]:
    """Rows of participants of participants.csv, at visits of visits.csv."""
    participants = {p.participant_id for p in study.participants}
    visits = {(v.participant_id, v.visit) for v in study.visits}
    yield from _unknown_participants(study, file, rows)
    for i, row in enumerate(rows):
        if row.participant_id in participants and (row.participant_id, row.visit) not in visits:
            yield RowProblem(
                file,
                i,
                "visit",
                row.visit,
                f"is not in visits.csv for participant {row.participant_id}",
            )


def _study_dates(study: Study) -> Iterator[RowProblem]:
    if study.info.start and study.info.end and study.info.end < study.info.start:
        yield RowProblem(STUDY_FILE, None, "end", str(study.info.end), "is before 'start'")


def _site_ids(study: Study) -> Iterator[RowProblem]:
    sites = study.info.sites or []
    yield from _duplicates(STUDY_FILE, sites, lambda s: s.site_id, "site_id", "site_id")


def _participant_ids(study: Study) -> Iterator[RowProblem]:
    yield from _duplicates(
        "participants.csv",
        study.participants,
        lambda p: p.participant_id,
        "participant_id",
        "participant_id",
    )


def _participants(study: Study) -> Iterator[RowProblem]:
    file = "participants.csv"
    site_ids = {s.site_id for s in study.info.sites or []}
    for i, p in enumerate(study.participants):
        if p.site_id is not None and p.site_id not in site_ids:
            yield RowProblem(file, i, "site_id", p.site_id, "is not a site of study.json")
        if p.status == term.WITHDRAWN and p.withdrawn_on is None:
            yield RowProblem(file, i, "withdrawn_on", None, "is required when status is withdrawn")
        if p.withdrawn_on is not None and p.withdrawn_on < p.enrolled_on:
            yield RowProblem(file, i, "withdrawn_on", str(p.withdrawn_on), "is before enrolled_on")


def _visits(study: Study) -> Iterator[RowProblem]:
    file = "visits.csv"
    participants = {p.participant_id: p for p in study.participants}
    yield from _duplicates(
        file,
        study.visits,
        lambda v: (v.participant_id, v.visit),
        "visit",
        "one row per participant and visit",
    )
    yield from _unknown_participants(study, file, study.visits)
    for i, v in enumerate(study.visits):
        p = participants.get(v.participant_id)
        if p is not None and v.visit_date < p.enrolled_on:
            yield RowProblem(
                file,
                i,
                "visit_date",
                str(v.visit_date),
                f"is before enrolment of {v.participant_id} ({p.enrolled_on})",
            )


def _visit_order(study: Study) -> Iterator[RowProblem]:
    by_participant: dict[str, list[tuple[int, Visit]]] = defaultdict(list)
    for i, v in enumerate(study.visits):
        by_participant[v.participant_id].append((i, v))
    for rows in by_participant.values():
        ordered = sorted(rows, key=lambda iv: term.VISIT_ORDER.index(iv[1].visit))
        for (_, before), (i, after) in zip(ordered, ordered[1:], strict=False):
            if after.visit_date <= before.visit_date and after.visit != before.visit:
                yield RowProblem(
                    "visits.csv",
                    i,
                    "visit_date",
                    str(after.visit_date),
                    f"is not after the {before.visit} visit ({before.visit_date})",
                )


def _procedure_ids(study: Study) -> Iterator[RowProblem]:
    yield from _duplicates(
        "procedures.csv", study.procedures, lambda p: p.procedure_id, "procedure_id", "procedure_id"
    )


def _injection_numbers(study: Study) -> Iterator[RowProblem]:
    yield from _duplicates(
        "procedures.csv",
        study.procedures,
        lambda p: (p.participant_id, p.injection_number) if p.type == term.INJECTION_TYPE else None,
        "injection_number",
        "one injection of each number per participant",
    )


# The columns of procedures.csv that only an injection has: True where every injection needs one.
INJECTION_COLUMNS: dict[str, bool] = {
    "disc_level": True,
    "injection_number": True,
    "cell_dose": True,
    "product_lot": True,
    "viability_pct": False,
    "harvest_procedure_id": True,
}


def _procedures(study: Study) -> Iterator[RowProblem]:
    file = "procedures.csv"
    yield from _unknown_participants(study, file, study.procedures)
    for i, proc in enumerate(study.procedures):
        for column, required in INJECTION_COLUMNS.items():
            value = getattr(proc, column)
            if proc.type == term.HARVEST_TYPE and value is not None:
                yield RowProblem(
                    file,
                    i,
                    column,
                    _show(value),
                    "is for injections only: leave it empty for a harvest",
                )
            elif proc.type != term.HARVEST_TYPE and required and value is None:
                yield RowProblem(file, i, column, None, "is required for an injection")


def _harvests(study: Study) -> Iterator[RowProblem]:
    procedures = {p.procedure_id: p for p in study.procedures}
    for i, proc in enumerate(study.procedures):
        if proc.type == term.HARVEST_TYPE or proc.harvest_procedure_id is None:
            continue
        harvest = procedures.get(proc.harvest_procedure_id)
        if harvest is None or harvest.type != term.HARVEST_TYPE:
            message = "is not a harvest in procedures.csv"
        elif harvest.participant_id != proc.participant_id:
            message = f"is a harvest of another participant ({harvest.participant_id})"
        elif harvest.performed_on > proc.performed_on:
            yield RowProblem(
                "procedures.csv",
                i,
                "performed_on",
                str(proc.performed_on),
                f"is before its harvest {harvest.procedure_id} ({harvest.performed_on})",
            )
            continue
        else:
            continue
        yield RowProblem(
            "procedures.csv", i, "harvest_procedure_id", proc.harvest_procedure_id, message
        )


_SAME_IN_LOT = ("participant_id", "viability_pct", "harvest_procedure_id")


def _lots(study: Study) -> Iterator[RowProblem]:
    lots: dict[str, list[tuple[int, Procedure]]] = defaultdict(list)
    for i, proc in enumerate(study.procedures):
        if proc.type != term.HARVEST_TYPE and proc.product_lot is not None:
            lots[proc.product_lot].append((i, proc))
    for lot_rows in lots.values():
        _, first = lot_rows[0]
        for i, proc in lot_rows[1:]:
            for column in _SAME_IN_LOT:
                if getattr(proc, column) != getattr(first, column):
                    yield RowProblem(
                        "procedures.csv",
                        i,
                        column,
                        _show(getattr(proc, column)),
                        f"differs from the other injections of lot "
                        f"{proc.product_lot} ({_show(getattr(first, column))})",
                    )


def _second_injections(study: Study) -> Iterator[RowProblem]:
    injections = {
        (p.participant_id, p.injection_number): p
        for p in study.procedures
        if p.type == term.INJECTION_TYPE
    }
    for i, proc in enumerate(study.procedures):
        first = injections.get((proc.participant_id, 1))
        if proc.injection_number == 2 and first is None:
            yield RowProblem(
                "procedures.csv",
                i,
                "injection_number",
                "2",
                f"has no first injection for participant {proc.participant_id}",
            )
        elif proc.injection_number == 2 and first and proc.performed_on <= first.performed_on:
            yield RowProblem(
                "procedures.csv",
                i,
                "performed_on",
                str(proc.performed_on),
                f"is not after the first injection ({first.performed_on})",
            )


def _outcomes(study: Study) -> Iterator[RowProblem]:
    yield from _duplicates(
        "outcomes.csv",
        study.outcomes,
        lambda o: (o.participant_id, o.visit, o.measure),
        "measure",
        "one row per participant, visit and measure",
    )
    yield from _at_visits(study, "outcomes.csv", study.outcomes)


def _medications(study: Study) -> Iterator[RowProblem]:
    yield from _duplicates(
        "medications.csv",
        study.medications,
        lambda m: (m.participant_id, m.visit, m.medication),
        "medication",
        "one row per participant, visit and medication",
    )
    yield from _at_visits(study, "medications.csv", study.medications)


def _event_ids(study: Study) -> Iterator[RowProblem]:
    yield from _duplicates(
        "adverse_events.csv", study.adverse_events, lambda e: e.event_id, "event_id", "event_id"
    )


def _adverse_events(study: Study) -> Iterator[RowProblem]:
    file = "adverse_events.csv"
    yield from _unknown_participants(study, file, study.adverse_events)
    for i, e in enumerate(study.adverse_events):
        if e.resolved_on is not None and e.resolved_on < e.onset_on:
            yield RowProblem(file, i, "resolved_on", str(e.resolved_on), "is before onset_on")


def _suspected_procedures(study: Study) -> Iterator[RowProblem]:
    procedures = {p.procedure_id: p for p in study.procedures}
    for i, e in enumerate(study.adverse_events):
        suspect = procedures.get(e.suspected_procedure_id or "")
        if e.suspected_procedure_id is not None and suspect is None:
            message = "is not in procedures.csv"
        elif suspect is not None and suspect.participant_id != e.participant_id:
            message = f"is a procedure of another participant ({suspect.participant_id})"
        else:
            continue
        yield RowProblem(
            "adverse_events.csv", i, "suspected_procedure_id", e.suspected_procedure_id, message
        )


def _report_ids(study: Study) -> Iterator[RowProblem]:
    yield from _duplicates(
        "imaging_reports.csv",
        study.imaging_reports,
        lambda r: r.report_id,
        "report_id",
        "report_id",
    )


def _imaging_reports(study: Study) -> Iterator[RowProblem]:
    yield from _at_visits(study, "imaging_reports.csv", study.imaging_reports)


def _imaging_findings(study: Study) -> Iterator[RowProblem]:
    yield from _duplicates(
        "imaging_findings.csv",
        study.imaging_findings,
        lambda f: (f.report_id, f.disc_level, f.finding),
        "finding",
        "one row per report, disc level and finding",
    )


def _finding_reports(study: Study) -> Iterator[RowProblem]:
    reports = {r.report_id for r in study.imaging_reports}
    for i, f in enumerate(study.imaging_findings):
        if f.report_id not in reports:
            yield RowProblem(
                "imaging_findings.csv", i, "report_id", f.report_id, "is not in imaging_reports.csv"
            )


_AT_VISIT = ("participant_id", "visit")
_PARTICIPANTS = {"participants": ("participant_id",)}
_AT_VISITS = {"participants": ("participant_id",), "visits": _AT_VISIT}

# Every cross-table rule, in the order their defects of one row are listed.
RULES = [
    Rule(_study_dates, {"info": ("start", "end")}),
    Rule(_site_ids, {"info": ("sites",)}),
    Rule(_participant_ids, {"participants": ("participant_id",)}),
    Rule(
        _participants,
        {
            "info": ("sites",),
            "participants": ("site_id", "status", "withdrawn_on", "enrolled_on"),
        },
    ),
    Rule(
        _visits,
        {
            "participants": ("participant_id", "enrolled_on"),
            "visits": (*_AT_VISIT, "visit_date"),
        },
    ),
    Rule(_visit_order, {"visits": (*_AT_VISIT, "visit_date")}),
    Rule(_procedure_ids, {"procedures": ("procedure_id",)}, across_participants=True),
    Rule(_injection_numbers, {"procedures": ("participant_id", "type", "injection_number")}),
    Rule(
        _procedures,
        {**_PARTICIPANTS, "procedures": ("participant_id", "type", *INJECTION_COLUMNS)},
    ),
    Rule(
        _harvests,
        {
            "procedures": (
                "procedure_id",
                "participant_id",
                "type",
                "performed_on",
                "harvest_procedure_id",
            )
        },
        across_participants=True,
    ),
    Rule(_lots, {"procedures": ("type", "product_lot", *_SAME_IN_LOT)}, across_participants=True),
    Rule(
        _second_injections,
        {"procedures": ("participant_id", "type", "injection_number", "performed_on")},
    ),
    Rule(_outcomes, {**_AT_VISITS, "outcomes": (*_AT_VISIT, "measure")}),
    Rule(_medications, {**_AT_VISITS, "medications": (*_AT_VISIT, "medication")}),
    Rule(_event_ids, {"adverse_events": ("event_id",)}, across_participants=True),
    Rule(
        _adverse_events,
        {**_PARTICIPANTS, "adverse_events": ("participant_id", "onset_on", "resolved_on")},
    ),
    Rule(
        _suspected_procedures,
        {
            "adverse_events": ("participant_id", "suspected_procedure_id"),
            "procedures": ("procedure_id", "participant_id"),
        },
        across_participants=True,
    ),
    Rule(_report_ids, {"imaging_reports": ("report_id",)}, across_participants=True),
    Rule(_imaging_reports, {**_AT_VISITS, "imaging_reports": _AT_VISIT}),
    Rule(_imaging_findings, {"imaging_findings": ("report_id", "disc_level", "finding")}),
    Rule(
        _finding_reports,
        {"imaging_findings": ("report_id",), "imaging_reports": ("report_id",)},
        across_participants=True,
    ),
]
