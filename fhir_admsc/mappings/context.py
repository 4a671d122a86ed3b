"""What every mapping shares: the study's namespace going out, a resolvable index of resources coming back."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import date
from typing import Any, TypeVar

from pydantic import ValidationError

from fhir_admsc import ids
from fhir_admsc import terminology as term
from fhir_admsc.errors import InvalidDataError, Problem
from fhir_admsc.resources import key, label, reference_key

T = TypeVar("T")


def explain(error: Exception) -> str:
    """An exception met while reading a resource, as a user reads it."""
    if isinstance(error, ValidationError):
        return "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in error.errors())
    if isinstance(error, KeyError):
        return f"element {error.args[0]!r} is missing"
    return str(error) or type(error).__name__


def kind_of(resource_type: str) -> str:
    """The identifier kind of a resource type: ``ResearchSubject`` -> ``research-subject``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", resource_type).lower()


class StudyContext:
    """Builds resources in one study's namespace: ids, identifiers, references, the study link."""

    def __init__(self, study_id: str) -> None:
        self.study_id = study_id

    def id(self, resource_type: str, key: str) -> str:
        return ids.resource_id(self.study_id, resource_type, key)

    def ref(self, resource_type: str, key: str) -> dict[str, str]:
        """A relative reference to the resource of ``resource_type`` with record key ``key``."""
        return {"reference": f"{resource_type}/{self.id(resource_type, key)}"}

    def resource(
        self, resource_type: str, key: str, profile: str, *, study_link: bool = True
    ) -> dict[str, Any]:
        """The head of a resource: id, profile, the workflow-researchStudy link, identifier."""
        resource: dict[str, Any] = {
            "resourceType": resource_type,
            "id": self.id(resource_type, key),
            "meta": {"profile": [term.profile_url(profile)]},
        }
        if study_link:
            resource["extension"] = [
                {"url": term.study_link_url(resource_type), "valueReference": self.study_ref()}
            ]
        resource["identifier"] = [ids.identifier(self.study_id, kind_of(resource_type), key)]
        return resource

    def study_ref(self) -> dict[str, str]:
        return self.ref("ResearchStudy", self.study_id)


def extension(name: str, value: Any) -> dict[str, Any] | None:
    """One of the project's own extensions, or None when there is no value to carry."""
    if value is None:
        return None
    definition = term.EXTENSIONS[name]
    if definition.unit is not None:
        value = quantity(value, definition.unit)
    return {"url": definition.url, definition.value_key: value}


def add_extensions(resource: dict[str, Any], *extensions: dict[str, Any] | None) -> None:
    """Append the given extensions (skipping None) to ``resource.extension``."""
    present = [e for e in extensions if e is not None]
    if present:
        resource.setdefault("extension", []).extend(present)


def concept(c: term.Concept) -> dict[str, Any]:
    """A CodeableConcept of one project concept and its standard equivalents."""
    return {"coding": c.codings()}


def coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def number(value: float | int) -> float | int:
    """A JSON number: integral values without a fraction, so output reads like the input."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def quantity(value: float | int | None, unit: tuple[str, str]) -> dict[str, Any]:
    """A UCUM Quantity of ``unit`` = (UCUM code, human unit); ``value`` may be None."""
    q: dict[str, Any] = {} if value is None else {"value": number(value)}
    q.update({"unit": unit[1], "system": term.UCUM, "code": unit[0]})
    return q


def iso(day: date) -> str:
    return day.isoformat()


class FhirIndex:
    """Resources read back from FHIR, indexed so references and identifiers resolve to record keys."""

    def __init__(self, resources: Iterable[dict[str, Any]]) -> None:
        self.by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.by_ref: dict[str, dict[str, Any]] = {}
        for resource in resources:
            self.by_type[resource["resourceType"]].append(resource)
            if "id" in resource:
                self.by_ref[key(resource)] = resource
        studies = self.by_type.get("ResearchStudy", [])
        if len(studies) != 1:
            raise InvalidDataError(
                [
                    Problem(
                        "FHIR resources",
                        f"hold {len(studies)} ResearchStudy resources: expected exactly one",
                    )
                ]
            )
        self.study = studies[0]
        self.study_id = self.key(self.study)

    def of_type(self, resource_type: str) -> list[dict[str, Any]]:
        return self.by_type.get(resource_type, [])

    def key(self, resource: dict[str, Any]) -> str:
        """The record key in the resource's business identifier."""
        found = ids.identifier_key(resource, kind_of(resource["resourceType"]))
        if found is None:
            raise InvalidDataError(
                [
                    Problem(
                        label(resource) or "a resource",
                        f"has no identifier of system {term.identifier_system(kind_of(resource['resourceType']))}",
                    )
                ]
            )
        return found

    def convert(
        self, resource: dict[str, Any], read: Callable[[dict[str, Any], FhirIndex], T]
    ) -> T:
        """Read one resource back into a table row; a resource that does not fit is InvalidDataError."""
        try:
            return read(resource, self)
        except (AttributeError, KeyError, IndexError, TypeError, ValueError) as e:
            where = label(resource) or "a resource"
            raise InvalidDataError(
                [Problem(where, f"cannot be read back into the study tables: {explain(e)}")]
            ) from None

    def resolve(self, reference: dict[str, Any] | None, where: str) -> dict[str, Any]:
        """The resource a reference points to; absolute URLs resolve by their Type/id tail."""
        target = (reference or {}).get("reference", "")
        tail = reference_key(target)
        if tail not in self.by_ref:
            raise InvalidDataError(
                [
                    Problem(
                        where,
                        f"refers to {target or 'nothing'}, which is not among the resources read",
                    )
                ]
            )
        return self.by_ref[tail]

    def ref_key(self, reference: dict[str, Any] | None, where: str) -> str:
        """The record key of the resource a reference points to."""
        return self.key(self.resolve(reference, where))


def find_extension(resource: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The project extension ``name`` on ``resource``, if present."""
    url = term.extension_url(name)
    return next((e for e in resource.get("extension", []) if e.get("url") == url), None)


def extension_value(resource: dict[str, Any], name: str) -> Any:
    """The value of the project extension ``name`` as the table holds it (a Quantity's number)."""
    ext = find_extension(resource, name)
    if ext is None:
        return None
    definition = term.EXTENSIONS[name]
    value = ext[definition.value_key]
    return value["value"] if definition.unit is not None else value


def own_code(codeable: dict[str, Any] | None) -> str | None:
    """The code of the project's CodeSystem inside a CodeableConcept."""
    for c in (codeable or {}).get("coding", []):
        if c.get("system") == term.ADMSC:
            return c.get("code")
    return None


def code_in(codeable: dict[str, Any] | None, system: str) -> str | None:
    """The first code of ``system`` inside a CodeableConcept."""
    for c in (codeable or {}).get("coding", []):
        if c.get("system") == system:
            return c.get("code")
    return None


def key_for(table: dict[str, term.Concept], code: str | None) -> str | None:
    """The table key whose concept has the project code ``code``."""
    return next((k for k, c in table.items() if c.code == code), None)


def date_part(value: str | None) -> str | None:
    """The YYYY-MM-DD part of a FHIR date or dateTime."""
    return None if value is None else value[:10]
