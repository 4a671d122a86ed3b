"""Deterministic resource ids and business identifiers in a study's namespace."""

from __future__ import annotations

import hashlib
import uuid
from functools import lru_cache

from fhir_admsc.terminology import CANONICAL_BASE, identifier_system

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, CANONICAL_BASE)
# RFC 4122 name-based (SHA-1) ids hash the namespace bytes and then the name: the namespace part is
# hashed once here, and the id is formatted from the digest directly (uuid.UUID objects cost 4x more
# than the hash, and an export computes several ids per resource).
_NAMESPACE_HASH = hashlib.sha1(_NAMESPACE.bytes, usedforsecurity=False)


def record_key(*parts: str) -> str:
    """Join the parts of a record's natural key; no part but the last may contain '/'."""
    return "/".join(parts)


def identifier(study_id: str, kind: str, key: str) -> dict[str, str]:
    """The business identifier of a record: fixed system per kind, value ``<study_id>/<key>``
    (the study itself, whose key is its id, has the value ``<study_id>``)."""
    value = study_id if key == study_id and kind == "research-study" else f"{study_id}/{key}"
    return {"system": identifier_system(kind), "value": value}


@lru_cache(maxsize=1 << 14)  # a resource's id is also in every reference to it: the study's in all
def resource_id(study_id: str, resource_type: str, key: str) -> str:
    """A stable id (UUIDv5) over study, resource type and the record's key."""
    digest = _NAMESPACE_HASH.copy()
    digest.update(f"{study_id}|{resource_type}|{key}".encode())
    b = bytearray(digest.digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x50  # version 5
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def identifiers(resource: dict) -> list[dict]:
    """The identifier elements of a resource (0..1 on some resources, 0..* on most); what is
    not a JSON object is no identifier."""
    idents = resource.get("identifier", [])
    found = [idents] if isinstance(idents, dict) else idents if isinstance(idents, list) else []
    return [ident for ident in found if isinstance(ident, dict)]


def identifier_key(resource: dict, kind: str) -> str | None:
    """The record key inside a resource's business identifier of ``kind``, without the study id."""
    system = identifier_system(kind)
    for ident in identifiers(resource):
        if ident.get("system") == system and isinstance(ident.get("value"), str) and ident["value"]:
            return ident["value"].split("/", 1)[-1]
    return None


def has_identifier(resource: dict, system: str, value: str) -> bool:
    """Whether ``resource`` carries the identifier ``system|value`` (0..1 or 0..* element)."""
    return any(i.get("system") == system and i.get("value") == value for i in identifiers(resource))
