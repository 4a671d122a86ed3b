"""The Python versions of frequent invariants answer exactly as FHIRPath does: on every invariant
evaluation of the corpus and the demo export, and on variants of each input."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from fhir_admsc.bundle import bundle
from fhir_admsc.mappings import study_to_fhir
from fhir_admsc.synth import synthesize
from fhir_admsc.validation import engine
from fhir_admsc.validation.fhirpath import FhirPathError, evaluate
from fhir_admsc.validation.native import native
from fhir_admsc.validation.run import validate_resources
from tests.validation.corpus import CASES, demo_resources

Evaluation = tuple[str, Any, dict[str, Any], str | None]
SAMPLE = 12  # distinct inputs per expression, each with all its variants


@pytest.fixture(scope="module")
def evaluations() -> list[Evaluation]:
    """Every (expression, node, resource, type) the validator evaluates on the corpus, the demo
    and a synthetic study."""
    seen: list[Evaluation] = []
    original = engine.holds

    def recording(expression, node, resource, root_type=None, evaluation=None):
        seen.append((expression, copy.deepcopy(node), resource, root_type))
        return original(expression, node, resource, root_type, evaluation)

    engine.holds = recording
    try:
        for case in CASES:
            validate_resources([case.document()])
        validate_resources([bundle(list(demo_resources()), "transaction", "ADMSC-FSO794")])
        synthetic = synthesize(40, seed=3)
        validate_resources([bundle(list(study_to_fhir(synthetic)), "transaction", "S")])
    finally:
        engine.holds = original
    return seen


def variants(node: Any) -> Iterator[Any]:
    """The node, and copies with one member removed, emptied, retyped or given an edge value."""
    yield node
    if not isinstance(node, dict):
        return
    edge_values = [None, [], {}, "", "#c1", "urn:x/_history/2", 0, -3, 1e9, 2, True, "2020-01"]
    for key in [k for k in node if k != "resourceType"]:  # a resource keeps its type
        yield {k: v for k, v in node.items() if k != key}
        for value in edge_values:
            yield {**node, key: value}
        if isinstance(node[key], dict):
            for inner in node[key]:
                yield {**node, key: {k: v for k, v in node[key].items() if k != inner}}
                for value in edge_values:
                    yield {**node, key: {**node[key], inner: value}}
    yield {**node, "contained": [{"resourceType": "Basic", "id": "c1"}]}
    yield {**node, "start": "2020-01-02", "end": "2020-01-01"}
    yield {**node, "start": "2020-01-02T10:00:00Z", "end": "2020-01-02"}


def test_frequent_invariants_have_a_native_version(evaluations: list[Evaluation]) -> None:
    covered = sum(native(expression) is not None for expression, *_ in evaluations)
    assert covered / len(evaluations) > 0.9


def test_native_answers_equal_fhirpath_answers(evaluations: list[Evaluation]) -> None:
    checked, disagreements = 0, []
    unique: dict[tuple[str, str], Evaluation] = {}
    per_expression: Counter[str] = Counter()
    for expression, node, resource, root_type in evaluations:
        key = (expression, repr(node))
        if native(expression) is None or key in unique or per_expression[expression] >= SAMPLE:
            continue
        unique[key] = (expression, node, resource, root_type)
        per_expression[expression] += 1
    for expression, node, resource, root_type in unique.values():
        function = native(expression)
        for variant in variants(node):
            answer = function(variant, resource)
            if answer is None:
                continue
            try:
                expected = evaluate(expression, variant, resource, root_type)
            except FhirPathError:
                continue  # FHIRPath cannot run on this malformed input; structure reports it
            checked += 1
            if answer != expected:
                disagreements.append((expression, variant, answer, expected))
    assert checked > 1000
    shown = {}
    for d in disagreements:
        shown.setdefault(d[0], d)
    assert disagreements == [], list(shown.values())


OBS_7 = (
    "value.empty() or component.code.where(coding.intersect(%resource.code.coding).exists())"
    ".empty()"
)


@pytest.mark.parametrize(
    "component_coding",
    [
        {"system": "http://loinc.org", "code": "85354-9"},  # the Observation's own coding
        {"system": "http://loinc.org", "code": "8480-6"},
        {"system": "http://loinc.org", "code": "85354-9", "display": "BP"},  # not the same Coding
        {"code": "85354-9"},
    ],
)
def test_obs_7_answers_as_fhirpath_with_a_value_and_components(component_coding) -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "valueString": "x",
        "component": [
            {"code": {"coding": [{"system": "http://snomed.info/sct", "code": "1"}]}},
            {"code": {"coding": [component_coding]}},
        ],
    }
    answer = native(OBS_7)(observation, observation)
    assert answer is not None
    assert answer == evaluate(OBS_7, observation, observation, "Observation")
