"""A validation run: read the inputs, check every resource, then the rules of Bundles and of the
study as a whole; issues come back in input order."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fhir_admsc import terminology as term
from fhir_admsc.validation.catalog import Catalog, load_ig, project_catalog
from fhir_admsc.validation.engine import Validator, reference_of
from fhir_admsc.validation.fhirpath import Resolver
from fhir_admsc.validation.inputs import Document, read_documents
from fhir_admsc.validation.issues import Issue

BUNDLE_RULES = "fhir-admsc:bundle"
STUDY_RULES = "fhir-admsc:study"
# Bundle types whose references must all resolve inside the Bundle.
SELF_CONTAINED = {"transaction", "collection", "batch", "document", "message"}


@dataclass
class Checked:
    """One resource to check: where it is, and how its locations are prefixed."""

    resource: Any
    source: str
    line: int
    prefix: str  # "" for a standalone resource, "Bundle.entry[3].resource" inside a Bundle


def catalog_for(igs: Iterable[Path] = ()) -> Catalog:
    """The project's conformance resources plus those of every ``--ig`` package or folder."""
    base = project_catalog()
    extra = [r for path in igs for r in load_ig(Path(path))]
    if not extra:
        return base
    return Catalog(
        [*base.structures.values(), *base.value_sets.values(), *base.code_systems.values(), *extra]
    )


def validate_paths(
    paths: Iterable[Path], igs: Iterable[Path] = (), profiles: Iterable[str] = ()
) -> tuple[list[Issue], int]:
    """Validate every resource in ``paths``; returns the issues and how many resources were read."""
    documents: list[Document] = []
    issues: list[Issue] = []
    for path in paths:
        for item in read_documents(Path(path)):
            (issues if isinstance(item, Issue) else documents).append(item)
    found, checked = validate_documents(documents, catalog_for(igs), profiles)
    return issues + found, checked


def validate_resources(
    resources: Iterable[dict[str, Any]],
    catalog: Catalog | None = None,
    profiles: Iterable[str] = (),
) -> list[Issue]:
    """Validate resources held in memory (each a resource or a Bundle), as one set."""
    documents = [Document("<memory>", 0, r) for r in resources]
    return validate_documents(documents, catalog or project_catalog(), profiles)[0]


def validate_documents(
    documents: list[Document], catalog: Catalog, profiles: Iterable[str] = ()
) -> tuple[list[Issue], int]:
    validator = Validator(catalog, profiles)
    items = list(_checked(documents))
    resolver = Resolver(
        {ref: c.resource for c in items if (ref := reference_of(c.resource)) is not None}
    )
    issues: list[Issue] = []
    for item in items:
        found = validator.validate(item.resource, resolver)
        if isinstance(item.resource, dict) and isinstance(item.resource.get("resourceType"), str):
            found += validator.check_extensions(item.resource)
        issues.extend(_placed(i, item) for i in found)
    for document in documents:
        if _is_bundle(document.value):
            issues.extend(_bundle_rules(document))
    issues.extend(_study_rules(items))
    return issues, sum(1 for i in items if i.prefix or not _is_bundle(i.resource))


def _placed(issue: Issue, item: Checked) -> Issue:
    if not item.prefix:
        return issue.at(item.source, item.line or None)
    rest = issue.location.split(".", 1)[1] if "." in issue.location else ""
    location = f"{item.prefix}/*{reference_of(item.resource)}*/" + (f".{rest}" if rest else "")
    return issue.at(item.source, item.line or None).__class__(
        issue.severity,
        issue.code,
        issue.message,
        location,
        issue.rule,
        issue.resource,
        item.source,
        item.line or None,
    )


def _is_bundle(value: Any) -> bool:
    return isinstance(value, dict) and value.get("resourceType") == "Bundle"


def _checked(documents: list[Document]) -> Iterable[Checked]:
    for document in documents:
        value = document.value
        if not _is_bundle(value):
            yield Checked(value, document.source, document.line, "")
            continue
        entries = value.get("entry", [])
        yield Checked(_bundle_shell(value), document.source, document.line, "")
        lines = document.entry_lines or []
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            if isinstance(entry, dict) and "resource" in entry:
                line = lines[i] if i < len(lines) else document.line
                yield Checked(
                    entry["resource"], document.source, line, f"Bundle.entry[{i}].resource"
                )


