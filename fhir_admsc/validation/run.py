"""A validation run: read the inputs, check every resource, then the rules of Bundles and the
rules across resources it is given (the study's by default); issues come back in input order."""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from fhir_admsc import r4
from fhir_admsc.parallel import SMALLEST_BYTES, run_in_order
from fhir_admsc.resources import fhir_files, label, reference_key
from fhir_admsc.validation.catalog import Catalog, project_catalog
from fhir_admsc.validation.engine import Validator, profile_type
from fhir_admsc.validation.fhirpath import Resolver
from fhir_admsc.validation.inputs import Document, ndjson_only, read_documents
from fhir_admsc.validation.issues import Issue
from fhir_admsc.validation.packages import load_packages
from fhir_admsc.validation.study_rules import RULES


class ResourceRule(Protocol):
    """A rule across resources: shown first every resource of ``kept_types``, then asked about
    each checked resource."""

    kept_types: frozenset[str]

    def see(self, resource: Any) -> None: ...

    def check(self, resource: Any) -> Issue | None: ...


BUNDLE_RULES = "fhir-admsc:bundle"
# Bundle types whose references are expected to resolve inside the Bundle: a document and a
# message must carry what they refer to (an error, as in the HL7 validator); a transaction, batch
# or collection may point at what the receiver holds (a warning: the HL7 validator says nothing).
SELF_CONTAINED = {
    "transaction": "warning",
    "collection": "warning",
    "batch": "warning",
    "document": "error",
    "message": "error",
}
# Bundle types whose entries may have no fullUrl (a POST needs none).
MAY_OMIT_FULL_URL = {"transaction", "batch", "transaction-response", "batch-response"}


@dataclass
class Checked:
    """One resource to check: where it is, and how its locations are prefixed."""

    resource: Any
    source: str
    line: int
    prefix: str  # "" for a standalone resource, "Bundle.entry[3].resource" inside a Bundle
    full_url: str | None = None  # its Bundle entry's fullUrl (urn:uuid:..., an absolute URL)
    whole: Any = None  # a Bundle whose entries ``resource`` stubs: what its profiles read

    def names(self) -> list[str]:
        """What a reference to this resource may say: ``Type/id`` and its entry's fullUrl."""
        return [n for n in (label(self.resource), self.full_url) if n is not None]


def catalog_for(igs: Iterable[Path | str] = ()) -> Catalog:
    """The project's conformance resources plus those of every ``--ig`` package (a .tgz, a
    folder or a cached ``name#version``) and of the dependencies they name. What could not be
    found is in the catalog's ``notes``."""
    base = project_catalog()
    loaded = load_packages(list(igs))
    if not loaded.resources and not loaded.notes:
        return base
    catalog = base.extended(loaded.resources)
    catalog.notes = loaded.notes
    return catalog


def validate_paths(
    paths: Iterable[Path],
    igs: Iterable[Path | str] = (),
    profiles: Iterable[str] = (),
    progress: Callable[[int], None] | None = None,
    rules: Sequence[Callable[[], ResourceRule]] = RULES,
    extension_domains: Iterable[str] = (),
    example_urls: bool = True,
    jobs: int = 1,
) -> tuple[list[Issue], int]:
    """Validate every resource in ``paths``; returns the issues and how many resources were read.

    NDJSON inputs are streamed (see ``_stream``); Bundles and JSON files are read whole.
    Inputs without a single resource are a fatal issue: a missing artefact never passes. A
    ``profiles`` URL that no loaded package defines raises ConfigurationError before any reading.
    ``progress`` is told how many resources have been checked so far; ``rules`` make the rules
    across resources (by default the study's); extensions under ``extension_domains`` may be
    used without a definition; ``example_urls`` False refuses URLs of example domains; ``jobs``
    processes check the resources (NDJSON: each process a share of the lines).
    """
    paths = [Path(p) for p in paths]
    catalog = catalog_for(igs)
    for url in profiles:
        profile_type(catalog, url)
    notes = [
        Issue("warning", "not-found", note, "$this", "fhir-admsc:packages")
        for note in catalog.notes
    ]
    if paths and all(ndjson_only(p) for p in paths):
        validator = Validator(catalog, profiles, extension_domains, example_urls)
        with _collector_on_new_objects():
            issues, checked = _stream(paths, catalog, validator, progress, rules, jobs)
    else:
        documents: list[Document] = []
        issues = []
        for path in paths:
            for item in read_documents(path):
                (issues if isinstance(item, Issue) else documents).append(item)
        found, checked = validate_documents(
            documents, catalog, profiles, progress, rules, extension_domains, example_urls, jobs
        )
        issues += found
    if checked == 0:
        where = ", ".join(str(p) for p in paths)
        issues.append(Issue("fatal", "not-found", f"no resources found in {where}", "$this"))
    return notes + issues, checked


