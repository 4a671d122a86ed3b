"""The study tables as SQL on FHIR: ViewDefinitions of the resources an export holds, and the SQL
that joins their rows into the tables of the data contract.

This is the reverse mapping (``mappings.*.from_fhir``) written as data: a view flattens one
resource type, keeping references as keys (``getReferenceKey``) and codes as they are; the table
queries join the views and turn the project's codes back into the table keys (from
``terminology``, the one table of codes). A site can run the views on any SQL-on-FHIR engine and
the table queries on any SQL database.
"""

from __future__ import annotations

import json
import sys
from collections import namedtuple
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .. import terminology as term
from ..errors import InvalidDataError, Problem
from ..mappings import ROW_ORDER
from ..mappings.context import kind_of
from ..study import TABLES
from .dialects import DIALECTS, quote

VIEW_URL = f"{term.CANONICAL_BASE}/ViewDefinition"


def _column(name: str, path: str, kind: str = "string") -> dict[str, str]:
    return {"name": name, "path": path, "type": kind}


def _own_code(element: str) -> str:
    """The code of the project's CodeSystem in a CodeableConcept."""
    return f"{element}.coding.where(system = '{term.ADMSC}').code.first()"


def _code_in(element: str, system: str) -> str:
    return f"{element}.coding.where(system = '{system}').code.first()"


def _extension(name: str, then: str = "") -> str:
    """The value of one of the project's extensions (``then``: a path inside it)."""
    definition = term.EXTENSIONS[name]
    return f"extension('{definition.url}').value.ofType({definition.value_type}){then}.first()"


def _identifier(resource_type: str) -> str:
    system = term.identifier_system(kind_of(resource_type))
    return f"identifier.where(system = '{system}').value.first()"


def _reference(element: str, target: str) -> str:
    """The key of the ``target`` a reference points to; a reference that names no ``target``
    by Type/id gives its own text, which no key equals (the reference does not resolve)."""
    return f"({element}.getReferenceKey({target}) | {element}.reference).first()"


def _extension_reference(name: str, target: str) -> str:
    definition = term.EXTENSIONS[name]
    return _reference(f"extension('{definition.url}').value.ofType(Reference)", target)


def _view(name: str, resource: str, columns: list[dict[str, str]], **more: Any) -> dict[str, Any]:
    return {
        "resourceType": "ViewDefinition",
        "url": f"{VIEW_URL}/{name}",
        "name": name,
        "title": f"fhir-admsc: {resource} rows of the study tables",
        "status": "active",
        "fhirVersion": [term.FHIR_VERSION],
        "resource": resource,
        "select": [{"column": [_column("key", "getResourceKey()"), *columns]}],
        **more,
    }


def _subject() -> dict[str, str]:
    """The participant a record is about: its subject, a Patient."""
    return _column("patient", _reference("subject", "Patient"))


def _keyed(resource: str) -> dict[str, str]:
    return _column("record", _identifier(resource))


