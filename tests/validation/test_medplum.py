"""Our validator against an independent one, Medplum's (``@medplum/core`` validateResource), over
every case of the corpus: both report errors at the same places (resource and element), or the
difference is recorded in KNOWN_DIFFERENCES, with which engine is wrong and why.

Medplum validates against snapshots, so ``tests/medplum/snapshots.py`` expands our differentials
first; ``tests/medplum/validate.mjs`` runs Medplum once over the whole corpus: each resource against
its meta.profile, and each extension against its definition (which validateResource alone never
does; see the script). Errors are compared, not warnings.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from fhir_admsc import terminology as term
from fhir_admsc.conformance import load_resources
from tests.medplum.snapshots import write_snapshots
from tests.validation.corpus import CASES, Case, write_corpus
from tests.validation.sites import Site, element, our_sites, reference_of

SCRIPT = Path(__file__).parents[1] / "medplum" / "validate.mjs"


class Known(NamedTuple):
    """A recorded difference: the elements where each engine reports errors, and why they differ."""

    ours: tuple[str, ...]
    medplum: tuple[str, ...]
    why: str


# Errors Medplum reports wherever the construct occurs, right or wrong, matched on
# "<element>: <message>"; they are left out of the case comparison (where they would hide what
# Medplum says about each case); test_medplum_false_errors_still_occur_on_clean_cases checks
# that each still occurs, on valid data.
MEDPLUM_FALSE_ERRORS: dict[str, str] = {
    r"^(Observation\.category|DiagnosticReport\.category|ImagingStudy\.(modality|procedureCode)): "
    r"Value did not match expected pattern$": (
        "Medplum wrong: it compares a pattern on a repeating element with the whole list "
        "(deepIncludes(list, object) is false), never with each repetition as R4 pattern[x] means, "
        "so every valid resource fails it"
    ),
    r"#(admsc-injection-5-months|admsc-ae-after-procedure): ": (
        "Medplum wrong: its FHIRPath resolve() returns a stub {resourceType, id} parsed from the "
        "reference, never the resource (not even from the Bundle), so an invariant that reads the "
        "referenced resource fails on valid data (a repeat injection, a suspected procedure)"
    ),
}

NO_BINDINGS = (
    "validateResource never checks a binding or a code: it only collects the codes of required "
    "bindings (collect.tokens), which the Medplum server checks against its terminology tables "
    "only when its validateTerminology option is on"
)
NO_RESOLVE = (
    "its resolve() returns a stub, so it fails this invariant on every such resource, valid or "
    "not (left out as a false error above); ours resolves the reference within the Bundle"
)
KNOWN_DIFFERENCES: dict[str, Known] = {
    "profile-reference-target": Known(
        ("AdverseEvent.suspectEntity.instance",),
        (),
        "Medplum lenient, as for base-reference-target: a Device where the profile allows only a "
        "Procedure is at most a warning",
    ),
    "bundle-urn-uuid-wrong-target": Known(
        ("Procedure.subject",),
        (),
        "Medplum misses a subject that is an Observation named by its entry's urn:uuid fullUrl: "
        "it checks a reference's target type only from a Type/id reference; the HL7 validator "
        "resolves the fullUrl and reports it, as we do",
    ),
    "bundle-entry-without-fullurl": Known(
        ("Bundle.entry",),
        (),
        "Medplum misses collection entries without a fullUrl: R4's Bundle.entry.fullUrl says it "
        "SHALL have a value (a POST aside) and the HL7 validator reports each such entry",
    ),
    "profile-required-binding": Known(
        ("Condition.bodySite", "Condition.bodySite.coding.code"),
        (),
        f"Medplum misses L6-S1 (not in our CodeSystem nor in disc-levels): {NO_BINDINGS}",
    ),
    "own-code-unknown": Known(
        ("Encounter.type", "Encounter.type.coding.code"),
        (),
        f"Medplum misses month13 (not in our CodeSystem nor in visits): {NO_BINDINGS}",
    ),
    "base-required-binding-status": Known(
        ("Procedure.status",), (), f"Medplum misses status 'done': {NO_BINDINGS}"
    ),
    "base-required-binding-gender": Known(
        ("Patient.gender",), (), f"Medplum misses gender 'femme': {NO_BINDINGS}"
    ),
    "base-required-binding-severity": Known(
        ("AdverseEvent.severity", "AdverseEvent.severity.coding.code"),
        (),
        f"Medplum misses severity 'grave': {NO_BINDINGS}",
    ),
    "external-loinc-format": Known(
        ("Observation.code.coding.code",),
        (),
        "Medplum misses 97909-5 (LOINC check digit is 6): it never checks a code's format",
    ),
    "external-snomed-format": Known(
        ("Condition.code.coding.code",),
        (),
        "Medplum misses 279039008 (fails the SNOMED CT Verhoeff check): it never checks a code's "
        "format",
    ),
    "profile-choice-type-alone": Known(
        ("MedicationStatement#admsc-analgesic-name", "MedicationStatement.medication"),
        ("MedicationStatement#admsc-analgesic-name",),
        "Medplum misses medicationReference where the profile allows only CodeableConcept: it "
        "never checks a choice element's type restriction (both see the missing text)",
    ),
    "base-reference-target": Known(
        ("Observation.encounter",),
        (),
        "Medplum lenient: a reference to the wrong resource type (Patient for Encounter) is only a "
        "warning in Medplum 5 (validation.ts: 'should be an error, but it's currently a warning')",
    ),
    "profile-unknown-extension": Known(
        ("Procedure.extension",),
        (),
        "Medplum lenient: an extension url that no slice names passes (open slicing) and is never "
        "looked up; ours fails closed on an url in our own namespace that no definition has",
    ),
    "core-extension-context": Known(
        ("Patient.extension",),
        (),
        "Medplum misses it: it never checks an extension's context (workflow-researchStudy is not "
        "allowed on a Patient in R4)",
    ),
    "profile-extension-context": Known(
        ("Procedure.extension",),
        (),
        "Medplum misses it: it never checks an extension's context (ae-expected is for "
        "AdverseEvent, used on a Procedure)",
    ),
    "base-invariant-datatype": Known(
        ("Observation.value", "Observation.value#qty-3"),
        ("Observation.value",),
        "Medplum misses qty-3: it evaluates the constraints of the resource root and of each "
        "element, never those of a datatype (qty-3 belongs to Quantity, not to "
        "Observation.value[x]); both report the missing system at Observation.value (the pattern)",
    ),
    "bundle-duplicate-fullurl": Known(
        ("Bundle#bdl-7", "Bundle.entry.fullUrl"),
        ("Bundle#bdl-7",),
        "Neither wrong: both report bdl-7 on the Bundle; ours adds its own rule unique-fullurl "
        "at the second entry's fullUrl",
    ),
    "study-repeat-too-early": Known(
        ("Procedure#admsc-injection-5-months",),
        (),
        f"Medplum cannot check it: {NO_RESOLVE}",
    ),
    "study-ae-before-suspect": Known(
        ("AdverseEvent#admsc-ae-after-procedure", "Procedure#admsc-injection-5-months"),
        (),
        f"Medplum cannot check it: {NO_RESOLVE}",
    ),
    "study-ae-before-first-procedure": Known(
        ("AdverseEvent.date#ae-after-first-procedure",),
        (),
        "Medplum cannot check it: a study rule of ours across resources, not in any profile",
    ),
}


@pytest.fixture(scope="module")
def snapshot_folder(node_modules: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Our StructureDefinitions with snapshots, as validate.mjs loads them."""
    folder = tmp_path_factory.mktemp("definitions")
    write_snapshots(folder, node_modules)
    return folder


