"""Mappings between the Study model and FHIR R4 resources, one module per family, both directions."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fhir_admsc.mappings import adverse_events, imaging, medications, observations, procedures
from fhir_admsc.mappings import study as study_family
from fhir_admsc.mappings.context import FhirIndex, StudyContext
from fhir_admsc.study import Study

FAMILIES = [study_family, procedures, observations, medications, adverse_events, imaging]

__all__ = ["FAMILIES", "study_from_fhir", "study_to_fhir"]


def study_to_fhir(study: Study) -> Iterator[dict[str, Any]]:
    """Every resource of ``study``, family by family, in a stable order."""
    ctx = StudyContext(study.info.study_id)
    for family in FAMILIES:
        yield from family.to_fhir(study, ctx)


def study_from_fhir(resources: Iterable[dict[str, Any]]) -> Study:
    """The Study that ``resources`` (one study's export or pull) carry."""
    index = FhirIndex(resources)
    tables: dict[str, Any] = {}
    for family in FAMILIES:
        tables.update(family.from_fhir(index))
    return Study(**tables)
