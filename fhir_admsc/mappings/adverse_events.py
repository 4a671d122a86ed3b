"""Adverse events: one AdverseEvent per adverse_events.csv row.

R4 cannot point ``suspectEntity`` at a BiologicallyDerivedProduct, so it names the suspected Procedure.
The study's own causality category is kept in the ``ae-causality`` extension (it has values, such as
``unrelated``, that WHO-UMC lacks, and it must survive when no procedure is suspected); the WHO-UMC
assessment is repeated in ``suspectEntity.causality`` for consumers that read only the core element.
R4 has no elements for the resolution date, expectedness and action taken: extensions carry them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fhir_admsc import terminology as term
from fhir_admsc.mappings.context import (
    FhirIndex,
    StudyContext,
    add_extensions,
    code_in,
    coding,
    concept,
    date_part,
    extension,
    extension_value,
    iso,
    key_for,
    own_code,
)
from fhir_admsc.study import AdverseEvent, Study


def to_fhir(study: Study, ctx: StudyContext) -> Iterator[dict[str, Any]]:
    """One AdverseEvent per row, in input order."""
    for event in study.adverse_events:
        yield adverse_event(event, ctx)


def adverse_event(e: AdverseEvent, ctx: StudyContext) -> dict[str, Any]:
    r = ctx.resource("AdverseEvent", e.event_id, "adverse-event", study_link=False)
    causality = concept(term.CAUSALITY[e.causality])
    add_extensions(
        r,
        extension("ae-causality", causality),
        extension("ae-resolved-date", e.resolved_on and iso(e.resolved_on)),
        extension("ae-expected", e.expected),
        extension("ae-action-taken", e.action_taken),
    )
    r["identifier"] = r["identifier"][0]  # AdverseEvent.identifier is 0..1 in R4
    r["actuality"] = "actual"
    event: dict[str, Any] = {"text": e.term}
    if e.snomed is not None:
        event = {"coding": [{"system": term.SNOMED, "code": e.snomed}], "text": e.term}
    r["event"] = event
    r["subject"] = ctx.ref("Patient", e.participant_id)
    r["date"] = iso(e.onset_on)
    seriousness = term.AE_SERIOUSNESS[e.serious]
    r["seriousness"] = {"coding": [coding(term.AE_SERIOUSNESS_SYSTEM, seriousness, seriousness)]}
    r["severity"] = {
        "coding": [coding(term.AE_SEVERITY, e.severity, term.AE_SEVERITY_DISPLAY[e.severity])]
    }
    r["outcome"] = {
        "coding": [coding(term.AE_OUTCOME, e.outcome, term.AE_OUTCOME_DISPLAY[e.outcome])]
    }
    if e.suspected_procedure_id is not None:
        suspect: dict[str, Any] = {"instance": ctx.ref("Procedure", e.suspected_procedure_id)}
        who_umc = [c for c in causality["coding"] if c["system"] == term.AE_CAUSALITY]
        if who_umc:
            suspect["causality"] = [{"assessment": {"coding": who_umc}}]
        r["suspectEntity"] = [suspect]
    r["study"] = [ctx.study_ref()]
    return r


def from_fhir(index: FhirIndex) -> dict[str, Any]:
    """adverse_events.csv rows read back from AdverseEvents."""
    return {
        "adverse_events": [index.convert(r, _adverse_event) for r in index.of_type("AdverseEvent")]
    }


def _adverse_event(r: dict[str, Any], index: FhirIndex) -> AdverseEvent:
    suspects = r.get("suspectEntity") or []
    return AdverseEvent(
        participant_id=index.ref_key(r["subject"], "AdverseEvent.subject"),
        event_id=index.key(r),
        term=r["event"]["text"],
        snomed=code_in(r["event"], term.SNOMED),
        onset_on=date_part(r["date"]),
        resolved_on=extension_value(r, "ae-resolved-date"),
        severity=code_in(r["severity"], term.AE_SEVERITY),
        serious=code_in(r["seriousness"], term.AE_SERIOUSNESS_SYSTEM) == term.AE_SERIOUSNESS[True],
        outcome=code_in(r["outcome"], term.AE_OUTCOME),
        causality=key_for(term.CAUSALITY, own_code(extension_value(r, "ae-causality"))),
        suspected_procedure_id=index.ref_key(
            suspects[0]["instance"], "AdverseEvent.suspectEntity.instance"
        )
        if suspects
        else None,
        expected=extension_value(r, "ae-expected"),
        action_taken=extension_value(r, "ae-action-taken"),
    )