@pytest.fixture(scope="module")
def medplum(snapshot_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list]:
    """Medplum's output over the whole corpus, from one run: each case's JSON lines, by case id."""
    corpus = tmp_path_factory.mktemp("corpus")
    write_corpus(corpus)
    command = ["node", *_node_flags(), str(SCRIPT), str(snapshot_folder), str(corpus)]
    run = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    assert run.returncode == 0, run.stderr
    lines: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in run.stdout.splitlines():
        result = json.loads(line)
        lines[result["file"].removesuffix(".json")].append(result)
    return dict(lines)


def _node_flags() -> list[str]:
    """Medplum 5 uses the global WebSocket at import time; Node before 22 has it behind a flag."""
    version = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    major = int(version.stdout.strip().lstrip("v").split(".")[0])
    return ["--experimental-websocket"] if major < 22 else []


def medplum_sites(
    document: dict[str, Any], lines: list[dict[str, Any]]
) -> tuple[frozenset[Site], set[str]]:
    """Where Medplum reports errors on a document, from its output lines (leaving out
    MEDPLUM_FALSE_ERRORS), and which of MEDPLUM_FALSE_ERRORS it reported there."""
    entries = [reference_of(e["resource"]) for e in document.get("entry", [])]
    sites, false = set(), set()
    for line in lines:
        for issue in line["issues"]:
            if issue["severity"] not in ("error", "fatal"):
                continue
            resource = line["resource"]
            expression = (issue["expression"] or [resource.split("/")[0]])[0]
            inside = re.fullmatch(r"Bundle\.entry\[(\d+)\]\.resource(.*)", expression)
            if inside and line["resource"].startswith("Bundle/"):
                resource = entries[int(inside[1])]
                expression = resource.split("/")[0] + inside[2]
            invariant = re.match(r"Constraint (\S+) not met", issue["details"])
            site = Site(
                resource,
                element(expression, invariant[1] if issue["code"] == "invariant" else None),
            )
            said = f"{site.element}: {issue['details']}"
            matched = [pattern for pattern in MEDPLUM_FALSE_ERRORS if re.search(pattern, said)]
            if matched:
                false.update(matched)
            else:
                sites.add(site)
    return frozenset(sites), false


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_medplum_agrees_or_the_difference_is_known(case: Case, medplum: dict[str, list]) -> None:
    document = case.document()
    ours = our_sites(document, keys=True)
    theirs, _ = medplum_sites(document, medplum[case.id])
    known = KNOWN_DIFFERENCES.get(case.id)
    if known is None:
        assert theirs == ours
    else:
        assert theirs != ours, "both engines now agree: remove the row from KNOWN_DIFFERENCES"
        assert (sorted({s.element for s in ours}), sorted({s.element for s in theirs})) == (
            sorted(known.ours),
            sorted(known.medplum),
        )


