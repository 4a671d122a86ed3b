"""The study data contract in words, and the empty study folder a user starts from.

The Study model says which files, columns, types and codes a study folder has; this module says
what they mean and which rules join the tables, and renders both into the contract page, so that
the page cannot drift from what the reader checks. ``python -m fhir_admsc.contract [PATH]``
rewrites the page (by default the one of the source tree).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from fhir_admsc import study
from fhir_admsc import terminology as term
from fhir_admsc.defaults import DEFAULT_STUDY_ID
from fhir_admsc.errors import ConfigurationError
from fhir_admsc.output import refuse_non_empty_folder, write_atomic, write_files
from fhir_admsc.study import INJECTION_COLUMNS, STUDY_FILE, TABLES, Arm, StudyInfo
from fhir_admsc.tables import CsvText, study_info_json

# The contract page, relative to the root of the source tree.
PAGE = "docs/study-data.md"


_MODELS: dict[str, type[BaseModel]] = {STUDY_FILE: StudyInfo} | {t.file: t.model for t in TABLES}
_REQUIRED: dict[str, bool] = {STUDY_FILE: True} | {t.file: t.required for t in TABLES}

# What each file holds.
FILES: dict[str, str] = {
    STUDY_FILE: "One JSON object: the study itself, its arm and its sites.",
    "participants.csv": "One row per participant.",
    "visits.csv": "One row per visit a participant attended.",
    "procedures.csv": "One row per procedure: a harvest (abdominal lipoaspiration) or an "
    "injection (intradiscal injection of the cells grown from a harvest).",
    "outcomes.csv": "Long format: one row per participant, visit and outcome measure.",
    "medications.csv": "One row per participant, visit and analgesic.",
    "adverse_events.csv": "One row per adverse event.",
    "imaging_reports.csv": "One row per MRI report.",
    "imaging_findings.csv": "Long format: one row per report, disc level and finding.",
}

_PARTICIPANT = "The participant: a `participant_id` of participants.csv."
_VISIT = "The visit of the study's schedule."

# What each column (or key of study.json; nested keys as `arm.name`, `sites[].name`) means.
MEANINGS: dict[str, dict[str, str]] = {
    STUDY_FILE: {
        "study_id": "Short name of the study, e.g. `ADMSC-FSO794`: the namespace of every "
        "identifier in the FHIR output, so changing it later gives every record a new identity.",
        "title": "Scientific title.",
        "registry_id": "Trial registration, e.g. `ACTRN12617000636358`.",
        "status": "Where the study stands (FHIR research-study-status).",
        "sponsor": "Name of the sponsoring organisation.",
        "start": "First day of the study.",
        "end": "Last day of the study.",
        "arm": "The study arm every participant is assigned to.",
        "arm.name": "Short name of the arm, e.g. `admsc-10m`.",
        "arm.description": "What the arm's participants receive, e.g. "
        '"ADMSC 10 million cells intradiscal".',
        "sites": "The study sites, for participants.csv `site_id`.",
        "sites[].site_id": "Identifier of the site.",
        "sites[].name": "Name of the site.",
    },
    "participants.csv": {
        "participant_id": "Pseudonymous identifier of the participant (never a name or a "
        "hospital number).",
        "sex": "Administrative sex (FHIR administrative-gender).",
        "birth_year": "Year of birth, 1900 to 2100; the year only, never a full birth date.",
        "site_id": "The study site: a `site_id` of the `sites` of study.json.",
        "enrolled_on": "Date of enrolment.",
        "disc_level": "The index disc: the lumbar disc the study treats.",
        "symptom_months": "Duration of back pain at enrolment, in months (0 or more).",
        "status": "Where the participant stands in the study (FHIR research-subject-status).",
        "withdrawn_on": "Date of withdrawal from the study.",
        "withdrawal_reason": "Why the participant withdrew, as recorded.",
    },
    "visits.csv": {
        "participant_id": _PARTICIPANT,
        "visit": _VISIT,
        "visit_date": "Date of the visit.",
    },
    "procedures.csv": {
        "participant_id": _PARTICIPANT,
        "procedure_id": "Identifier of the procedure.",
        "type": "`harvest`: abdominal lipoaspiration; `injection`: intradiscal injection of "
        "autologous adipose-derived mesenchymal stem cells.",
        "performed_on": "Date of the procedure.",
        "disc_level": "The disc injected.",
        "injection_number": "`1` for the first injection, `2` for the optional repeat "
        "(about 6 months later).",
        "cell_dose": "Number of cells injected, greater than 0, e.g. `10000000`.",
        "volume_ml": "Injected volume in mL, or for a harvest the lipoaspirate volume in mL; "
        "greater than 0.",
        "product_lot": "Lot of the cell product injected; the injections of one participant "
        "may share a lot.",
        "viability_pct": "Cell viability of the lot, percent, 0 to 100.",
        "harvest_procedure_id": "The harvest the lot was grown from: its `procedure_id`.",
        "guidance": "Imaging used to guide the procedure.",
        "notes": "Free text.",
    },
    "outcomes.csv": {
        "participant_id": _PARTICIPANT,
        "visit": "The visit the measure was taken at.",
        "measure": "What was measured.",
        "value": "The value measured, of its measure's kind, range and unit.",
    },
    "medications.csv": {
        "participant_id": _PARTICIPANT,
        "visit": "The visit the medication was recorded at.",
        "medication": "Name of the analgesic as recorded.",
        "rxnorm": "RxNorm concept id of the medication, when known.",
        "category": "Drug class of the analgesic.",
        "daily_dose": "Daily dose in `dose_unit`, 0 or more.",
        "dose_unit": "UCUM unit of `daily_dose`, e.g. `mg`.",
        "status": "`taking` at the visit, or `stopped`.",
    },
    "adverse_events.csv": {
        "participant_id": _PARTICIPANT,
        "event_id": "Identifier of the event.",
        "term": 'What happened, as recorded, e.g. "pain flare after injection".',
        "snomed": "SNOMED CT code of the event, when known.",
        "onset_on": "Date the event began.",
        "resolved_on": "Date the event resolved.",
        "severity": "How severe the event was.",
        "serious": "Whether the event was serious.",
        "outcome": "Outcome of the event (FHIR adverse-event-outcome).",
        "causality": "How likely the study treatment caused the event.",
        "suspected_procedure_id": "The procedure suspected to have caused the event: its "
        "`procedure_id`.",
        "expected": "Whether the protocol anticipated the event.",
        "action_taken": "What was done in response, as recorded.",
    },
    "imaging_reports.csv": {
        "participant_id": _PARTICIPANT,
        "visit": "The visit of the MRI: `baseline` and `month12` in the trial's protocol; other "
        "visits are allowed.",
        "report_id": "Identifier of the report.",
        "study_date": "Date of the imaging study.",
        "modality": "DICOM modality code of the imaging study.",
        "study_uid": "DICOM Study Instance UID of the imaging study.",
        "conclusion": "The report's conclusion, free text.",
    },
    "imaging_findings.csv": {
        "report_id": "The report: a `report_id` of imaging_reports.csv.",
        "disc_level": "The disc the finding is about.",
        "finding": "What was assessed.",
        "value": "The value found, of its finding's kind, range and unit.",
    },
}

# Optional columns that some rows must fill in: what the page says in the "required" cell.
REQUIRED_WHEN: dict[str, dict[str, str]] = {
    "participants.csv": {"withdrawn_on": "when `status` is `withdrawn`"},
    "procedures.csv": {
        column: "for an injection" if needed else "no (injections only)"
        for column, needed in INJECTION_COLUMNS.items()
    },
}

_IN_PARTICIPANTS = "`participant_id` is a participant of participants.csv."
_IN_VISITS = "The participant's `visit` is in visits.csv: the visit took place."

# The rules that join rows and tables, which the reader checks after each row.
RULES: dict[str, list[str]] = {
    STUDY_FILE: [
        "`end` is not before `start`.",
        "`site_id` is unique among the sites.",
    ],
    "participants.csv": [
        "`participant_id` is unique.",
        "`site_id` is the `site_id` of one of the `sites` of study.json.",
        "`withdrawn_on` is required when `status` is `withdrawn`; it is not before `enrolled_on`.",
    ],
    "visits.csv": [
        _IN_PARTICIPANTS,
        "One row per participant and visit.",
        "`visit_date` is not before the participant's `enrolled_on`.",
        "A participant's visits are dated in the order of the schedule ("
        + ", ".join(f"`{visit}`" for visit in term.VISIT_ORDER)
        + "): each one after those before it.",
    ],
    "procedures.csv": [
        _IN_PARTICIPANTS,
        "`procedure_id` is unique.",
        "A harvest leaves the columns of injections ("
        + ", ".join(f"`{column}`" for column in INJECTION_COLUMNS)
        + ") empty; an injection fills in all of them but `viability_pct`.",
        "`harvest_procedure_id` is the `procedure_id` of a harvest of the same participant, "
        "performed on or before the injection.",
        "A participant has at most one injection of each `injection_number`; an injection `2` "
        "comes after the participant's injection `1`.",
        "The injections of one `product_lot` are of one participant and have the same "
        "`viability_pct` and `harvest_procedure_id`.",
    ],
    "outcomes.csv": [
        _IN_PARTICIPANTS,
        _IN_VISITS,
        "One row per participant, visit and measure.",
    ],
    "medications.csv": [
        _IN_PARTICIPANTS,
        _IN_VISITS,
        "One row per participant, visit and `medication`.",
    ],
    "adverse_events.csv": [
        _IN_PARTICIPANTS,
        "`event_id` is unique.",
        "`resolved_on` is not before `onset_on`.",
        "`suspected_procedure_id` is the `procedure_id` of a procedure of the same participant.",
    ],
    "imaging_reports.csv": [
        _IN_PARTICIPANTS,
        _IN_VISITS,
        "`report_id` is unique.",
    ],
    "imaging_findings.csv": [
        "`report_id` is a report of imaging_reports.csv.",
        "One row per report, disc level and finding.",
    ],
}


@dataclass(frozen=True)
class _LongTable:
    """A table of one row per value: the column naming what was measured, the column of the
    value, and the measures (or findings) with their kind, range and unit."""

    title: str
    key: str
    value: str
    measures: dict[str, term.Measure]


_LONG_TABLES = {
    "outcomes.csv": _LongTable("Measures", "measure", "value", term.OUTCOME_MEASURES),
    "imaging_findings.csv": _LongTable("Findings", "finding", "value", term.IMAGING_FINDINGS),
}

_NUMBER = (
    "number",
    "digits with `.` as the decimal point, no thousands separator, no exponent: `92.5`",
)
# The value types of the Study model: the name the page gives each, and how a value is written.
_TYPES: dict[Any, tuple[str, str]] = {
    study.Identifier: (
        "identifier",
        "letters, digits, `.`, `_` and `-`, beginning with a letter or digit, at most 64 "
        "characters: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`",
    ),
    study.Date: ("date", "ISO 8601 `YYYY-MM-DD`, e.g. `2017-06-05`"),
    study.Integer: ("integer", "digits, with a sign if need be: `10000000`, `-2`"),
    study.Number: _NUMBER,
    study.Boolean: ("boolean", "`true` or `false`"),
    study.Text: (
        "text",
        "any text that is not blank, without control characters (tabs and line breaks are allowed)",
    ),
    study.DicomUid: (
        "DICOM UID",
        "digits and dots, without leading zeros, at most 64 characters: `1.2.840.113619.2.55`",
    ),
    study.SnomedCode: (
        "SNOMED CT code",
        "a SNOMED CT identifier: 6 to 18 digits, check digit valid",
    ),
    study.RxNormCode: ("RxNorm code", "an RxNorm concept id: digits"),
    study.UcumUnit: ("UCUM unit", "a UCUM unit code, printable ASCII without spaces: `mg`, `mL`"),
    # the values of the long tables, whose kind each measure or finding sets
    int | float: _NUMBER,
    int | float | str: ("number or code", "a number, or a code, as the table of findings says"),
}
_CODE = ("code", "one of the codes listed, exactly as written (letter case counts)")
_OBJECT = ("object", "a JSON object of the keys listed")
_LIST = ("list of objects", "a JSON list of objects of the keys listed")

INTRO = """\
# Study data

