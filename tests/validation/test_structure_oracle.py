"""fhir.resources as the oracle of structure: our R4 walk (the hot path of validation) and the
fhir.resources models agree on which resources are structurally broken, over the corpus, the demo
export and structural mutations of one resource of every profile."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from fhir_admsc import r4
from fhir_admsc.fhir import parse
from fhir_admsc.validation.run import validate_resources
from tests.validation.corpus import CASES, demo_resources

STRUCTURAL = {"structure", "required"}


def ours_broken(resource: dict[str, Any]) -> bool:
    """Whether our walk finds a structural R4 error; a reference's target type is left out (the
    models never resolve a reference, so they cannot see it)."""
    issues = validate_resources([resource])
    return any(
        i.severity == "error"
        and i.code in STRUCTURAL
        and i.rule == "fhir:R4"
        and not i.message.startswith("refers to")
        for i in issues
    )


def models_broken(resource: dict[str, Any]) -> bool:
    try:
        parse(resource)
    except (ValidationError, ValueError, TypeError):
        return True
    return False


def one_per_profile() -> list[dict[str, Any]]:
    chosen: dict[str, dict[str, Any]] = {}
    for resource in demo_resources():
        chosen.setdefault(resource["meta"]["profile"][0], resource)
    return list(chosen.values())


def mutations(resource: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Copies of ``resource`` with one top-level member removed, retyped or added."""
    for key in [k for k in resource if k not in ("resourceType", "id")]:
        without = {k: v for k, v in resource.items() if k != key}
        yield f"without {key}", without
        for label, value in [("number", 123), ("text", "x"), ("object", {"x": 1})]:
            yield f"{key} as {label}", {**resource, key: value}
        if isinstance(resource[key], list):
            yield f"{key} not a list", {**resource, key: resource[key][0]}
    yield "unknown element", {**resource, "colour": "blue"}


def known_difference(resource_type: str, label: str) -> bool:
    """Where the models are laxer than R4 JSON: pydantic reads a JSON number as a Unix time for
    date, dateTime and instant elements; R4 JSON requires a string (we report it)."""
    key = label.removesuffix(" as number")
    return key != label and element_type(resource_type, key) in TIME_TYPES


def element_type(resource_type: str, key: str) -> str | None:
    """The R4 type of the top-level JSON member ``key`` (choice members included)."""
    for element in r4.base_elements(resource_type):
        name = element.path.removeprefix(f"{resource_type}.")
        for t in element.types:
            if name == key or (
                name.endswith("[x]") and key == name[:-3] + t.code[0].upper() + t.code[1:]
            ):
                return t.code
    return None


TIME_TYPES = {"date", "dateTime", "instant"}


@pytest.mark.parametrize(
    "resource",
    one_per_profile(),
    ids=[r["meta"]["profile"][0].rsplit("/", 1)[1] for r in one_per_profile()],
)
def test_walk_and_models_agree_on_mutations(resource: dict[str, Any]) -> None:
    assert not ours_broken(resource) and not models_broken(resource)
    verdicts = [
        (label, ours_broken(mutated), models_broken(mutated))
        for label, mutated in mutations(copy.deepcopy(resource))
    ]
    disagreements = [
        (label, ours, theirs)
        for label, ours, theirs in verdicts
        if ours != theirs and not known_difference(resource["resourceType"], label)
    ]
    assert disagreements == [], disagreements
    assert sum(ours and theirs for _, ours, theirs in verdicts) >= 3  # the mutations do break


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_walk_and_models_agree_on_the_corpus(case) -> None:
    document = case.document()
    resources = (
        [e["resource"] for e in document.get("entry", []) if "resource" in e]
        if document.get("resourceType") == "Bundle"
        else [document]
    )
    for resource in resources:
        assert ours_broken(resource) == models_broken(resource), resource.get("id")
