"""Patient-reported outcomes: one survey Observation per outcomes.csv row, tied to its visit Encounter.

The value and coding rules of each kind of observation (outcome measures here, imaging findings in
``imaging``) live in ``measure_value``/``measure_code``, shared by both modules.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

from fhir_admsc import terminology as term
from fhir_admsc.mappings.context import (
    FhirIndex,
    StudyContext,
    coding,
    concept,
    iso,
    key_for,
    own_code,
    quantity,
)
from fhir_admsc.mappings.study import visit_key, visit_of
from fhir_admsc.study import Outcome, Study


def to_fhir(study: Study, ctx: StudyContext) -> Iterator[dict[str, Any]]:
    """One Observation per outcome row, in input order."""
    dates = study.visit_dates()
    for o in study.outcomes:
        yield outcome(o, dates[(o.participant_id, o.visit)], ctx)


def outcome(o: Outcome, visit_date: date, ctx: StudyContext) -> dict[str, Any]:
    key = f"{visit_key(o.participant_id, o.visit)}/{o.measure}"
    measure = term.OUTCOME_MEASURES[o.measure]
    return observation(
        ctx,
        key,
        measure,
        "survey",
        o.participant_id,
        visit_date,
        ctx.ref("Encounter", visit_key(o.participant_id, o.visit)),
        o.value,
    )


def observation(
    ctx: StudyContext,
    key: str,
    measure: term.Measure,
    category: str,
    participant_id: str,
    effective: date,
    encounter: dict[str, str],
    value: float | int | str,
) -> dict[str, Any]:
    """An Observation of ``measure`` with its value in the value[x] its kind calls for."""
    r = ctx.resource("Observation", key, measure.profile)
    r["status"] = "final"
    r["category"] = [
        {"coding": [coding(term.OBSERVATION_CATEGORY, category, category.capitalize())]}
    ]
    r["code"] = concept(measure.concept)
    r["subject"] = ctx.ref("Patient", participant_id)
    r["encounter"] = encounter
    r["effectiveDateTime"] = iso(effective)
    r.update(measure_value(measure, value))
    return r


def measure_value(measure: term.Measure, value: float | int | str) -> dict[str, Any]:
    """The value[x] element of an Observation of ``measure``."""
    if measure.kind == "presence":
        return {"valueCodeableConcept": concept(term.PRESENCE[str(value)])}
    if measure.kind == "integer":
        return {"valueInteger": int(value)}
    return {"valueQuantity": quantity(float(value), measure.unit or ("1", "1"))}


def read_value(measure: term.Measure, r: dict[str, Any]) -> float | int | str:
    """The table value of an Observation of ``measure`` (the inverse of ``measure_value``)."""
    if measure.kind == "presence":
        return key_for(term.PRESENCE, own_code(r["valueCodeableConcept"]))
    if measure.kind == "integer":
        return r["valueInteger"]
    return r["valueQuantity"]["value"]


def measure_of(r: dict[str, Any], table: dict[str, term.Measure]) -> term.Measure | None:
    """The measure of ``table`` that an Observation's code names, if any."""
    code = own_code(r.get("code"))
    return next((m for m in table.values() if m.concept.code == code), None)


def from_fhir(index: FhirIndex) -> dict[str, Any]:
    """outcomes.csv rows read back from survey Observations."""
    rows = [
        index.convert(r, _outcome)
        for r in index.of_type("Observation")
        if measure_of(r, term.OUTCOME_MEASURES) is not None
    ]
    return {"outcomes": rows}


def _outcome(r: dict[str, Any], index: FhirIndex) -> Outcome:
    measure = measure_of(r, term.OUTCOME_MEASURES)
    assert measure is not None  # filtered by from_fhir
    return Outcome(
        participant_id=index.ref_key(r["subject"], "Observation.subject"),
        visit=visit_of(index, r["encounter"], "Observation.encounter"),
        measure=measure.key,
        value=read_value(measure, r),
    )
