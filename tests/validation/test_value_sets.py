"""ValueSet composition offline, as R4's ValueSet.compose defines it: whole systems, explicit
concepts, filters over loaded complete CodeSystems, imports, excludes, and a shipped expansion
when the compose cannot be computed."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_admsc.validation.catalog import Catalog

CS = "https://terms.example.net/CodeSystem/pain"
VS = "https://terms.example.net/ValueSet/"

SYSTEM = {
    "resourceType": "CodeSystem",
    "url": CS,
    "status": "active",
    "content": "complete",
    "hierarchyMeaning": "is-a",
    "concept": [
        {
            "code": "pain",
            "property": [{"code": "kind", "valueCode": "symptom"}],
            "concept": [
                {
                    "code": "back",
                    "property": [{"code": "kind", "valueCode": "site"}],
                    "concept": [{"code": "lumbar"}, {"code": "thoracic"}],
                },
                {"code": "leg"},
            ],
        },
        {"code": "numbness", "property": [{"code": "parent", "valueCode": "leg"}]},
        {"code": "other"},
    ],
}


def _value_set(name: str, compose: dict[str, Any] | None, **more: Any) -> dict[str, Any]:
    vs = {"resourceType": "ValueSet", "url": VS + name, "status": "active", **more}
    if compose is not None:
        vs["compose"] = compose
    return vs


def _include(*filters: dict[str, str], **more: Any) -> dict[str, Any]:
    return {"include": [{"system": CS, "filter": list(filters), **more}]}


def _filter(prop: str, op: str, value: str) -> dict[str, str]:
    return {"property": prop, "op": op, "value": value}


CASES = {
    "is-a": (_include(_filter("concept", "is-a", "back")), {"back", "lumbar", "thoracic"}),
    "descendent-of": (
        _include(_filter("concept", "descendent-of", "back")),
        {"lumbar", "thoracic"},
    ),
    "is-not-a": (_include(_filter("concept", "is-not-a", "pain")), {"other"}),
    "parent-property": (_include(_filter("concept", "is-a", "leg")), {"leg", "numbness"}),
    "generalizes": (
        _include(_filter("concept", "generalizes", "lumbar")),
        {"lumbar", "back", "pain"},
    ),
    "equals-property": (_include(_filter("kind", "=", "site")), {"back"}),
    "in": (_include(_filter("concept", "in", "leg, other")), {"leg", "other"}),
    "regex": (_include(_filter("code", "regex", "l.*")), {"lumbar", "leg"}),
    "exists": (_include(_filter("kind", "exists", "true")), {"pain", "back"}),
    "two-filters": (
        _include(_filter("concept", "is-a", "pain"), _filter("code", "regex", ".*a.*")),
        {"pain", "back", "lumbar", "thoracic"},
    ),
    "exclude": (
        {
            "include": [{"system": CS}],
            "exclude": [{"system": CS, "filter": [_filter("concept", "is-a", "back")]}],
        },
        {"pain", "leg", "numbness", "other"},
    ),
    "explicit": ({"include": [{"system": CS, "concept": [{"code": "leg"}]}]}, {"leg"}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_compose(name: str) -> None:
    compose, expected = CASES[name]
    catalog = Catalog([SYSTEM, _value_set(name, compose)])
    assert catalog.expansion(VS + name) == frozenset((CS, c) for c in expected)


def test_import_of_another_value_set() -> None:
    back = _value_set("back", _include(_filter("concept", "is-a", "back")))
    lumbar_only = _value_set(
        "lumbar",
        {
            "include": [
                {
                    "valueSet": [VS + "back"],
                    "system": CS,
                    "concept": [{"code": "lumbar"}, {"code": "leg"}],
                }
            ]
        },
    )
    catalog = Catalog([SYSTEM, back, lumbar_only])
    assert catalog.expansion(VS + "lumbar") == frozenset({(CS, "lumbar")})


def test_a_filter_on_an_unknown_or_fragment_system_cannot_be_expanded() -> None:
    fragment = {**SYSTEM, "url": CS + "-fragment", "content": "fragment"}
    vs = _value_set(
        "x",
        {"include": [{"system": CS + "-fragment", "filter": [_filter("concept", "is-a", "back")]}]},
    )
    assert Catalog([fragment, vs]).expansion(VS + "x") is None
    unknown_op = _value_set("y", _include(_filter("concept", "child-of", "back")))
    assert Catalog([SYSTEM, unknown_op]).expansion(VS + "y") is None


def test_a_shipped_expansion_is_used_when_the_compose_cannot_be() -> None:
    vs = _value_set(
        "snomed",
        {
            "include": [
                {
                    "system": "http://snomed.info/sct",
                    "filter": [_filter("concept", "is-a", "22253000")],
                }
            ]
        },
        expansion={
            "timestamp": "2024-01-01",
            "contains": [
                {"system": "http://snomed.info/sct", "code": "279039007"},
                {"system": "http://snomed.info/sct", "code": "22253000", "abstract": True},
            ],
        },
    )
    assert Catalog([vs]).expansion(VS + "snomed") == frozenset(
        {("http://snomed.info/sct", "279039007")}
    )