<!-- Generated from the study model by `python -m fhir_admsc.contract`: edit
fhir_admsc/contract.py, not this page. -->

A study folder holds the data of one study: `study.json` with the study itself, and one CSV table
per kind of record. `fhir-admsc export FOLDER` reads it and maps it to FHIR R4; `fhir-admsc pull`
writes one back from a FHIR server; `fhir-admsc template -o FOLDER` writes an empty one to fill in.
The reader checks every rule of this page and reports every defect with its file, line, column
and value; nothing is exported while one remains."""

FORMAT = """\
## File format

- Text is UTF-8, with or without a byte order mark; lines end in LF or CRLF.
- A table is comma-separated values: a header row naming the columns, then one row per record.
  Cells are quoted as RFC 4180 says: a cell holding a comma, a double quote or a line break is
  enclosed in double quotes, and a double quote inside it is doubled (`"a ""quoted"" word"`).
- Columns may come in any order. A required column must be in the header; an optional one may be
  left out of it. A column this page does not name is an error (a misspelt column must not lose
  its data), and so is a column named twice. Every row has as many cells as the header.
- An empty cell means "not recorded": it is an error in a required column. Rows of empty cells
  and blank lines are skipped.
- `study.json` is one JSON object with the keys listed below; a key not listed is an error.
- A file that looks like a table but is not one of the files below (`outcomes (1).csv`,
  `Outcomes.xlsx`, `notes.txt`) is an error, so that no table is silently left out; other files
  (`README.md`, `.DS_Store`) are ignored with a warning.

