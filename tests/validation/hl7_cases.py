"""The HL7 validator's own test cases (repository FHIR/fhir-test-cases, folder validator/): which
R4 cases we take, what the Java validator recorded for each, and what we say of the same input.

Used by tests/validation/test_hl7_cases.py on the copy in tests/data/fhir-test-cases, and by
tools/fhir_test_cases.py on a whole checkout of the suite.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fhir_admsc.resources import Document
from fhir_admsc.validation.catalog import Catalog, project_catalog
from fhir_admsc.validation.run import validate_documents

MODULES = {"general", "profile", "bundle", "references", "extensions", "invariants"}
SERVER = "http://hl7.org/fhir/StructureDefinition/operationoutcome-issue-server"
COPY = Path(__file__).resolve().parents[1] / "data" / "fhir-test-cases"
_COMMENT = re.compile(r"/\*.*?\*/")


def selected(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The R4 JSON cases of the modules above that load no package."""
    return [
        c
        for c in manifest["test-cases"]
        if c.get("version") == "4.0"
        and c["file"].endswith(".json")
        and c.get("module") in MODULES
        and not c.get("packages")
        and c.get("use-test", True) is not False
        and c.get("java")
    ]


def needed_files(case: dict[str, Any]) -> list[str]:
    """The files of the suite a case reads, relative to validator/."""
    files = [case["file"], *case.get("supporting", []), *case.get("profiles", [])]
    if isinstance(case["java"], str):
        files.append(f"outcomes/{case['java']}")
    return files


def element(location: str) -> str:
    """A location as compared between the engines: without the /*Type/id*/ comments."""
    return _COMMENT.sub("", location).rstrip(".")


def related(a: str, b: str) -> bool:
    """The same element, or one inside the other: engines report a cardinality or slicing error
    at the element that holds the list or at its items, an invariant at the element or a child."""
    return a == b or a.startswith((b + ".", b + "[")) or b.startswith((a + ".", a + "["))


def same_elements(ours: frozenset[str], theirs: frozenset[str]) -> bool:
    """Whether every element one engine's errors name is related to one the other's name."""
    return all(any(related(o, t) for t in theirs) for o in ours) and all(
        any(related(o, t) for o in ours) for t in theirs
    )


@dataclass
class Recorded:
    """What the Java validator said of one case."""

    errors: bool
    elements: frozenset[str]  # the elements its errors name, apart from the server's
    server_only: bool  # every error rests on a terminology server: not judgeable offline


def recorded(folder: Path, case: dict[str, Any]) -> Recorded:
    java = case["java"]
    if isinstance(java, dict):  # older cases keep only a count in the manifest
        return Recorded(java.get("errorCount", 0) > 0, frozenset(), False)
    outcome = json.loads((folder / "outcomes" / java).read_text(encoding="utf-8"))
    errors = [i for i in outcome.get("issue", []) if i.get("severity") in ("error", "fatal")]
    offline = [i for i in errors if not any(e.get("url") == SERVER for e in i.get("extension", []))]
    elements = frozenset(
        element(where) for i in offline for where in i.get("expression") or i.get("location") or []
    )
    return Recorded(bool(errors), elements, bool(errors) and not offline)


@dataclass
class Ours:
    """What `fhir-admsc validate` says of one case."""

    errors: bool
    elements: frozenset[str]
    messages: list[str]


def catalog_for_case(folder: Path, case: dict[str, Any]) -> Catalog:
    base = project_catalog()
    extra = []
    for name in [*case.get("supporting", []), *case.get("profiles", [])]:
        path = folder / name
        if path.suffix == ".json" and path.exists():
            extra.append(json.loads(path.read_text(encoding="utf-8")))
    return base.extended(extra)


def ours(folder: Path, case: dict[str, Any]) -> Ours:
    value = json.loads((folder / case["file"]).read_text(encoding="utf-8"))
    domains = [case["allowed-extension-domain"]] if "allowed-extension-domain" in case else []
    issues, _ = validate_documents(
        [Document(case["file"], 1, value)],
        catalog_for_case(folder, case),
        extension_domains=domains,
        example_urls=case.get("examples", True),
    )
    errors = [i for i in issues if i.severity in ("error", "fatal")]
    return Ours(
        bool(errors),
        frozenset(element(i.location) for i in errors),
        [f"{i.severity} {i.location}: {i.message} [{i.rule}]" for i in errors],
    )