@contextmanager
def _collector_on_new_objects() -> Iterator[None]:
    """Keep the cycle collector off what exists already (the packages, the inputs in memory):
    it would walk them again and again while validation allocates (a fifth of the time on real
    IGs' examples); what validation makes is collected as usual."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _stream(
    paths: list[Path],
    catalog: Catalog,
    validator: Validator,
    progress: Callable[[int], None] | None,
    rules: Sequence[Callable[[], ResourceRule]],
    jobs: int,
) -> tuple[list[Issue], int]:
    """Validate NDJSON one line at a time, in two passes, so that memory does not grow with the
    number of resources: the first keeps only the resources that rules look up in others (those
    the profiles' invariants ``resolve()``, and those the resource rules are shown), the second
    checks every line against them and lets it go."""
    made = [rule() for rule in rules]
    kept_types = _resolved_types(catalog).union(*(rule.kept_types for rule in made))
    kept = _Encoded()
    for path in paths:
        for item in read_documents(path):
            value = item.value if isinstance(item, Document) else None
            kind = value.get("resourceType") if isinstance(value, dict) else None
            if isinstance(kind, str) and kind in kept_types:
                if (ref := label(value)) is not None:
                    kept.keep(ref, value)
                for rule in made:
                    if kind in rule.kept_types:
                        rule.see(value)
    second = _SecondPass(paths, validator, Resolver(kept), made)
    size = sum(f.stat().st_size for p in paths for f in fhir_files(p))
    if jobs > 1 and size >= SMALLEST_BYTES:
        shares = run_in_order(second.share, [(k, jobs) for k in range(jobs)], jobs, smallest=2)
        blocks = sorted(block for found in shares for share in found for block in share)
        return [i for _, _, found in blocks for i in found], sum(n for _, n, _ in blocks)
    issues: list[Issue] = []
    checked = 0
    for _, count, found in second.share((0, 1), progress):
        issues.extend(found)
        checked += count
    return issues, checked


@dataclass
class _SecondPass:
    """The second pass of a streamed validation over one share of the lines (see _stream)."""

    paths: list[Path]
    validator: Validator
    resolver: Resolver
    made: list[ResourceRule]

    def share(
        self, share: tuple[int, int], progress: Callable[[int], None] | None = None
    ) -> list[tuple[tuple[int, int], int, list[Issue]]]:
        """((file, line), resources checked, issues) of each document of the share, in order."""
        rank = {str(f): i for i, f in enumerate(f for p in self.paths for f in fhir_files(p))}
        blocks = []
        checked = 0
        for path in self.paths:
            for document in read_documents(path, share):
                if isinstance(document, Issue):
                    where = (rank.get(document.source or "", -1), document.line or 0)
                    blocks.append((where, 0, [document]))
                    continue
                found: list[Issue] = []
                count = 0
                for item in _checked([document]):
                    found.extend(_check(self.validator, item, self.resolver))
                    found.extend(_rule_issues(self.made, item))
                    count += bool(item.prefix or not _is_bundle(item.resource))
                if _is_bundle(document.value):
                    found.extend(_bundle_rules(document))
                blocks.append(((rank.get(document.source, -1), document.line), count, found))
                checked += count
                if progress:
                    progress(checked)
        return blocks


def _resolved_types(catalog: Catalog) -> set[str]:
    """The resource types the loaded profiles' invariants reach through ``resolve()``."""
    found: set[str] = set()
    for sd in catalog.structures.values():
        for element in sd.get("differential", {}).get("element", []):
            for constraint in element.get("constraint", []):
                expression = constraint.get("expression", "")
                found.update(_RESOLVED.findall(expression))
                if expression.count("resolve()") > len(_RESOLVED.findall(expression)):
                    found.update(r4.resource_types())  # any type: keep them all
    return found


_RESOLVED = re.compile(r"resolve\(\)\.ofType\((\w+)\)")


def validate_resources(
    resources: Iterable[dict[str, Any]],
    catalog: Catalog | None = None,
    profiles: Iterable[str] = (),
) -> list[Issue]:
    """Validate resources held in memory (each a resource or a Bundle), as one set."""
    documents = [Document("<memory>", 0, r) for r in resources]
    return validate_documents(documents, catalog or project_catalog(), profiles)[0]


def validate_documents(
    documents: list[Document],
    catalog: Catalog,
    profiles: Iterable[str] = (),
    progress: Callable[[int], None] | None = None,
    rules: Sequence[Callable[[], ResourceRule]] = RULES,
    extension_domains: Iterable[str] = (),
    example_urls: bool = True,
    jobs: int = 1,
) -> tuple[list[Issue], int]:
    """Validate documents held in memory as one set; returns the issues and how many resources
    were checked. ``jobs`` processes check the resources (see parallel)."""
    with _collector_on_new_objects():
        return _documents(
            documents, catalog, profiles, progress, rules, extension_domains, example_urls, jobs
        )


def _documents(
    documents: list[Document],
    catalog: Catalog,
    profiles: Iterable[str],
    progress: Callable[[int], None] | None,
    rules: Sequence[Callable[[], ResourceRule]],
    extension_domains: Iterable[str],
    example_urls: bool,
    jobs: int,
) -> tuple[list[Issue], int]:
    validator = Validator(catalog, profiles, extension_domains, example_urls)
    items = list(_checked(documents))
    # a reference resolves by Type/id or, inside a Bundle, by the fullUrl of an entry
    resolver = Resolver({name: c.resource for c in items for name in c.names()})
    issues: list[Issue] = []
    done = 0
    for found in run_in_order(partial(_check, validator, resolver=resolver), items, jobs):
        for item_issues in found:
            issues.extend(item_issues)
        done += len(found)
        if progress:
            progress(done)
    for document in documents:
        if _is_bundle(document.value):
            issues.extend(_bundle_rules(document))
    made = [rule() for rule in rules]
    for rule in made:
        for item in items:
            rule.see(item.resource)
    for item in items:
        issues.extend(_rule_issues(made, item))
    return issues, sum(1 for i in items if i.prefix or not _is_bundle(i.resource))


def _check(validator: Validator, item: Checked, resolver: Resolver) -> list[Issue]:
    """The issues of one resource: its own, and those of its extensions."""
    found = validator.validate(item.resource, resolver, profiled=item.whole)
    if isinstance(item.resource, dict) and isinstance(item.resource.get("resourceType"), str):
        more = validator.check_extensions(item.resource, resolver)
        if more:  # an extension's own definition, applied by its slice already, says it once
            known = set(found)
            found += [i for i in more if i not in known]
    return [_placed(i, item) for i in found]


def _placed(issue: Issue, item: Checked) -> Issue:
    if not item.prefix:
        return issue.at(item.source, item.line or None)
    rest = issue.location.split(".", 1)[1] if "." in issue.location else ""
    location = f"{item.prefix}/*{label(item.resource)}*/" + (f".{rest}" if rest else "")
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
        yield Checked(_bundle_shell(value), document.source, document.line, "", whole=value)
        lines = document.entry_lines or []
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            if isinstance(entry, dict) and "resource" in entry:
                line = lines[i] if i < len(lines) else document.line
                full_url = entry.get("fullUrl")
                yield Checked(
                    entry["resource"],
                    document.source,
                    line,
                    f"Bundle.entry[{i}].resource",
                    full_url if isinstance(full_url, str) else None,
                )


def _bundle_shell(bundle: dict[str, Any]) -> dict[str, Any]:
    """The Bundle with each entry's resource replaced by a stub, so that entries are checked
    once each (with their own line numbers) and the Bundle's own rules still see their shape."""
    shell = dict(bundle)
    if isinstance(bundle.get("entry"), list):
        shell["entry"] = [
            {
                **e,
                "resource": _stub(e["resource"]),
            }
            if isinstance(e, dict) and isinstance(e.get("resource"), dict)
            else e
            for e in bundle["entry"]
        ]
    return shell


def _stub(resource: dict[str, Any]) -> dict[str, Any]:
    """What the Bundle's own rules read of an entry's resource: type, id and version."""
    stub = {"resourceType": resource.get("resourceType", "Basic"), "id": resource.get("id")}
    version = _version(resource)
    if version is not None:
        stub["meta"] = {"versionId": version}
    return stub


def _version(resource: Any) -> Any:
    meta = resource.get("meta") if isinstance(resource, dict) else None
    return meta.get("versionId") if isinstance(meta, dict) else None


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
    """A fullUrl on every entry outside transactions and batches (the R4 definition of
    Bundle.entry.fullUrl; the HL7 validator reports it too), unique fullUrls, and every reference
    resolving to an entry of a self-contained Bundle."""
    bundle = document.value
    entries = [e for e in bundle.get("entry", []) if isinstance(e, dict)]
    issues = _full_url_rules(document, entries)
    severity = SELF_CONTAINED.get(bundle.get("type"))  # type: ignore[arg-type]
    if severity:
        issues += _unresolved(document, entries, severity)
    issues += _link_rules(document)
    if bundle.get("type") == "searchset":
        issues += _search_rules(document, entries)
    return issues


NAVIGATION = ("self", "first", "previous", "prev", "next", "last")


def _link_rules(document: Document) -> list[Issue]:
    """Each navigation link (self, first, previous, next, last) once."""
    links = document.value.get("link")
    seen: set[str] = set()
    issues = []
    for i, link in enumerate(links if isinstance(links, list) else []):
        relation = link.get("relation") if isinstance(link, dict) else None
        if relation in NAVIGATION and relation in seen:
            issues.append(
                _bundle_issue(
                    document,
                    f"Bundle.link[{i}]",
                    f"the link relation '{relation}' may occur only once",
                    "link-once",
                    document.line,
                )
            )
        seen.add(relation)
    return issues


def _search_rules(document: Document, entries: list[dict[str, Any]]) -> list[Issue]:
    """A search result has an id and a type the search asked for; an outcome entry is an
    OperationOutcome (as the HL7 validator checks searchsets)."""
    wanted = _searched_types(document.value)
    issues = []
    for i, entry in enumerate(entries):
        resource, search = entry.get("resource"), entry.get("search")
        mode = search.get("mode") if isinstance(search, dict) else None
        if not isinstance(resource, dict):
            continue
        kind = resource.get("resourceType")
        where, line = f"Bundle.entry[{i}].resource", _entry_line(document, i)
        problems = []
        if mode == "outcome" and kind != "OperationOutcome":
            problems.append(
                ("search-outcome", f"an entry of mode outcome is a {kind}, not an OperationOutcome")
            )
        if mode == "match" and "id" not in resource:
            problems.append(("search-id", "a search result needs an id"))
        if mode == "match" and wanted and kind not in wanted:
            problems.append(
                ("search-type", f"a {kind} is not what the search asked for ({', '.join(wanted)})")
            )
        issues += [_bundle_issue(document, where, text, rule, line) for rule, text in problems]
    return issues


def _searched_types(bundle: dict[str, Any]) -> list[str]:
    """The resource types the self link's search is for: its path's type, or its _type."""
    links = bundle.get("link") if isinstance(bundle.get("link"), list) else []
    url = next(
        (k.get("url") for k in links if isinstance(k, dict) and k.get("relation") == "self"), None
    )
    if not isinstance(url, str):
        return []
    path, _, query = url.partition("?")
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name == "_type" and value:
            return [t for t in value.split(",") if r4.is_resource_type(t)]
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return [last] if r4.is_resource_type(last) else []


def _bundle_issue(
    document: Document, where: str, message: str, rule: str, line: int, code: str = "structure"
) -> Issue:
    """An error of a Bundle rule, at the line of the entry it is about."""
    return Issue(
        "error",
        code,  # type: ignore[arg-type]
        message,
        where,
        f"{BUNDLE_RULES}#{rule}",
        source=document.source,
        line=line,
    )


def _entry_line(document: Document, i: int) -> int:
    lines = document.entry_lines or []
    return lines[i] if i < len(lines) else document.line


def _full_url_rules(document: Document, entries: list[dict[str, Any]]) -> list[Issue]:
    """Entries without a fullUrl where the Bundle type needs one, and fullUrls used twice."""
    kind = document.value.get("type")
    issues = []
    seen: dict[tuple[str, Any], int] = {}
    for i, entry in enumerate(entries):
        full_url = entry.get("fullUrl")
        # the same resource may appear in several versions (bdl-7), and in any number in a history
        key = (full_url, _version(entry.get("resource")))
        if full_url is None and "resource" in entry and kind not in MAY_OMIT_FULL_URL:
            message = (
                f"an entry of a {kind} Bundle needs a fullUrl, the identity of its resource "
                "(only transactions and batches may leave it out)"
            )
            where, rule = f"Bundle.entry[{i}]", "fullurl-required"
        elif isinstance(full_url, str) and not _ABSOLUTE.match(full_url):
            message = f"a fullUrl must be an absolute URL or a urn:uuid: (not '{full_url}')"
            where, rule = f"Bundle.entry[{i}].fullUrl", "fullurl-absolute"
        elif isinstance(full_url, str) and (names := _restful_mismatch(full_url, entry)):
            message = (
                f"fullUrl {full_url} is a RESTful URL, so it must end with the type and id of "
                f"its resource ({names})"
            )
            where, rule = f"Bundle.entry[{i}].fullUrl", "fullurl-matches"
        elif isinstance(full_url, str) and key in seen and kind != "history":
            message = f"fullUrl {full_url} is used again (first in entry {seen[key]})"
            where, rule = f"Bundle.entry[{i}].fullUrl", "unique-fullurl"
        else:
            if isinstance(full_url, str):
                seen[key] = i
            continue
        code = "required" if rule == "fullurl-required" else "structure"
        issues.append(_bundle_issue(document, where, message, rule, _entry_line(document, i), code))
    return issues


def _restful_mismatch(full_url: str, entry: dict[str, Any]) -> str | None:
    """``Type/id`` of an entry's resource when its http(s) fullUrl ends with another type and id
    (``.../Patient/1`` on Patient/2), else None."""
    resource = entry.get("resource")
    match = _RESTFUL.search(full_url)
    if not isinstance(resource, dict) or match is None or not r4.is_resource_type(match[1]):
        return None
    name = f"{resource.get('resourceType')}/{resource.get('id')}"
    if "id" not in resource or name == f"{match[1]}/{match[2]}":
        return None
    return name


def _unresolved(
    document: Document, entries: list[dict[str, Any]], severity: str = "error"
) -> list[Issue]:
    """References of the entries' resources to nothing in the Bundle (by fullUrl or Type/id), or
    to more than one entry (the same fullUrl in several versions, read without a version)."""
    index = _Targets(entries)
    issues = []
    for i, entry in enumerate(entries):
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            continue
        quick = _quick_references(resource)
        if quick is not None and all(index.plain(ref) for ref in quick):
            continue
        prefix = f"Bundle.entry[{i}].resource/*{label(resource)}*/"
        for ref, where in _references(resource, ""):
            found = 1 if ref.startswith("#") else index.count(ref)
            if found == 1:
                continue
            message = (
                f"refers to {ref}, which is not in the Bundle"
                if found == 0
                else f"refers to {ref}, which {found} entries of the Bundle match (give the version)"
            )
            issues.append(
                Issue(
                    severity,  # type: ignore[arg-type]
                    "not-found",
                    message,
                    prefix + where,
                    f"{BUNDLE_RULES}#reference-resolves",
                    label(resource),
                    document.source,
                    _entry_line(document, i),
                )
            )
    return issues


class _Targets:
    """A Bundle's entries by the names a reference finds them by: fullUrl, or Type/id."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.by_name: dict[str, list[tuple[int, Any]]] = {}
        for i, entry in enumerate(entries):
            resource = entry.get("resource")
            version = _version(resource)
            full_url = entry.get("fullUrl")
            name = label(resource) if isinstance(resource, dict) and "id" in resource else None
            if isinstance(full_url, str):
                self.by_name.setdefault(full_url, []).append((i, version))
            if name is not None and name != full_url:
                self.by_name.setdefault(name, []).append((i, version))
        # names more than one entry answers to (the same fullUrl in several versions)
        self.shared = {name for name, found in self.by_name.items() if len(found) > 1}

    def plain(self, reference: str) -> bool:
        """Whether ``reference`` names exactly one entry, without a version (the fast path)."""
        if reference.startswith("#"):
            return True
        if reference in self.by_name:
            return reference not in self.shared and "/_history/" not in reference
        key = reference_key(reference)
        return key in self.by_name and key not in self.shared and "/_history/" not in reference

    def count(self, reference: str) -> int:
        """How many entries ``reference`` (absolute, relative, versioned) matches."""
        base, _, version = reference.partition("/_history/")
        found = self.by_name.get(base) or self.by_name.get(reference_key(base)) or []
        entries = {i for i, v in found if not version or str(v) == version}
        return len(entries)


def _quick_references(resource: dict[str, Any]) -> list[str] | None:
    """Every ``reference`` string of a resource, found in its JSON text (ten times faster than a
    walk); None when the text cannot tell (contained resources, escaped characters)."""
    if "contained" in resource:
        return None
    references = _REFERENCE.findall(_COMPACT.encode(resource))
    return None if any("\\" in r for r in references) else references


_RESTFUL = re.compile(r"^https?://.*/([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S")
_REFERENCE = re.compile(r'"reference":"((?:[^"\\]|\\.)*)"')
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


class _Encoded(dict):
    """Resources by reference, kept as compact JSON text (a third of the memory of the parsed
    resource) and parsed again when looked up, which invariants do rarely."""

    def keep(self, reference: str, resource: dict[str, Any]) -> None:
        super().__setitem__(reference, json.dumps(resource, separators=(",", ":")))

    def __getitem__(self, reference: str) -> dict[str, Any]:
        return json.loads(super().__getitem__(reference))

    def get(self, reference: str, default: Any = None) -> Any:
        return self[reference] if reference in self else default  # noqa: SIM401 - this is get()

    def values(self) -> Any:
        return [self[reference] for reference in self]


def _rule_issues(rules: list[ResourceRule], item: Checked) -> list[Issue]:
    """The issues the resource rules find in one checked resource, placed where it is."""
    return [_placed(issue, item) for rule in rules if (issue := rule.check(item.resource))]
