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

# Cases where the verdicts differ, and why.
VERDICT_DIFFERS: dict[str, str] = {
    "ab-list-slicing": "narrative (XHTML) hyperlinks are not checked",
    "parameters-reference-bad": (
        "the case sets a validator option (references must resolve) that we do not have"
    ),
    "contained-resource-bad-id-ignore": (
        "the case sets a validator option (contained resources not checked) that we do not have"
    ),
    "extension-version-restriction-range-r4": (
        "the extension's definition is given only as XML, which we do not read"
    ),
    "extension-version-restriction-range-ctxt-r4": (
        "the extension's definition is given only as XML, which we do not read"
    ),
}
# Cases where both find errors, but not on the same elements, and why.
JAVA_AT_FIRST_ENTRY = (
    "the Java validator reports every entry's relative fullUrl at Bundle.entry[0]; we report "
    "each at its own entry"
)
ELEMENTS_DIFFER: dict[str, str] = {
    "bundle-duplicate-id": JAVA_AT_FIRST_ENTRY,
    "mni-patientOverview-bundle-example1": JAVA_AT_FIRST_ENTRY,
    "mni-patientOverview-bundle-example1b": (
        JAVA_AT_FIRST_ENTRY + "; and duplicate element ids within a resource are not reported"
    ),
    "bundle-duplicate-ids-not": JAVA_AT_FIRST_ENTRY,
    "bundle-document-versioned-references-bad": (
        "the Java validator places the second Composition's findings under Bundle.entry[1], an "
        "Observation without sections; we place them at the Composition's section entries"
    ),
    "bundle-with-contained": (
        "narrative hyperlinks are not checked; the Java validator places the MessageHeader's "
        "focus under Bundle.entry[1], an Organization"
    ),
    "uuid-extension": "one of the extensions is defined only in XML, which we do not read",
}
# Floors of agreement (offline cases): raised as differences are fixed.
VERDICT_FLOOR, ELEMENTS_FLOOR = 0.95, 0.90


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
