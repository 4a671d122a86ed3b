"""Real implementation guides' own examples, validated by us and by the HL7 validator engine (the
``tests/reference`` build) with the same packages loaded: the verdict of each file compared.

The IG packages come from the npm registry, where HL7 publishes some FHIR packages (``npm pack``
into tests/igs/packages, once). Used by tests/validation/test_ig_examples.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fhir_admsc.resources import Document
from fhir_admsc.validation.run import catalog_for, validate_documents

PACKAGES = Path(__file__).resolve().parents[1] / "igs" / "packages"
# The IGs whose examples are compared (each an npm name@version whose dependencies the registry
# also has), and the packages they depend on that are loaded beside them.
IGS = ["hl7.fhir.au.base@6.0.0", "hl7.fhir.uv.ips@2.0.0", "hl7.fhir.uv.genomics-reporting@3.0.0"]
DEPENDENCIES = ["hl7.terminology.r4@7.0.1", "hl7.fhir.uv.extensions.r4@5.3.0-ballot-tc1"]
# Errors of the HL7 engine that rest on terminology it cannot reach offline (LOINC answer lists,
# HGVS, IANA time zones, BCP-47 languages): counted apart, as the HL7 suite's server cases are.
TERMINOLOGY = re.compile(r"^Terminology_")


def tgz(spec: str) -> Path:
    name, _, version = spec.rpartition("@")
    return PACKAGES / f"{name}-{version}.tgz"


def fetch() -> list[Path]:
    """Every package above in tests/igs/packages, fetched with ``npm pack`` when missing."""
    PACKAGES.mkdir(parents=True, exist_ok=True)
    for spec in [*IGS, *DEPENDENCIES]:
        if not tgz(spec).exists():
            done = subprocess.run(
                ["npm", "pack", "--silent", spec, "--pack-destination", str(PACKAGES)],
                capture_output=True,
                text=True,
                check=False,
                timeout=300,
            )
            if done.returncode != 0 or not tgz(spec).exists():
                raise RuntimeError(f"npm pack {spec} failed: {done.stderr[-2000:]}")
    return [tgz(spec) for spec in [*IGS, *DEPENDENCIES]]


def extract_examples(package: Path, folder: Path) -> list[Path]:
    """The JSON examples of a package (``package/example/*.json``), written to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with tarfile.open(package, "r:gz") as tar:
        for member in tar:
            name = member.name.lstrip("./")
            base = name.rsplit("/", 1)[-1]
            if not (member.isfile() and name.startswith("package/example/")):
                continue
            if base.endswith(".json") and not base.startswith("."):
                data = tar.extractfile(member)
                target = folder / base
                target.write_bytes(data.read() if data else b"")
                written.append(target)
    return sorted(written)


def key(path: str | Path) -> str:
    """A file as both engines' results name it: its IG's folder and its name."""
    return f"{Path(path).parent.name}/{Path(path).name}"


@dataclass
class Verdicts:
    """Per example file: whether an engine found an error, what it said, and (for the HL7
    engine) whether every error it found rests on unreachable terminology."""

    errors: dict[str, bool] = field(default_factory=dict)
    said: dict[str, list[str]] = field(default_factory=dict)
    terminology_only: set[str] = field(default_factory=set)


def ours(packages: list[Path], files: list[Path]) -> Verdicts:
    catalog = catalog_for(packages)
    documents = [
        Document(str(file), 1, json.loads(file.read_text(encoding="utf-8"))) for file in files
    ]
    found = Verdicts()
    for document in documents:  # one file at a time: the references of a file are its own
        issues, _ = validate_documents([document], catalog)
        errors = [i for i in issues if i.severity in ("error", "fatal")]
        name = key(document.source)
        found.errors[name] = bool(errors)
        found.said[name] = [f"{i.location}: {i.message}" for i in errors]
    return found


def reference(records: list[dict[str, Any]]) -> Verdicts:
    """The HL7 engine's verdict per file, from the records of its run."""
    found = Verdicts()
    kinds: dict[str, list[bool]] = {}
    for record in records:
        name = key(record["file"])
        errors = [i for i in record["issues"] if i["severity"] in ("error", "fatal")]
        found.errors[name] = found.errors.get(name, False) or bool(errors)
        found.said.setdefault(name, []).extend(
            f"{i.get('location')}: {i.get('message')}" for i in errors
        )
        kinds.setdefault(name, []).extend(
            bool(TERMINOLOGY.match(i.get("messageId") or "")) for i in errors
        )
    found.terminology_only = {name for name, k in kinds.items() if k and all(k)}
    return found