def study_views() -> dict[str, dict[str, Any]]:
    """Every ViewDefinition the study tables are built from, by name. Each is a Shareable and
    Tabular ViewDefinition: a URL, a name, the FHIR version, one typed primitive value a column
    (dates typed dateTime, as the Tabular profile's list of primitives has no date)."""
    views = [
        _view(
            "patients",
            "Patient",
            [
                _keyed("Patient"),
                _column("gender", "gender", "code"),
                _column("birth_date", "birthDate", "dateTime"),
            ],
        ),
        _view(
            "research_subjects",
            "ResearchSubject",
            [
                _column("patient", _reference("individual", "Patient")),
                _column("site", _extension_reference("study-site", "Location")),
                _column("status", "status", "code"),
                _column("enrolled_on", "period.start", "dateTime"),
                _column("withdrawn_on", "period.end", "dateTime"),
                _column("withdrawal_reason", _extension("withdrawal-reason")),
            ],
        ),
        _view("locations", "Location", [_keyed("Location")]),
        _view(
            "conditions",
            "Condition",
            [
                _subject(),
                _column("disc", _own_code("bodySite.first()"), "code"),
                _column("symptom_months", _extension("symptom-duration", ".value"), "decimal"),
            ],
        ),
        _view(
            "encounters",
            "Encounter",
            [
                _subject(),
                _column("visit", _own_code("type.first()"), "code"),
                _column("visit_date", "period.start", "dateTime"),
            ],
        ),
        _view(
            "procedures",
            "Procedure",
            [
                _keyed("Procedure"),
                _subject(),
                _column("code", _own_code("code"), "code"),
                _column("performed", "performed.ofType(dateTime)", "dateTime"),
                _column("disc", _own_code("bodySite.first()"), "code"),
                _column("injection_number", _extension("injection-number"), "integer"),
                _column("cell_dose", _extension("cell-dose", ".value"), "decimal"),
                _column("volume_ml", _extension("procedure-volume", ".value"), "decimal"),
                _column(
                    "product",
                    _extension_reference("cell-product", "BiologicallyDerivedProduct"),
                ),
                _column("guidance", _own_code(_extension("imaging-guidance")), "code"),
                _column("notes", "note.first().text"),
            ],
        ),
        _view(
            "cell_products",
            "BiologicallyDerivedProduct",
            [
                _keyed("BiologicallyDerivedProduct"),
                _column("viability_pct", _extension("cell-viability", ".value"), "decimal"),
                _column("harvest", _extension_reference("harvest-procedure", "Procedure")),
            ],
        ),
        _view(
            "observations",
            "Observation",
            [
                _subject(),
                _column("encounter", _reference("encounter", "Encounter")),
                _column("code", _own_code("code"), "code"),
                _column("value_integer", "value.ofType(integer)", "integer"),
                _column("value_decimal", "value.ofType(Quantity).value", "decimal"),
                _column("value_code", _own_code("value.ofType(CodeableConcept)"), "code"),
                _column("disc", _own_code("bodySite"), "code"),
            ],
        ),
        _view(
            "medication_statements",
            "MedicationStatement",
            [
                _subject(),
                _column("encounter", _reference("context", "Encounter")),
                _column("medication", "medication.ofType(CodeableConcept).text"),
                _column(
                    "rxnorm", _code_in("medication.ofType(CodeableConcept)", term.RXNORM), "code"
                ),
                _column("category", _own_code(_extension("analgesic-category")), "code"),
                _column(
                    "daily_dose",
                    "dosage.first().doseAndRate.first().rate.ofType(Ratio).numerator.value",
                    "decimal",
                ),
                _column(
                    "dose_unit",
                    "dosage.first().doseAndRate.first().rate.ofType(Ratio).numerator.unit",
                ),
                _column("status", "status", "code"),
            ],
        ),
        _view(
            "adverse_events",
            "AdverseEvent",
            [
                _keyed("AdverseEvent"),
                _subject(),
                _column("term", "event.text"),
                _column("snomed", _code_in("event", term.SNOMED), "code"),
                _column("onset", "date", "dateTime"),
                _column("resolved_on", _extension("ae-resolved-date"), "dateTime"),
                _column("severity", _code_in("severity", term.AE_SEVERITY), "code"),
                _column("seriousness", _code_in("seriousness", term.AE_SERIOUSNESS_SYSTEM), "code"),
                _column("outcome", _code_in("outcome", term.AE_OUTCOME), "code"),
                _column("causality", _own_code(_extension("ae-causality")), "code"),
                _column("suspected", _reference("suspectEntity.first().instance", "Procedure")),
                _column("expected", _extension("ae-expected"), "boolean"),
                _column("action_taken", _extension("ae-action-taken")),
            ],
        ),
        _view(
            "diagnostic_reports",
            "DiagnosticReport",
            [
                _keyed("DiagnosticReport"),
                _subject(),
                _column("encounter", _reference("encounter", "Encounter")),
                _column("study_date", "effective.ofType(dateTime)", "dateTime"),
                _column("imaging_study", _reference("imagingStudy.first()", "ImagingStudy")),
                _column("conclusion", "conclusion"),
            ],
        ),
        _view("report_results", "DiagnosticReport", []),
        _view(
            "research_studies",
            "ResearchStudy",
            [
                _keyed("ResearchStudy"),
                _column("title", "title"),
                _column("sponsor", _reference("sponsor", "Organization")),
            ],
        ),
        _view("organizations", "Organization", []),
        _view("study_sites", "ResearchStudy", []),
        _view(
            "imaging_studies",
            "ImagingStudy",
            [
                _column("modality", "modality.first().code", "code"),
                _column(
                    "study_uid", f"identifier.where(system = '{term.DICOM_UID}').value.first()"
                ),
            ],
        ),
    ]
    found = {view["name"]: view for view in views}
    found["report_results"]["select"] = [
        {
            "column": [_column("report", "getResourceKey()")],
            "select": [
                {
                    "forEach": "result",
                    "column": [
                        _column("observation", _reference("$this", "Observation")),
                        _column("position", "%rowIndex", "integer"),
                    ],
                }
            ],
        }
    ]
    found["study_sites"]["select"] = [
        {
            "column": [_column("study", "getResourceKey()")],
            "select": [
                {
                    "forEach": "site",
                    "column": [_column("location", _reference("$this", "Location"))],
                }
            ],
        }
    ]
    return found


