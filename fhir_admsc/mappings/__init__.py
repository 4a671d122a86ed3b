"""Mappings between the Study model and FHIR R4 resources, one module per family, both directions."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fhir_admsc import terminology as term
from fhir_admsc.errors import InvalidDataError, Problem
from fhir_admsc.mappings import adverse_events, imaging, medications, observations, procedures
from fhir_admsc.mappings import study as study_family
from fhir_admsc.mappings.context import FhirIndex, StudyContext, explain
from fhir_admsc.study import Study, StudyInfo

FAMILIES = [study_family, procedures, observations, medications, adverse_events, imaging]
# What each family makes of the table rows, in the order of FAMILIES; the study family's
# study-level resources come from study.json alone (study_level_to_fhir).
ROW_MAPPINGS = [
    study_family.participants_to_fhir,
    procedures.to_fhir,
    observations.to_fhir,
    medications.to_fhir,
    adverse_events.to_fhir,
    imaging.to_fhir,
]

__all__ = [
    "FAMILIES",
    "in_contract_order",
    "rows_to_fhir",
    "study_from_fhir",
    "study_level_to_fhir",
    "study_to_fhir",
]


def study_to_fhir(study: Study) -> Iterator[dict[str, Any]]:
    """Every resource of ``study``, family by family, in a stable order."""
    yield from study_level_to_fhir(study.info)
    for _, resource in rows_to_fhir(study):
        yield resource


def study_level_to_fhir(info: StudyInfo) -> Iterator[dict[str, Any]]:
    """The resources of study.json alone: ResearchStudy, sponsor Organization, site Locations."""
    yield from study_family.study_level(info, StudyContext(info.study_id))


def rows_to_fhir(study: Study) -> Iterator[tuple[int, dict[str, Any]]]:
    """The resources of ``study``'s table rows, each with the position in ROW_MAPPINGS of the
    mapping that made it.

    ``study`` may also be a part of a study: some participants with all their rows. Mapping the
    parts one after the other gives the resources of the whole, in the same order for each resource
    type and mapping.
    """
    ctx = StudyContext(study.info.study_id)
    for position, mapping in enumerate(ROW_MAPPINGS):
        for resource in mapping(study, ctx):
            yield position, resource


def study_from_fhir(resources: Iterable[dict[str, Any]]) -> Study:
    """The Study that ``resources`` (one study's export or pull, in any order) carry, its rows in
    the contract's order; resources without the shape of an export are an InvalidDataError (the
    reading of one row names its resource)."""
    tables: dict[str, Any] = {}
    try:
        index = FhirIndex(resources)
        for family in FAMILIES:
            tables.update(family.from_fhir(index))
    except (AttributeError, KeyError, IndexError, TypeError) as e:
        problem = f"do not have the shape of a fhir-admsc export: {explain(e)}"
        raise InvalidDataError([Problem("FHIR resources", problem)]) from None
    return in_contract_order(Study(**tables))


def natural(text: str) -> tuple[tuple[str | int, ...], str]:
    """The sort key of ``text`` in natural order: runs of digits compare as numbers (P2 before
    P10), and the text itself settles ties (P01 before P1)."""
    parts = re.split(r"(\d+)", text)  # text at even positions, digits at odd ones
    return tuple(int(part) if i % 2 else part for i, part in enumerate(parts)), text


VISIT_RANK = {visit: rank for rank, visit in enumerate(term.VISIT_ORDER)}
MEASURE_RANK = {measure: rank for rank, measure in enumerate(term.OUTCOME_MEASURES)}
# The order of each table's rows (but the findings', which follow their reports), as the demo and
# synthetic study folders list them: participants by id, every other table grouped by participant
# in that order, then by visit in schedule order, date, or measure in the contract's order.
ROW_ORDER: dict[str, Callable[[Any], tuple[Any, ...]]] = {
    "participants": lambda p: (natural(p.participant_id),),
    "visits": lambda v: (natural(v.participant_id), VISIT_RANK[v.visit]),
    "procedures": lambda p: (natural(p.participant_id), p.performed_on, natural(p.procedure_id)),
    "outcomes": lambda o: (
        natural(o.participant_id),
        VISIT_RANK[o.visit],
        MEASURE_RANK[o.measure],
    ),
    "medications": lambda m: (
        natural(m.participant_id),
        VISIT_RANK[m.visit],
        natural(m.medication),
    ),
    "adverse_events": lambda e: (natural(e.participant_id), e.onset_on, natural(e.event_id)),
    "imaging_reports": lambda r: (
        natural(r.participant_id),
        VISIT_RANK[r.visit],
        r.study_date,
        natural(r.report_id),
    ),
}


def in_contract_order(study: Study) -> Study:
    """``study`` with the rows of every table in the contract's order (``ROW_ORDER``); imaging
    findings follow their reports, each report's in the order they are listed."""
    tables = {name: sorted(getattr(study, name), key=key) for name, key in ROW_ORDER.items()}
    report_rank = {r.report_id: rank for rank, r in enumerate(tables["imaging_reports"])}
    tables["imaging_findings"] = sorted(
        study.imaging_findings, key=lambda f: report_rank.get(f.report_id, len(report_rank))
    )
    return study.model_copy(update=tables)
