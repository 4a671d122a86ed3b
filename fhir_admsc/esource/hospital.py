"""Reading a linked participant's routine records from the hospital's FHIR server: the patient
found by the hospital identifier, then ``Patient/[id]/$everything`` where the server declares it,
or a search a resource type otherwise. Only the resource types that can fill a study table are kept."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..client import Capabilities, FhirClient, RejectedError
from .link import Link

# The resource types that can fill study tables, and the search parameter naming the patient.
RECORD_TYPES = {
    "Observation": "patient",
    "MedicationStatement": "patient",
    "MedicationRequest": "patient",
    "MedicationDispense": "patient",
    "Procedure": "patient",
    "DiagnosticReport": "patient",
    "ImagingStudy": "patient",
    "AdverseEvent": "subject",
}


@dataclass
class Records:
    """What the hospital holds of one participant: their Patient and the records of the types
    above; ``problem`` says why nothing was read (no patient, or several, match the link)."""

    participant_id: str
    patient: dict[str, Any] | None = None
    resources: list[dict[str, Any]] = field(default_factory=list)
    problem: str | None = None


def fetch_records(
    client: FhirClient,
    capabilities: Capabilities,
    link: Link,
    progress: Callable[[int], None] | None = None,
) -> Records:
    """The records of the patient ``link`` names; a link matching no patient or several is a
    problem of that participant, not an error of the pull."""
    patients = list(client.search("Patient", {"identifier": link.token}))
    if len(patients) != 1:
        found = "no patient" if not patients else f"{len(patients)} patients"
        return Records(link.participant_id, problem=f"the link matches {found} at the hospital")
    patient = patients[0]
    found: list[dict[str, Any]] = []
    if capabilities.patient_everything:
        everything = client.search(f"Patient/{patient['id']}/$everything", page=progress)
        found = [r for r in everything if r.get("resourceType") in RECORD_TYPES]
    # A server's $everything may leave types out (R4 lets it): those are searched for as well.
    held = {r["resourceType"] for r in found}
    for resource_type, parameter in RECORD_TYPES.items():
        if resource_type in held:
            continue
        params = {parameter: f"Patient/{patient['id']}"}
        try:
            found.extend(client.search(resource_type, params, page=progress))
        except RejectedError:
            if resource_type in capabilities.searchable:
                raise
            # the server declares no search of this type and refused one: it holds none
    # Kept only when about this patient: a server may ignore a search parameter it does not
    # support and answer with every record of the type.
    mine = f"Patient/{patient['id']}"
    unique = {
        (r["resourceType"], r.get("id")): r
        for r in found
        if _reference(r.get("subject") or r.get("patient")).endswith(mine)
    }
    return Records(link.participant_id, patient, list(unique.values()))


def _reference(value: object) -> str:
    return str(value.get("reference", "")) if isinstance(value, dict) else ""