# Every reference the reverse mappings follow: (view, column, the view of its target, where in
# FHIR it is). Each must resolve to a resource read, as FhirIndex.resolve demands.
REFERENCES = [
    ("research_subjects", "patient", "patients", "ResearchSubject.individual"),
    ("research_subjects", "site", "locations", "ResearchSubject.extension (study-site)"),
    ("research_studies", "sponsor", "organizations", "ResearchStudy.sponsor"),
    ("study_sites", "location", "locations", "ResearchStudy.site"),
    ("conditions", "patient", "patients", "Condition.subject"),
    ("encounters", "patient", "patients", "Encounter.subject"),
    ("procedures", "patient", "patients", "Procedure.subject"),
    ("procedures", "product", "cell_products", "Procedure.extension (cell-product)"),
    ("cell_products", "harvest", "procedures", "BiologicallyDerivedProduct.extension"),
    ("observations", "patient", "patients", "Observation.subject"),
    ("observations", "encounter", "encounters", "Observation.encounter"),
    ("medication_statements", "patient", "patients", "MedicationStatement.subject"),
    ("medication_statements", "encounter", "encounters", "MedicationStatement.context"),
    ("adverse_events", "patient", "patients", "AdverseEvent.subject"),
    ("adverse_events", "suspected", "procedures", "AdverseEvent.suspectEntity.instance"),
    ("diagnostic_reports", "patient", "patients", "DiagnosticReport.subject"),
    ("diagnostic_reports", "encounter", "encounters", "DiagnosticReport.encounter"),
    ("diagnostic_reports", "imaging_study", "imaging_studies", "DiagnosticReport.imagingStudy"),
    ("report_results", "observation", "observations", "DiagnosticReport.result"),
]


def dangling_query() -> str:
    """The references that resolve to no resource read: (where, reference key), at most a few
    of each kind."""
    parts = [
        f"SELECT {quote(where)} AS element, v.{column} AS reference FROM {view} v "
        f"WHERE v.{column} IS NOT NULL AND NOT EXISTS "
        f"(SELECT 1 FROM {target} t WHERE t.key = v.{column})"
        for view, column, target, where in REFERENCES
    ]
    return " UNION ALL ".join(parts)


def check_references(dangling: list[tuple[str, str]]) -> None:
    """Raise InvalidDataError for references that resolve to nothing read (``dangling_query``'s
    rows), as the reverse mappings do."""
    if dangling:
        raise InvalidDataError(
            [
                Problem(where, f"refers to {reference}, which is not among the resources read")
                for where, reference in sorted(dangling)
            ],
            subject="the FHIR input",
        )


# -- the tables ---------------------------------------------------------------------------------


def _key_of(column: str) -> str:
    """The record key inside a business identifier's value (``<study_id>/<key>``)."""
    return f"substr({column}, instr({column}, '/') + 1)"


def _case(column: str, pairs: Iterable[tuple[str, str]]) -> str:
    """``column`` translated by ``pairs`` (from, to); anything else is NULL."""
    whens = " ".join(f"WHEN {quote(a)} THEN {quote(b)}" for a, b in pairs)
    return f"CASE {column} {whens} END"


def _keys(table: dict[str, term.Concept]) -> list[tuple[str, str]]:
    """(project code, table key) of a table of concepts."""
    return [(concept.code, key) for key, concept in table.items()]


def _number_text(column: str, text: str) -> str:
    """A decimal as the tables write it: no '.0' on a whole number (``text``: the engine's text
    type)."""
    return (
        f"CASE WHEN {column} = floor({column}) THEN CAST(CAST({column} AS BIGINT) AS {text}) "
        f"ELSE CAST({column} AS {text}) END"
    )


def _measure_value(measures: dict[str, term.Measure], alias: str, text: str) -> str:
    """An Observation's value as its measure's table keeps it, as text."""
    presence = _case(f"{alias}.value_code", _keys(term.PRESENCE))
    integer = f"CAST({alias}.value_integer AS {text})"
    decimal = _number_text(f"{alias}.value_decimal", text)
    kinds = {m.concept.code: m.kind for m in measures.values()}
    whens = " ".join(
        f"WHEN {quote(code)} THEN "
        + {"presence": presence, "integer": integer, "decimal": decimal}[kind]
        for code, kind in kinds.items()
    )
    return f"CASE {alias}.code {whens} END"


def _measures(measures: dict[str, term.Measure]) -> list[tuple[str, str]]:
    return [(m.concept.code, m.key) for m in measures.values()]


