"""Pull one study back from a FHIR server: its ResearchStudy, subjects, and every resource of those
participants in the study's identifier namespace."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fhir_admsc import ids
from fhir_admsc.client import FhirClient, RejectedError
from fhir_admsc.errors import InvalidDataError, Problem, ServerError
from fhir_admsc.mappings.context import kind_of

# Resource types that hang off participants, in the order they are fetched.
PARTICIPANT_TYPES = [
    "ResearchSubject",
    "Patient",
    "Condition",
    "Encounter",
    "Procedure",
    "Specimen",
    "BiologicallyDerivedProduct",
    "Observation",
    "MedicationStatement",
    "AdverseEvent",
    "ImagingStudy",
    "DiagnosticReport",
]
# R4 gives these types no identifier search parameter but a `study` one.
STUDY_PARAMETER = {"ResearchSubject", "AdverseEvent"}


def _ref(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def _in_study(resource: dict[str, Any], study_id: str) -> bool:
    return ids.identifier_key(
        resource, kind_of(resource["resourceType"])
    ) is not None and _identifier_value(resource).startswith(f"{study_id}/")


def _identifier_value(resource: dict[str, Any]) -> str:
    system = ids.identifier_system(kind_of(resource["resourceType"]))
    idents = resource.get("identifier", [])
    return next(
        (
            i.get("value", "")
            for i in ([idents] if isinstance(idents, dict) else idents)
            if i.get("system") == system
        ),
        "",
    )


def find_study(client: FhirClient, study_id: str) -> dict[str, Any]:
    """The one ResearchStudy with the study's business identifier."""
    system = ids.identifier_system("research-study")
    found = [
        s
        for s in client.search("ResearchStudy", {"identifier": f"{system}|{study_id}"})
        # a server that ignores the search parameter answers every study: keep ours
        if ids.has_identifier(s, system, study_id)
    ]
    if len(found) != 1:
        raise InvalidDataError(
            [
                Problem(
                    client.base_url,
                    f"holds {len(found)} ResearchStudy "
                    f"resources with identifier {system}|{study_id}: "
                    "expected exactly one",
                )
            ]
        )
    return found[0]


def pull_study(client: FhirClient, study_id: str) -> list[dict[str, Any]]:
    """Every resource of the study, each once, in a stable order."""
    study = find_study(client, study_id)
    collected: dict[str, dict[str, Any]] = {_ref(study): study}
    for ref in [study.get("sponsor"), *study.get("site", [])]:
        if ref and isinstance(ref.get("reference"), str):
            target = _read_reference(client, ref["reference"])
            collected[_ref(target)] = target
    for resource_type in PARTICIPANT_TYPES:
        for resource in _of_type(client, resource_type, study_id, collected):
            collected.setdefault(_ref(resource), resource)
    return list(collected.values())


def _read_reference(client: FhirClient, reference: str) -> dict[str, Any]:
    resource_type, _, resource_id = reference.split("/_history")[0].rstrip("/").rpartition("/")
    found = client.read(resource_type.rsplit("/", 1)[-1], resource_id)
    if found is None:
        raise ServerError(f"{client.url(reference)} is referenced by the study but not found")
    return found


def _of_type(
    client: FhirClient, resource_type: str, study_id: str, collected: dict[str, dict[str, Any]]
) -> Iterable[dict[str, Any]]:
    study = next(r for r in collected.values() if r["resourceType"] == "ResearchStudy")
    if resource_type in STUDY_PARAMETER:
        matches: Iterable[dict[str, Any]] = client.search(
            resource_type, {"study": _ref(study), "_count": "500"}
        )
    elif resource_type == "BiologicallyDerivedProduct":
        matches = _products(client, collected)
    else:
        system = ids.identifier_system(kind_of(resource_type))
        try:
            matches = list(
                client.search(resource_type, {"identifier": f"{system}|", "_count": "500"})
            )
        except RejectedError:
            # A server that cannot search by identifier system alone: participant by participant.
            matches = _by_participant(client, resource_type, collected)
    return sorted((r for r in matches if _in_study(r, study_id)), key=_identifier_value)


def _products(client: FhirClient, collected: dict[str, dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """R4 defines no search parameter on BiologicallyDerivedProduct that could find a study's
    products: the injections name them, so they are read one by one."""
    seen = set()
    for procedure in (r for r in list(collected.values()) if r["resourceType"] == "Procedure"):
        for ext in procedure.get("extension", []):
            reference = ext.get("valueReference", {}).get("reference", "")
            if "BiologicallyDerivedProduct/" in reference and reference not in seen:
                seen.add(reference)
                yield _read_reference(client, reference)


def _by_participant(
    client: FhirClient, resource_type: str, collected: dict[str, dict[str, Any]]
) -> Iterable[dict[str, Any]]:
    if resource_type == "Patient":
        for subject in (
            r for r in list(collected.values()) if r["resourceType"] == "ResearchSubject"
        ):
            yield _read_reference(client, subject["individual"]["reference"])
        return
    for patient in [r for r in collected.values() if r["resourceType"] == "Patient"]:
        yield from client.search(resource_type, {"subject": _ref(patient)})