def test_medplum_false_errors_still_occur_on_clean_cases(medplum: dict[str, list]) -> None:
    seen: set[str] = set()
    for case in CASES:
        if case.kind == "clean":
            seen |= medplum_sites(case.document(), medplum[case.id])[1]
    assert seen == set(MEDPLUM_FALSE_ERRORS)


def test_our_required_bindings_reach_medplum(medplum: dict[str, list]) -> None:
    """Medplum collects a code for each of our value sets on the clean cases: the snapshots carry
    our bindings, even though Medplum does not check them."""
    ours = {
        e["binding"]["valueSet"]
        for r in load_resources()
        if r["resourceType"] == "StructureDefinition"
        for e in r["differential"]["element"]
        if e.get("binding", {}).get("strength") == "required"
    }
    collected = {
        value_set
        for case in CASES
        if case.kind == "clean"
        for line in medplum[case.id]
        for value_set in line["bindings"]
    }
    assert ours and ours <= collected


def test_snapshots_carry_every_differential_element(snapshot_folder: Path) -> None:
    for path in snapshot_folder.glob("*.json"):
        sd = json.loads(path.read_text())
        if "differential" not in sd or not sd["url"].startswith(term.CANONICAL_BASE):
            continue
        snapshot = {e["id"]: e for e in sd["snapshot"]["element"]}
        for diff in sd["differential"]["element"]:
            found = snapshot[diff["id"]]
            assert {k: found[k] for k in diff if k != "constraint"} == {
                k: v for k, v in diff.items() if k != "constraint"
            }
            assert {c["key"] for c in diff.get("constraint", [])} <= {
                c["key"] for c in found.get("constraint", [])
            }
            if diff.get("sliceName") and diff["type"][0]["code"] == "Extension":
                url = snapshot[diff["id"] + ".url"]
                assert url["fixedUri"] == diff["type"][0]["profile"][0]
