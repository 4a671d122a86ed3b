"""`validate` against the HL7 Java validator on the R4 cases of the validator's own test suite
(tests/data/fhir-test-cases, copied from FHIR/fhir-test-cases with its license; see SOURCE.md
there): every case whose recorded outcome does not rest on a terminology server agrees on the
verdict and on the elements the errors name, or its difference is listed below with the reason.
A listed difference that goes away fails too, so that the list only shrinks.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.validation.hl7_cases import COPY, ours, recorded, same_elements, selected

NEEDS_CORE = (
    "needs the R4 core package's {what}, which the HL7 validator loads and this project does not "
    "ship"
)
# Cases where the verdicts differ, and why.
VERDICT_DIFFERS: dict[str, str] = {
    "fixed-quantity-binding-observation": NEEDS_CORE.format(what="age-units ValueSet"),
    "obs-temp-bad": NEEDS_CORE.format(
        what="vital signs profiles (applied to every Observation with a vital-sign LOINC code)"
    ),
    "PulseOxBundle_25Oct2022": NEEDS_CORE.format(what="vital signs profiles"),
    "maiden-name-extension": NEEDS_CORE.format(what="extension definitions (their contexts)"),
    "ips-htmlrefs-backwards": NEEDS_CORE.format(what="extension definitions (narrativeLink's type)")
    + "; and narrative hyperlinks are not checked",
    "ab-list-slicing": "narrative (XHTML) hyperlinks are not checked",
    "bundle-document-versioned-references-bad": (
        "a reference matching several versions of an entry is not reported"
    ),
    "dr-example-org": "the case sets a validator option (no example URLs) that we do not have",
    "parameters-reference-bad": (
        "the case sets a validator option (references must resolve) that we do not have"
    ),
    "contained-resource-bad-id-ignore": (
        "the case sets a validator option (contained resources not checked) that we do not have"
    ),
    "StructureDefinition-Slice23": (
        "a StructureDefinition's own slicing is not checked for consistency"
    ),
    "extension-version-restriction-range-r4": (
        "the extension's definition is given only as XML, which we do not read"
    ),
    "extension-version-restriction-range-ctxt-r4": (
        "the extension's definition is given only as XML, which we do not read"
    ),
}
# Cases where both find errors, but not on the same elements, and why.
ELEMENTS_DIFFER: dict[str, str] = {
    "bundle-duplicate-id": (
        "the Java validator reports every entry's relative fullUrl at Bundle.entry[0]; we report "
        "each at its own entry"
    ),
    "mni-patientOverview-bundle-example1": "as bundle-duplicate-id",
    "mni-patientOverview-bundle-example1b": (
        "as bundle-duplicate-id; and duplicate element ids within a resource are not reported"
    ),
    "bundle-duplicate-ids-not": "as bundle-duplicate-id",
    "bundle-with-contained": (
        "narrative hyperlinks and RESTful fullUrls that do not end with Type/id are not checked"
    ),
    "uuid-extension": "one of the extensions is defined only in XML, which we do not read",
    "bundle-ea-testcase": (
        "the case forbids experimental content (an option we do not have); relative canonical "
        "URLs are not reported"
    ),
    "versioned-extension": (
        "a versioned extension URL ('|4.0.0') is not reported; the core extension definition it "
        "names is not shipped"
    ),
    "ai8": "a StructureDefinition's own elements are not checked for consistency",
    "obs-quantity-us": NEEDS_CORE.format(what="bp profile"),
}
# Floors of agreement (offline cases): raised as differences are fixed.
VERDICT_FLOOR, ELEMENTS_FLOOR = 0.89, 0.80


def _manifest() -> dict[str, Any]:
    return json.loads((COPY / "manifest.json").read_text(encoding="utf-8"))


CASES = selected(_manifest())
# the cases whose verdict holds offline; the others are run only for crashes
OFFLINE = [c for c in CASES if not recorded(COPY, c).server_only]
SERVER = [c for c in CASES if c not in OFFLINE]
JUDGED_ELEMENTS = [c for c in OFFLINE if c["name"] not in VERDICT_DIFFERS]


@pytest.fixture(scope="module")
def results() -> dict[str, tuple[Any, Any]]:
    """Every case's recorded and our outcome, computed once."""
    return {case["name"]: (recorded(COPY, case), ours(COPY, case)) for case in CASES}


def test_the_copy_is_whole_and_licensed() -> None:
    assert len(CASES) >= 120
    assert "Apache License" in (COPY / "LICENSE.txt").read_text()
    assert "commit " in (COPY / "SOURCE.md").read_text()


@pytest.mark.parametrize("case", OFFLINE, ids=[c["name"] for c in OFFLINE])
def test_verdict_agrees_or_the_difference_is_listed(case: dict[str, Any], results) -> None:
    theirs, said = results[case["name"]]
    if case["name"] in VERDICT_DIFFERS:
        assert said.errors != theirs.errors, "both now agree: remove the VERDICT_DIFFERS row"
        return
    assert said.errors == theirs.errors, said.messages or "we find no error"


@pytest.mark.parametrize("case", JUDGED_ELEMENTS, ids=[c["name"] for c in JUDGED_ELEMENTS])
def test_errors_name_the_same_elements_or_the_difference_is_listed(
    case: dict[str, Any], results
) -> None:
    theirs, said = results[case["name"]]
    same = same_elements(said.elements, theirs.elements)
    if case["name"] in ELEMENTS_DIFFER:
        assert not same, "both now name the same elements: remove the ELEMENTS_DIFFER row"
        return
    assert same, (sorted(said.elements), sorted(theirs.elements))


def test_cases_resting_on_a_terminology_server_run_without_a_fatal_issue(results) -> None:
    assert len(SERVER) >= 3
    for case in SERVER:
        _, said = results[case["name"]]
        assert not any(m.startswith("fatal") for m in said.messages), case["name"]


def test_agreement_figures(results) -> None:
    offline = [(t, o) for t, o in results.values() if not t.server_only]
    verdicts = sum(t.errors == o.errors for t, o in offline) / len(offline)
    elements = sum(
        t.errors == o.errors and same_elements(o.elements, t.elements) for t, o in offline
    ) / len(offline)
    print(
        f"HL7 suite: {len(offline)} offline cases, verdict {verdicts:.0%}, elements {elements:.0%}"
    )
    assert verdicts >= VERDICT_FLOOR and elements >= ELEMENTS_FLOOR
