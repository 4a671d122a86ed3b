"""Assemble resources into transaction or collection Bundles and NDJSON, in a stable order; read
them back from Bundle and NDJSON files (or a study folder, exported on the fly)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from fhir_admsc import ids, limits
from fhir_admsc.errors import InvalidDataError, Problem
from fhir_admsc.resources import key

BundleType = Literal["transaction", "collection"]


def bundle(resources: Iterable[dict[str, Any]], kind: BundleType, study_id: str) -> dict[str, Any]:
    """A Bundle of ``resources``; a transaction upserts each one with ``PUT Type/id``."""
    return {**_head(kind, study_id), "entry": [_entry(r, kind) for r in resources]}


def bundle_text(resources: Iterable[dict[str, Any]], kind: BundleType, study_id: str) -> str:
    """``bundle_json(bundle(resources, kind, study_id))``, each entry encoded as it comes: the
    resources need not all be alive at once (an export maps and encodes them one by one)."""
    return _text(_head(kind, study_id), (_entry(r, kind) for r in resources))


def _head(kind: BundleType, study_id: str) -> dict[str, Any]:
    return {"resourceType": "Bundle", "id": ids.resource_id(study_id, "Bundle", kind), "type": kind}


def _entry(resource: dict[str, Any], kind: BundleType) -> dict[str, Any]:
    entry: dict[str, Any] = {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource}
    if kind == "transaction":
        entry["request"] = {"method": "PUT", "url": key(resource)}
    return entry


def bundle_json(value: dict[str, Any]) -> str:
    """A Bundle (or any resource) as JSON text: the Bundle's own elements indented, each entry on one
    line of its own, and a final newline.

    One line per entry keeps large Bundles readable line by line and diffable, and lets the encoder
    run in C: Python's json module indents in pure Python, at a fifth of the speed.
    """
    entries = value.get("entry")
    if not isinstance(entries, list) or not entries:
        return json.dumps(value, indent=2, ensure_ascii=False) + "\n"
    return _text({k: v for k, v in value.items() if k != "entry"}, entries)


def _text(head: dict[str, Any], entries: Iterable[dict[str, Any]]) -> str:
    rows = ",\n".join(f"    {_compact(entry)}" for entry in entries)
    if not rows:
        return bundle_json({**head, "entry": []})
    lines = [f"  {_compact(k)}: {_compact(v)}," for k, v in head.items()]
    return "{\n" + "\n".join(lines) + '\n  "entry": [\n' + rows + "\n  ]\n}\n"


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def ndjson_line(resource: dict[str, Any]) -> str:
    """One resource as a line of NDJSON (compact, non-ASCII kept), without the line break."""
    return _compact(resource)


def ndjson_files(resources: Iterable[dict[str, Any]]) -> dict[str, str]:
    """NDJSON text per resource type: ``{"Patient.ndjson": "...", ...}``, one resource a line."""
    lines: dict[str, list[str]] = defaultdict(list)
    for resource in resources:
        lines[resource["resourceType"]].append(ndjson_line(resource))
    return {f"{t}.ndjson": "\n".join(rows) + "\n" for t, rows in sorted(lines.items())}


def read_resources(path: Path, notify: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """The resources of a Bundle file, an NDJSON file or folder, or a study folder (``notify``
    is told of the files in a study folder that are not read)."""
    if path.is_dir() and (path / "study.json").exists():
        from fhir_admsc.mappings import study_to_fhir
        from fhir_admsc.tables import read_study

        return list(study_to_fhir(read_study(path, notify)))
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
    try:
        text = limits.read_text(file)
    except UnicodeDecodeError as e:
        raise InvalidDataError(
            [Problem(str(file), f"is not UTF-8 text (byte {e.start})")]
        ) from None
    if file.suffix == ".ndjson":
        # only "\n" ends an NDJSON line: text may hold U+2028 or U+0085, which splitlines() splits on
        lines = enumerate(text.split("\n"), start=1)
        return [_resource(_parse(file, line, n), file, n) for n, line in lines if line.strip()]
    document = _parse(file, text)
    if isinstance(document, dict) and document.get("resourceType") == "Bundle":
        entries = document.get("entry", [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise InvalidDataError(
                [Problem(str(file), "holds a Bundle whose entries are not objects")]
            )
        return [_resource(e["resource"], file) for e in entries if "resource" in e]
    return [_resource(document, file)]


def _parse(file: Path, text: str, line: int = 1) -> Any:
    """The JSON document ``text`` that starts on ``line`` of ``file``."""
    try:
        return limits.loads(text, str(file), line)
    except json.JSONDecodeError as e:
        where = line + e.lineno - 1
        raise InvalidDataError([Problem(str(file), f"is not valid JSON: {e.msg}", where)]) from None


def _resource(value: Any, file: Path, line: int | None = None) -> dict[str, Any]:
    """``value``, when it is a FHIR resource with an id (what push and the reverse mappings need)."""
    if (
        isinstance(value, dict)
        and isinstance(value.get("resourceType"), str)
        and isinstance(value.get("id"), str)
    ):
        return value
    raise InvalidDataError([Problem(str(file), "holds no FHIR resource with an id", line)])
