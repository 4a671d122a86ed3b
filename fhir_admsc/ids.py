"""Deterministic resource ids and business identifiers in a study's namespace."""

from __future__ import annotations

import uuid

from fhir_admsc.terminology import CANONICAL_BASE, identifier_system

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, CANONICAL_BASE)


def record_key(*parts: str) -> str:
    """Join the parts of a record's natural key; no part but the last may contain '/'."""
    return "/".join(parts)


def identifier(study_id: str, kind: str, key: str) -> dict[str, str]:
    """The business identifier of a record: fixed system per kind, value ``<study_id>/<key>``
    (the study itself, whose key is its id, has the value ``<study_id>``)."""
    value = study_id if key == study_id and kind == "research-study" else f"{study_id}/{key}"
    return {"system": identifier_system(kind), "value": value}


def resource_id(study_id: str, resource_type: str, key: str) -> str:
    """A stable id (UUIDv5) over study, resource type and the record's key."""
    return str(uuid.uuid5(_NAMESPACE, f"{study_id}|{resource_type}|{key}"))


def identifier_key(resource: dict, kind: str) -> str | None:
    """The record key inside a resource's business identifier of ``kind``, without the study id."""
    system = identifier_system(kind)
    idents = resource.get("identifier", [])
    for ident in [idents] if isinstance(idents, dict) else idents:  # 0..1 on some resources
        if ident.get("system") == system and ident.get("value"):
            return ident["value"].split("/", 1)[-1]
    return None


def has_identifier(resource: dict, system: str, value: str) -> bool:
    """Whether ``resource`` carries the identifier ``system|value`` (0..1 or 0..* element)."""
    idents = resource.get("identifier", [])
    return any(
        i.get("system") == system and i.get("value") == value
        for i in ([idents] if isinstance(idents, dict) else idents)
    )