def table_queries(engine: str = "duckdb") -> dict[str, str]:
    """The SQL of each study table over the views (each view a relation of its name), in the
    SQL of ``engine``; and ``study``, the study's id and title."""
    text = DIALECTS[engine].text_type
    participant = _key_of("p.record")
    visit = _case("e.visit", _keys(term.VISITS))
    return {
        "participants": (
            f"SELECT {participant} AS participant_id, p.gender AS sex, "
            "CAST(substr(p.birth_date, 1, 4) AS INTEGER) AS birth_year, "
            f"{_key_of('l.record')} AS site_id, substr(s.enrolled_on, 1, 10) AS enrolled_on, "
            f"{_case('c.disc', _keys(term.DISC_LEVELS))} AS disc_level, "
            "c.symptom_months AS symptom_months, s.status AS status, "
            "substr(s.withdrawn_on, 1, 10) AS withdrawn_on, "
            "s.withdrawal_reason AS withdrawal_reason "
            "FROM research_subjects s JOIN patients p ON p.key = s.patient "
            "LEFT JOIN locations l ON l.key = s.site "
            "LEFT JOIN conditions c ON c.patient = s.patient"
        ),
        "visits": (
            f"SELECT {participant} AS participant_id, {visit} AS visit, "
            "substr(e.visit_date, 1, 10) AS visit_date "
            "FROM encounters e JOIN patients p ON p.key = e.patient"
        ),
        "procedures": (
            f"SELECT {participant} AS participant_id, {_key_of('x.record')} AS procedure_id, "
            f"{_case('x.code', _keys(term.PROCEDURES))} AS type, "
            "substr(x.performed, 1, 10) AS performed_on, "
            f"{_case('x.disc', _keys(term.DISC_LEVELS))} AS disc_level, "
            "x.injection_number AS injection_number, x.cell_dose AS cell_dose, "
            f"x.volume_ml AS volume_ml, {_key_of('b.record')} AS product_lot, "
            f"b.viability_pct AS viability_pct, {_key_of('h.record')} AS harvest_procedure_id, "
            f"{_case('x.guidance', _keys(term.GUIDANCE))} AS guidance, x.notes AS notes "
            "FROM procedures x JOIN patients p ON p.key = x.patient "
            "LEFT JOIN cell_products b ON b.key = x.product "
            "LEFT JOIN procedures h ON h.key = b.harvest"
        ),
        "outcomes": (
            f"SELECT {participant} AS participant_id, {visit} AS visit, "
            f"{_case('o.code', _measures(term.OUTCOME_MEASURES))} AS measure, "
            f"{_measure_value(term.OUTCOME_MEASURES, 'o', text)} AS value "
            "FROM observations o JOIN patients p ON p.key = o.patient "
            "JOIN encounters e ON e.key = o.encounter "
            f"WHERE o.code IN ({', '.join(quote(c) for c, _ in _measures(term.OUTCOME_MEASURES))})"
        ),
        "medications": (
            f"SELECT {participant} AS participant_id, {visit} AS visit, "
            "m.medication AS medication, m.rxnorm AS rxnorm, "
            f"{_case('m.category', _keys(term.ANALGESIC_CATEGORIES))} AS category, "
            "m.daily_dose AS daily_dose, m.dose_unit AS dose_unit, "
            f"{_case('m.status', [(f, t) for t, f in term.MEDICATION_STATUS.items()])} AS status "
            "FROM medication_statements m JOIN patients p ON p.key = m.patient "
            "JOIN encounters e ON e.key = m.encounter"
        ),
        "adverse_events": (
            f"SELECT {participant} AS participant_id, {_key_of('a.record')} AS event_id, "
            "a.term AS term, a.snomed AS snomed, substr(a.onset, 1, 10) AS onset_on, "
            "a.resolved_on AS resolved_on, a.severity AS severity, "
            f"coalesce(a.seriousness = {quote(term.AE_SERIOUSNESS[True])}, false) AS serious, "
            "a.outcome AS outcome, "
            f"{_case('a.causality', _keys(term.CAUSALITY))} AS causality, "
            f"{_key_of('x.record')} AS suspected_procedure_id, a.expected AS expected, "
            "a.action_taken AS action_taken "
            "FROM adverse_events a JOIN patients p ON p.key = a.patient "
            "LEFT JOIN procedures x ON x.key = a.suspected"
        ),
        "imaging_reports": (
            f"SELECT {participant} AS participant_id, {visit} AS visit, "
            f"{_key_of('d.record')} AS report_id, substr(d.study_date, 1, 10) AS study_date, "
            "i.modality AS modality, "
            "CASE WHEN i.study_uid LIKE 'urn:oid:%' THEN substr(i.study_uid, 9) "
            "ELSE i.study_uid END AS study_uid, d.conclusion AS conclusion "
            "FROM diagnostic_reports d JOIN patients p ON p.key = d.patient "
            "JOIN encounters e ON e.key = d.encounter "
            "LEFT JOIN imaging_studies i ON i.key = d.imaging_study"
        ),
        "study": f"SELECT {_key_of('s.record')} AS study_id, s.title AS title FROM research_studies s",
        "imaging_findings": (
            f"SELECT {_key_of('d.record')} AS report_id, "
            f"{_case('o.disc', _keys(term.DISC_LEVELS))} AS disc_level, "
            f"{_case('o.code', _measures(term.IMAGING_FINDINGS))} AS finding, "
            f"{_measure_value(term.IMAGING_FINDINGS, 'o', text)} AS value "
            "FROM report_results r JOIN diagnostic_reports d ON d.key = r.report "
            "JOIN observations o ON o.key = r.observation ORDER BY d.record, r.position"
        ),
    }