Values are written as their type says:"""

EXCEL = """\
## Saving from Excel

- Save each table with File > Save As as "CSV UTF-8 (Comma delimited)", under its name on this
  page.
- Before saving, format every date column as `yyyy-mm-dd` (Format Cells > Custom); otherwise Excel
  writes dates the way the computer's region shows them.
- Read as Excel writes them: `TRUE` and `FALSE`; dates that carry a midnight time
  (`2017-06-05 00:00:00`, any other time of day is an error); rows of empty cells after the data;
  the byte order mark and CRLF line ends.
- Refused, each with a message that says how to fix it: cells separated by `;` (what Excel writes
  where the region's list separator is `;`) or by tabs ("Text (Tab delimited)"); UTF-16 text
  ("Unicode Text"); Windows-1252 text (the plain "CSV (Comma delimited)"), once it holds a
  character beyond ASCII such as `é`; a workbook saved under a `.csv` name; and dates such as
  `05/06/2017`, whose day and month cannot be told apart."""


@dataclass(frozen=True)
class Column:
    """One column of a table, or key of study.json, as the contract page lists it."""

    name: str
    required: str
    type: str
    values: str
    meaning: str


def keys(file: str) -> list[str]:
    """The columns of a table, or the keys of study.json (nested ones as `arm.name`,
    `sites[].name`), in contract order."""
    return [name for name, _, _ in _fields(_MODELS[file])]


def columns(file: str) -> list[Column]:
    """Every column of a table, or key of study.json, with what the page says of it."""
    long = _LONG_TABLES.get(file)
    found = []
    for name, field, kind in _fields(_MODELS[file]):
        values = _codes(kind)
        if long and name == long.key:
            values = f"a {name} of the table below"
        elif long and name == long.value:
            values = f"as its {long.key} says in the table below"
        required = REQUIRED_WHEN.get(file, {}).get(name, "yes" if field.is_required() else "no")
        found.append(Column(name, required, _type(kind)[0], values, MEANINGS[file][name]))
    return found


def page() -> str:
    """The contract page: every file, column, type, code, unit and rule of a study folder."""
    files = _table(
        ["file", "required", "holds"],
        [[f"`{file}`", _file_required(file), FILES[file]] for file in FILES],
    )
    used = {_type(kind) for file in FILES for _, _, kind in _fields(_MODELS[file])}
    kinds = [
        kind for kind in dict.fromkeys([*_TYPES.values(), _CODE, _OBJECT, _LIST]) if kind in used
    ]
    sections = [INTRO, "## Files", files, FORMAT, _table(["type", "written as"], kinds), EXCEL]
    for file in FILES:
        sections += _section(file)
    return "\n\n".join(sections) + "\n"


def _section(file: str) -> list[str]:
    """The part of the page on one file: what it holds, its columns, its rules, its measures."""
    header = ["key" if file == STUDY_FILE else "column", "required", "type", "values", "meaning"]
    rows = [[f"`{c.name}`", c.required, c.type, c.values, c.meaning] for c in columns(file)]
    rules = "\n".join(f"- {rule}" for rule in RULES[file])
    parts = [
        f"## {file}",
        f"{_file_required(file).capitalize()}. {FILES[file]}",
        _table(header, rows),
        f"Rules:\n\n{rules}",
    ]
    long = _LONG_TABLES.get(file)
    if long:
        parts += [f"### {long.title}", _measures(long)]
    return parts


def _measures(long: _LongTable) -> str:
    """The table of the measures (or findings) of a long table: value, unit and meaning."""
    rows = [
        [
            f"`{m.key}`",
            " or ".join(f"`{code}`" for code in term.PRESENCE)
            if m.kind == "presence"
            else m.expected(),
            f"`{m.unit[0]}` ({m.unit[1]})" if m.unit else "",
            m.concept.display,
        ]
        for m in long.measures.values()
    ]
    return _table([long.key, "value", "unit", "meaning"], rows)


def _file_required(file: str) -> str:
    """Whether a study folder must have ``file``, as the page says it."""
    return "required" if _REQUIRED[file] else "optional: may be absent when it has no rows"


def _table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def _fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, FieldInfo, Any]]:
    """Each key of ``model`` and of the objects it holds: its name, its field and its type."""
    for name, field in model.model_fields.items():
        kind = _bare(field)
        yield prefix + name, field, kind
        inner = get_args(kind)[0] if get_origin(kind) is list else kind
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            yield from _fields(inner, f"{prefix}{name}{'[]' if inner is not kind else ''}.")


def _bare(field: FieldInfo) -> Any:
    """A field's type as the Study model spells it (``Identifier``, ``Date``...), without
    ``| None``."""
    kind = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    if get_origin(kind) in (Union, types.UnionType):
        rest = [arg for arg in get_args(kind) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return kind


def _type(kind: Any) -> tuple[str, str]:
    """The name of a value type and how its values are written."""
    if get_origin(kind) is Literal:
        codes = get_args(kind)
        return _TYPES[study.Integer] if all(isinstance(c, int) for c in codes) else _CODE
    if get_origin(kind) is list:
        return _LIST
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return _OBJECT
    if kind in _TYPES:
        return _TYPES[kind]
    raise ValueError(f"the contract page has no name for the type {kind!r}: add it to _TYPES")


def _codes(kind: Any) -> str:
    """The allowed codes of a type, or nothing when it is not a list of codes."""
    if get_origin(kind) is not Literal:
        return ""
    return " ".join(f"`{code}`" for code in get_args(kind))


def template_info(study_id: str = DEFAULT_STUDY_ID) -> StudyInfo:
    """The study.json of an empty study folder: placeholders to replace, valid as they are."""
    try:
        return StudyInfo(
            study_id=study_id,
            title="Replace with the scientific title of the study",
            status="active",
            arm=Arm(
                name="Replace with a short name of the arm",
                description="Replace with what the participants of the arm receive",
            ),
        )
    except ValidationError as e:
        detail = e.errors()[0]
        reason = detail.get("ctx", {}).get("error", detail["msg"])
        raise ConfigurationError(f"study id {study_id!r} {reason}") from None


def write_template(
    folder: str | Path, study_id: str = DEFAULT_STUDY_ID, force: bool = False
) -> list[str]:
    """Write an empty study folder atomically: a study.json of placeholders and every table's
    header row, columns in contract order; refuse a non-empty folder unless ``force`` (then only
    its study files are replaced). The names of the files written."""
    folder = Path(folder)
    contents = {STUDY_FILE: study_info_json(template_info(study_id)).encode()}
    contents |= {table.file: CsvText(table.columns).value().encode() for table in TABLES}
    refuse_non_empty_folder(folder, force)
    write_files(folder, contents)
    return list(contents)


def main(arguments: list[str] | None = None) -> None:
    """Rewrite the contract page: the one given, else the one of the source tree."""
    given = sys.argv[1:] if arguments is None else arguments
    path = Path(given[0]) if given else Path(__file__).resolve().parent.parent / PAGE
    write_atomic(path, page().encode())


if __name__ == "__main__":
    main()
