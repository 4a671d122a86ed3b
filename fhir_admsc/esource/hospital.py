"""Reading a linked participant's routine records from the hospital's FHIR server: the patient
found by the hospital identifier, then ``Patient/[id]/$everything`` where the server declares it,
or a search a resource type otherwise. Only the resource types that can fill a study table are kept."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..bulk import BulkExport
from ..client import Capabilities, FhirClient, RejectedError
from ..resources import key, reference_key
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
    # R4 has no code marking a Condition as an adverse event: each goes to review, for a person
    # to decide
    "Condition": "patient",
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
        return Records(link.participant_id, problem=_not_one(patients, "at the hospital"))
    patient = patients[0]
    found: list[dict[str, Any]] = []
    if capabilities.patient_everything:
        everything = client.search(f"Patient/{patient['id']}/$everything", page=progress)
        found = [r for r in everything if r.get("resourceType") in RECORD_TYPES]
    # A server's $everything may leave types out (R4 lets it): those are searched for as well.
    held = {r["resourceType"] for r in found}
    found += _searched(client, capabilities, patient, held, progress)
    return Records(link.participant_id, patient, _about(patient, found))


def fetch_group(
    client: FhirClient,
    capabilities: Capabilities,
    links: list[Link],
    group: str,
    **export: Any,
) -> list[Records]:
    """The records of every linked participant out of one Bulk Data export of ``group`` (the
    hospital's Group of these patients); ``export`` goes to ``BulkExport`` (polling, time-out)."""
    with BulkExport(client, ["Patient", *RECORD_TYPES], group=group, **export) as job:
        manifest = job.manifest()
        job.check_errors(manifest)
        delivered = {file.type for file in manifest.output}
        exported = [
            r for file in manifest.output for part in job.resources(file, manifest) for r in part
        ]
    patients = [r for r in exported if r.get("resourceType") == "Patient"]
    records = []
    for link in links:
        matching = [
            p
            for p in patients
            if any(
                i.get("system") == link.system and i.get("value") == link.value
                for i in p.get("identifier", [])
            )
        ]
        if len(matching) != 1:
            records.append(Records(link.participant_id, problem=_not_one(matching, "in the group")))
            continue
        found = [r for r in exported if r.get("resourceType") in RECORD_TYPES]
        # a type the export has no file of (sekmet leaves AdverseEvent out) is searched for
        found += _searched(client, capabilities, matching[0], delivered, None)
        records.append(Records(link.participant_id, matching[0], _about(matching[0], found)))
    return records


def _not_one(patients: list[dict[str, Any]], where: str) -> str:
    return (
        f"the link matches {'no patient' if not patients else f'{len(patients)} patients'} {where}"
    )


def _searched(
    client: FhirClient,
    capabilities: Capabilities,
    patient: dict[str, Any],
    held: set[str],
    progress: Callable[[int], None] | None,
) -> list[dict[str, Any]]:
    """The records of the types not in ``held``, searched for type by type."""
    found: list[dict[str, Any]] = []
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
    return found


def _about(patient: dict[str, Any], found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records about ``patient``, once each: a server may ignore a search parameter it does
    not support and answer with every record of the type."""
    mine = key(patient)
    unique = {key(r): r for r in found if reference_key(_subject(r)) == mine}
    return list(unique.values())


def _subject(record: dict[str, Any]) -> str:
    value = record.get("subject") or record.get("patient")
    return str(value.get("reference") or "") if isinstance(value, dict) else ""
