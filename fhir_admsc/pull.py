"""Pull one study back from a FHIR server: its ResearchStudy, subjects, and every resource of those
participants in the study's identifier namespace."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from typing import Any

from fhir_admsc import ids
from fhir_admsc.client import FhirClient, RejectedError
from fhir_admsc.errors import ConfigurationError, ServerError
from fhir_admsc.mappings.context import kind_of
from fhir_admsc.resources import key, reference_key

log = logging.getLogger(__name__)

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
# Every resource type of a study: the study itself, its sponsor and sites, the participants' data.
STUDY_TYPES = ["ResearchStudy", "Organization", "Location", *PARTICIPANT_TYPES]
# R4 gives these types no identifier search parameter but a `study` one.
STUDY_PARAMETER = {"ResearchSubject", "AdverseEvent"}

# Resolves a reference to the resource it names.
Read = Callable[[str], dict[str, Any]]
# Offers the resources of a participant type that may be the study's, given those collected so far.
Candidates = Callable[[str, dict[str, dict[str, Any]]], Iterable[dict[str, Any]]]
# Told the number of resources received so far, as a pull goes on.
Progress = Callable[[int], None]


class Received:
    """Counts the resources received from a server; tells ``progress`` the total as it grows."""

    def __init__(self, progress: Progress | None = None) -> None:
        self.count = 0
        self.progress = progress

    def __call__(self, count: int) -> None:
        self.count += count
        if self.progress is not None:
            self.progress(self.count)


def in_study(resource: dict[str, Any], study_id: str) -> bool:
    """Whether a participant's resource has a business identifier in the study's namespace."""
    return ids.identifier_key(
        resource, kind_of(resource["resourceType"])
    ) is not None and _identifier_value(resource).startswith(f"{study_id}/")


def _identifier_value(resource: dict[str, Any]) -> str:
    system = ids.identifier_system(kind_of(resource["resourceType"]))
    return next(
        (i.get("value", "") for i in ids.identifiers(resource) if i.get("system") == system), ""
    )


def find_study(client: FhirClient, study_id: str, received: Received) -> dict[str, Any]:
    """The one ResearchStudy on the server with the study's business identifier."""
    system = ids.identifier_system("research-study")
    found = client.search("ResearchStudy", {"identifier": f"{system}|{study_id}"}, page=received)
    return the_study(found, study_id, client.given_url)


def the_study(candidates: Iterable[dict[str, Any]], study_id: str, server: str) -> dict[str, Any]:
    """The one ResearchStudy among ``candidates`` (found on ``server``) with the study's business
    identifier: none is a mistake in the study id (ConfigurationError), several a fault on the
    server (ServerError)."""
    system = ids.identifier_system("research-study")
    # a server that ignores the search parameter answers every study: keep ours
    found = [s for s in candidates if ids.has_identifier(s, system, study_id)]
    if not found:
        raise ConfigurationError(
            f"no study with id {study_id} is on {server} (no ResearchStudy with identifier "
            f"{system}|{study_id}): check `study_id`"
        )
    if len(found) > 1:
        raise ServerError(
            f"{server} holds {len(found)} ResearchStudy resources with identifier "
            f"{system}|{study_id}: remove the duplicates, there must be one"
        )
    log.info("found study %s on %s: ResearchStudy/%s", study_id, server, found[0]["id"])
    return found[0]


def pull_study(
    client: FhirClient, study_id: str, progress: Progress | None = None
) -> list[dict[str, Any]]:
    """Every resource of the study, each once, in a stable order; ``progress`` is told the
    number of resources received so far after each page."""
    received = Received(progress)
    return collect_study(
        find_study(client, study_id, received),
        study_id,
        functools.partial(read_reference, client, received),
        functools.partial(search_candidates, client, received),
    )


def collect_study(
    study: dict[str, Any], study_id: str, read: Read, candidates: Candidates
) -> list[dict[str, Any]]:
    """Every resource of ``study``, each once, in a stable order, from its sponsor and sites
    (``read``) and the candidates of each participant type that are in the study's namespace."""
    collected: dict[str, dict[str, Any]] = {key(study): study}
    for ref in [study.get("sponsor"), *study.get("site", [])]:
        if ref and isinstance(ref.get("reference"), str):
            target = read(ref["reference"])
            collected[key(target)] = target
    for resource_type in PARTICIPANT_TYPES:
        matches = (
            _products(read, collected)
            if resource_type == "BiologicallyDerivedProduct"
            else candidates(resource_type, collected)
        )
        before = len(collected)
        for resource in sorted(
            (r for r in matches if in_study(r, study_id)), key=_identifier_value
        ):
            collected.setdefault(key(resource), resource)
        log.info("%s: %d resources of the study", resource_type, len(collected) - before)
    log.info("%d resources of study %s in all", len(collected), study_id)
    return list(collected.values())


def read_reference(client: FhirClient, received: Received, reference: str) -> dict[str, Any]:
    """The resource a reference names, read from the server; it must exist."""
    found = client.read(*reference_key(reference).split("/"))
    if found is None:
        raise ServerError(f"{client.url(reference)} is referenced by the study but not found")
    received(1)
    return found


def search_candidates(
    client: FhirClient,
    received: Received,
    resource_type: str,
    collected: dict[str, dict[str, Any]],
) -> Iterable[dict[str, Any]]:
    """The resources of a participant type that may be the study's, found by searching."""
    study = next(r for r in collected.values() if r["resourceType"] == "ResearchStudy")
    if resource_type in STUDY_PARAMETER:
        matches: Iterable[dict[str, Any]] = client.search(
            resource_type, {"study": key(study), "_count": "500"}, page=received
        )
    else:
        system = ids.identifier_system(kind_of(resource_type))
        try:
            matches = list(
                client.search(
                    resource_type, {"identifier": f"{system}|", "_count": "500"}, page=received
                )
            )
        except RejectedError as e:
            # A server that cannot search by identifier system alone: participant by participant.
            log.info(
                "the server cannot search %s by identifier system alone (HTTP %d): "
                "searching participant by participant",
                resource_type,
                e.status,
            )
            matches = _by_participant(client, received, resource_type, collected)
    return matches


def _products(read: Read, collected: dict[str, dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """R4 defines no search parameter on BiologicallyDerivedProduct that could find a study's
    products: the injections name them, so they are read one by one."""
    seen = set()
    for procedure in (r for r in list(collected.values()) if r["resourceType"] == "Procedure"):
        extensions = procedure.get("extension")
        for ext in extensions if isinstance(extensions, list) else []:
            value = ext.get("valueReference") if isinstance(ext, dict) else None
            reference = value.get("reference") if isinstance(value, dict) else None
            if not isinstance(reference, str):
                continue  # not the reference to a product this tool writes
            if "BiologicallyDerivedProduct/" in reference and reference not in seen:
                seen.add(reference)
                yield read(reference)


def _by_participant(
    client: FhirClient,
    received: Received,
    resource_type: str,
    collected: dict[str, dict[str, Any]],
) -> Iterable[dict[str, Any]]:
    if resource_type == "Patient":
        for subject in (
            r for r in list(collected.values()) if r["resourceType"] == "ResearchSubject"
        ):
            yield read_reference(client, received, subject["individual"]["reference"])
        return
    for patient in [r for r in collected.values() if r["resourceType"] == "Patient"]:
        yield from client.search(resource_type, {"subject": key(patient)}, page=received)
