"""Assemble resources into transaction or collection Bundles and NDJSON, in a stable order; read
them back from Bundle and NDJSON files (or a study folder, exported on the fly)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from fhir_admsc import ids
from fhir_admsc.errors import InvalidDataError, Problem

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


def read_resources(path: Path) -> list[dict[str, Any]]:
    """The resources of a Bundle file, an NDJSON file or folder, or a study folder."""
    if path.is_dir() and (path / "study.json").exists():
        from fhir_admsc.mappings import study_to_fhir
        from fhir_admsc.tables import read_study

        return list(study_to_fhir(read_study(path)))
    files = sorted(path.glob("*.ndjson")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise InvalidDataError(
            [Problem(str(path), "is not a Bundle, an NDJSON file or folder, or a study folder")]
        )
    resources: list[dict[str, Any]] = []
    for file in files:
        resources.extend(_read_file(file))
    return resources


def _read_file(file: Path) -> Iterable[dict[str, Any]]:
    text = file.read_text(encoding="utf-8-sig")
    try:
        if file.suffix == ".ndjson":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        document = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidDataError(
            [Problem(str(file), f"is not valid JSON: {e.msg}", e.lineno)]
        ) from None
    if isinstance(document, dict) and document.get("resourceType") == "Bundle":
        return [e["resource"] for e in document.get("entry", []) if "resource" in e]
    if isinstance(document, dict) and "resourceType" in document:
        return [document]
    raise InvalidDataError([Problem(str(file), "holds no FHIR resource")])