def view_files() -> dict[str, str]:
    """The study's views and table queries as files: ``ViewDefinition-<name>.json`` each, and
    ``<table>.sql`` (DuckDB) over relations named as the views."""
    files = {
        f"ViewDefinition-{name}.json": json.dumps(view, indent=2) + "\n"
        for name, view in study_views().items()
    }
    files.update({f"{table}.sql": sql + ";\n" for table, sql in table_queries().items()})
    return files


# -- rows for the report ------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyRows:
    """The study tables as rows (named tuples with the contract's columns) and the study's id
    and title: what the report reads, whether from the reverse mappings or from the views."""

    info: Any
    participants: list[Any]
    visits: list[Any]
    procedures: list[Any]
    outcomes: list[Any]
    medications: list[Any]
    adverse_events: list[Any]
    imaging_reports: list[Any]
    imaging_findings: list[Any]


_KINDS = {m.key: m.kind for m in [*term.OUTCOME_MEASURES.values(), *term.IMAGING_FINDINGS.values()]}


def _typed(key: str, text: str | None) -> Any:
    """A measure's value as the study tables hold it: an integer, a number or a code."""
    if text is None or _KINDS.get(key) == "presence":
        return text
    return int(text) if _KINDS.get(key) == "integer" else float(text)


def study_rows(tables: dict[str, tuple[list[str], list[tuple[Any, ...]]]]) -> StudyRows:
    """The rows of the tables that the views and table queries gave."""
    found: dict[str, list[Any]] = {}
    for name in list(tables):
        columns, rows = tables.pop(name)  # each table's tuples freed as its rows are made
        row = namedtuple(name, columns)  # type: ignore[misc]  # noqa: PYI024
        typed = columns.index("value") if name in ("outcomes", "imaging_findings") else -1
        key = columns.index("measure" if name == "outcomes" else "finding") if typed >= 0 else 0
        made = []
        for r in rows:
            # ids, visits and codes repeat in every row: one string each
            cells = [
                sys.intern(c) if isinstance(c, str) and i != typed else c for i, c in enumerate(r)
            ]
            if typed >= 0:
                cells[typed] = _typed(cells[key], cells[typed])
            made.append(row(*cells))
        found[name] = made
    _check_required(found)
    for name, key in ROW_ORDER.items():  # the contract's order, as the reverse mappings give
        found[name].sort(key=key)
    rank = {r.report_id: i for i, r in enumerate(found["imaging_reports"])}
    found["imaging_findings"].sort(key=lambda f: rank.get(f.report_id, len(rank)))
    studies = found.pop("study")
    if len(studies) != 1:
        problem = f"hold {len(studies)} ResearchStudy resources: expected exactly one"
        raise InvalidDataError([Problem("FHIR resources", problem)])
    return StudyRows(info=studies[0], **found)


def _check_required(found: dict[str, list[Any]]) -> None:
    """Raise InvalidDataError when rows lack what the data contract requires (a resource
    without the element a required column is read from)."""
    problems = []
    for table in TABLES:
        for column, definition in table.model.model_fields.items():
            if definition.is_required():
                empty = sum(getattr(row, column) is None for row in found[table.attribute])
                if empty:
                    problems.append(
                        Problem(
                            "FHIR resources",
                            f"give {empty} {table.attribute} row(s) without {column}, "
                            "which the study tables require",
                        )
                    )
    if problems:
        raise InvalidDataError(problems, subject="the FHIR input")
