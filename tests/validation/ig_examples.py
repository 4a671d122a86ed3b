"""Real implementation guides' own examples, validated by us and by the HL7 validator engine (the
``tests/reference`` build) with the same packages loaded: the verdict of each file compared.

Used by tests/validation/test_ig_examples.py on the packages `.ci/run` fetches into
tests/igs/packages, and by tools/ig_examples.py on any packages.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fhir_admsc.resources import Document
from fhir_admsc.validation.run import catalog_for, validate_documents

PACKAGES = Path(__file__).resolve().parents[1] / "igs" / "packages"
# Each IG under test, with the packages it depends on that are given beside it (the others are
# missing in both engines alike).
IGS: dict[str, list[str]] = {
    "hl7.fhir.au.base-6.0.0.tgz": [
        "hl7.terminology.r4-7.0.1.tgz",
        "hl7.fhir.uv.extensions.r4-5.3.0-ballot-tc1.tgz",
    ],
    "hl7.fhir.uv.ips-2.0.0.tgz": [
        "hl7.terminology.r4-7.0.1.tgz",
        "hl7.fhir.uv.extensions.r4-5.3.0-ballot-tc1.tgz",
    ],
    "hl7.fhir.us.mcode-4.0.0.tgz": [
        "hl7.terminology.r4-7.0.1.tgz",
        "hl7.fhir.uv.extensions.r4-5.3.0-ballot-tc1.tgz",
    ],
}


def extract_examples(package: Path, folder: Path) -> list[Path]:
    """The JSON examples of a package (``package/example/*.json``), written to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with tarfile.open(package, "r:gz") as tar:
        for member in tar:
            name = member.name.lstrip("./")
            if member.isfile() and name.startswith("package/example/") and name.endswith(".json"):
                if name.rsplit("/", 1)[-1].startswith("."):
                    continue
                data = tar.extractfile(member)
                target = folder / Path(name).name
                target.write_bytes(data.read() if data else b"")
                written.append(target)
    return sorted(written)


@dataclass
class Verdicts:
    """Per example file: whether an engine found an error, and what it said."""

    errors: dict[str, bool] = field(default_factory=dict)
    said: dict[str, list[str]] = field(default_factory=dict)


def ours(package: Path, dependencies: list[Path], files: list[Path]) -> Verdicts:
    catalog = catalog_for([package, *dependencies])
    found = Verdicts()
    for file in files:
        value = json.loads(file.read_text(encoding="utf-8"))
        issues, _ = validate_documents([Document(str(file), 1, value)], catalog)
        errors = [i for i in issues if i.severity in ("error", "fatal")]
        found.errors[file.name] = bool(errors)
        found.said[file.name] = [f"{i.location}: {i.message}" for i in errors]
    return found


def reference(records: list[dict[str, Any]]) -> Verdicts:
    """The reference run's verdict per file, from its records."""
    found = Verdicts()
    for record in records:
        name = Path(record["file"]).name
        errors = [i for i in record["issues"] if i["severity"] in ("error", "fatal")]
        found.errors[name] = found.errors.get(name, False) or bool(errors)
        found.said.setdefault(name, []).extend(
            f"{i.get('location')}: {i.get('message')}" for i in errors
        )
    return found
