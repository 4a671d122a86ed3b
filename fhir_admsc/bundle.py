"""Assemble resources into transaction or collection Bundles and NDJSON, in a stable order."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Literal

from fhir_admsc import ids

BundleType = Literal["transaction", "collection"]


def bundle(resources: Iterable[dict[str, Any]], kind: BundleType, study_id: str) -> dict[str, Any]:
    """A Bundle of ``resources``; a transaction upserts each one with ``PUT Type/id``."""
    entries = []
    for resource in resources:
        entry: dict[str, Any] = {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource}
        if kind == "transaction":
            entry["request"] = {
                "method": "PUT",
                "url": f"{resource['resourceType']}/{resource['id']}",
            }
        entries.append(entry)
    return {
        "resourceType": "Bundle",
        "id": ids.resource_id(study_id, "Bundle", kind),
        "type": kind,
        "entry": entries,
    }


def bundle_json(value: dict[str, Any]) -> str:
    """A Bundle (or any resource) as indented JSON text with a final newline."""
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def ndjson_files(resources: Iterable[dict[str, Any]]) -> dict[str, str]:
    """NDJSON text per resource type: ``{"Patient.ndjson": "...", ...}``, one resource a line."""
    lines: dict[str, list[str]] = defaultdict(list)
    for resource in resources:
        lines[resource["resourceType"]].append(
            json.dumps(resource, ensure_ascii=False, separators=(",", ":"))
        )
    return {f"{t}.ndjson": "\n".join(rows) + "\n" for t, rows in sorted(lines.items())}