def _bundle_shell(bundle: dict[str, Any]) -> dict[str, Any]:
    """The Bundle with each entry's resource replaced by a stub, so that entries are checked
    once each (with their own line numbers) and the Bundle's own rules still see their shape."""
    shell = dict(bundle)
    if isinstance(bundle.get("entry"), list):
        shell["entry"] = [
            {
                **e,
                "resource": {
                    "resourceType": e["resource"].get("resourceType", "Basic"),
                    "id": e["resource"].get("id"),
                },
            }
            if isinstance(e, dict) and isinstance(e.get("resource"), dict)
            else e
            for e in bundle["entry"]
        ]
    return shell


def _references(value: Any, location: str) -> Iterable[tuple[str, str]]:
    if isinstance(value, dict):
        ref = value.get("reference")
        if isinstance(ref, str):
            yield ref, f"{location}.reference"
        for key, item in value.items():
            if key != "contained":
                yield from _references(item, f"{location}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _references(item, f"{location}[{i}]")


def _bundle_rules(document: Document) -> list[Issue]:
    """Unique fullUrls, and every reference resolving to an entry of a self-contained Bundle."""
    bundle = document.value
    entries = [e for e in bundle.get("entry", []) if isinstance(e, dict)]
    lines = document.entry_lines or []
    issues = []
    seen: dict[str, int] = {}
    targets: set[str] = set()
    for i, entry in enumerate(entries):
        full_url = entry.get("fullUrl")
        line = lines[i] if i < len(lines) else document.line
        if isinstance(full_url, str):
            if full_url in seen:
                issues.append(
                    Issue(
                        "error",
                        "structure",
                        f"fullUrl {full_url} is used again (first in entry {seen[full_url]})",
                        f"Bundle.entry[{i}].fullUrl",
                        f"{BUNDLE_RULES}#unique-fullurl",
                        source=document.source,
                        line=line,
                    )
                )
            seen.setdefault(full_url, i)
            targets.add(full_url)
        resource = entry.get("resource")
        if isinstance(resource, dict) and "id" in resource:
            targets.add(f"{resource.get('resourceType')}/{resource['id']}")
    if bundle.get("type") not in SELF_CONTAINED:
        return issues
    for i, entry in enumerate(entries):
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            continue
        line = lines[i] if i < len(lines) else document.line
        prefix = f"Bundle.entry[{i}].resource/*{reference_of(resource)}*/"
        for ref, where in _references(resource, ""):
            if ref.startswith("#") or ref in targets or "/".join(ref.split("/")[-2:]) in targets:
                continue
            issues.append(
                Issue(
                    "error",
                    "not-found",
                    f"refers to {ref}, which is not in the Bundle",
                    prefix + where,
                    f"{BUNDLE_RULES}#reference-resolves",
                    reference_of(resource),
                    document.source,
                    line,
                )
            )
    return issues


def _study_rules(items: list[Checked]) -> list[Issue]:
    """Rules across resources: no adverse event starts before the participant's first study
    procedure (when that participant's procedures are among the checked resources)."""
    first: dict[str, str] = {}
    for item in items:
        r = item.resource
        if isinstance(r, dict) and r.get("resourceType") == "Procedure":
            subject = _subject(r)
            performed = r.get("performedDateTime")
            if isinstance(subject, str) and isinstance(performed, str):
                first[subject] = min(first.get(subject, performed), performed)
    issues = []
    ae_profile = term.profile_url("adverse-event")
    for item in items:
        r = item.resource
        if not (
            isinstance(r, dict)
            and r.get("resourceType") == "AdverseEvent"
            and ae_profile in _claimed(r)
        ):
            continue
        subject = _subject(r)
        onset = r.get("date")
        start = first.get(subject) if isinstance(subject, str) else None
        if isinstance(onset, str) and start is not None and onset[:10] < start[:10]:
            issue = Issue(
                "error",
                "invariant",
                f"the adverse event starts ({onset[:10]}) before "
                f"the participant's first study procedure ({start[:10]})",
                "AdverseEvent.date",
                f"{STUDY_RULES}#ae-after-first-procedure",
                reference_of(r),
            )
            issues.append(_placed(issue, item))
    return issues


def _subject(resource: dict[str, Any]) -> Any:
    """The subject reference, or None when the element is malformed (the walk reports that)."""
    subject = resource.get("subject")
    return subject.get("reference") if isinstance(subject, dict) else None


def _claimed(resource: dict[str, Any]) -> list[Any]:
    meta = resource.get("meta")
    profiles = meta.get("profile") if isinstance(meta, dict) else None
    return profiles if isinstance(profiles, list) else []
