"""FHIR JSON in: the one place that names a resource by ``Type/id`` and reads a reference back to
one. (The readers of Bundle, JSON and NDJSON files and the scans that order a push join it.)

A reference is relative (``Patient/1``), absolute (``https://host/fhir/Patient/1``), versioned
(``Patient/1/_history/2``), a Bundle-local ``urn:uuid:``/``urn:oid:`` or a contained ``#id``: only
the first three name a ``Type/id``, which is what ``reference_key`` returns for them.
"""

from __future__ import annotations

from typing import Any


def key(resource: dict[str, Any]) -> str:
    """``Type/id`` of a resource that has both (a KeyError otherwise)."""
    return f"{resource['resourceType']}/{resource['id']}"


def label(resource: Any) -> str | None:
    """``Type/id`` of a resource for messages, ``Type/?`` when it has no id; None for a value
    that is no resource."""
    if isinstance(resource, dict) and "resourceType" in resource:
        return f"{resource['resourceType']}/{resource.get('id', '?')}"
    return None


def reference_key(reference: str) -> str:
    """``Type/id`` of a relative, absolute or versioned reference: its last two path segments
    once any ``/_history/...`` is dropped (meaningless for ``urn:`` and ``#`` references)."""
    return "/".join(reference.split("/_history")[0].rstrip("/").split("/")[-2:])


def reference_type(reference: str) -> str | None:
    """The type segment of a relative, absolute or versioned reference; None when it has none
    (the caller checks that it names a resource type)."""
    parts = reference_key(reference).split("/")
    return parts[0] if len(parts) == 2 else None


def reference_id(reference: str) -> str:
    """The id a relative, absolute or versioned reference (or a Location header) ends with."""
    return reference_key(reference).rsplit("/", 1)[-1]
