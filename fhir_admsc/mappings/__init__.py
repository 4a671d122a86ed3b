"""Mappings between the Study model and FHIR R4 resources, one module per family, both directions."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

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
    """The Study that ``resources`` (one study's export or pull) carry; resources without the
    shape of an export are an InvalidDataError (the reading of one row names its resource)."""
    tables: dict[str, Any] = {}
    try:
        index = FhirIndex(resources)
        for family in FAMILIES:
            tables.update(family.from_fhir(index))
    except (AttributeError, KeyError, IndexError, TypeError) as e:
        problem = f"do not have the shape of a fhir-admsc export: {explain(e)}"
        raise InvalidDataError([Problem("FHIR resources", problem)]) from None
    return Study(**tables)
