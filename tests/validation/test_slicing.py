"""Slicing as R4 defines it (profiling.html#slicing), on a profile written for these tests: each
discriminator type, the path forms, closed, ordered and open-at-end slicings, per-slice
cardinality, and a slicing that cannot be told apart failing closed."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fhir_admsc.resources import Document
from fhir_admsc.validation.catalog import project_catalog
from fhir_admsc.validation.run import validate_documents

BASE = "https://profiles.example.net/StructureDefinition/"
# Not LOINC: its blood pressure codes make R4 require its own bp profile (test_r4_core.py).
CODES = "http://example.net/observation-codes"


def _profile(name: str, elements: list[dict[str, Any]], kind: str = "Observation") -> dict:
    return {
        "resourceType": "StructureDefinition",
        "url": BASE + name,
        "name": name,
        "status": "active",
        "kind": "resource",
        "abstract": False,
        "type": kind,
        "baseDefinition": f"http://hl7.org/fhir/StructureDefinition/{kind}",
        "derivation": "constraint",
        "differential": {"element": elements},
    }


def _code(code: str) -> dict[str, Any]:
    return {"coding": [{"system": CODES, "code": code}]}


BP = _profile(
    "bp",
    [
        {"id": "Observation", "path": "Observation"},
        {
            "id": "Observation.component",
            "path": "Observation.component",
            "slicing": {"discriminator": [{"type": "pattern", "path": "code"}], "rules": "closed"},
            "min": 2,
        },
        {
            "id": "Observation.component:systolic",
            "path": "Observation.component",
            "sliceName": "systolic",
            "min": 1,
            "max": "1",
        },
        {
            "id": "Observation.component:systolic.code",
            "path": "Observation.component.code",
            "patternCodeableConcept": _code("8480-6"),
        },
        {
            "id": "Observation.component:systolic.value[x]",
            "path": "Observation.component.value[x]",
            "type": [{"code": "Quantity"}],
        },
        {
            "id": "Observation.component:diastolic",
            "path": "Observation.component",
            "sliceName": "diastolic",
            "min": 1,
            "max": "1",
        },
        {
            "id": "Observation.component:diastolic.code",
            "path": "Observation.component.code",
            "patternCodeableConcept": _code("8462-4"),
        },
        {
            "id": "Observation.identifier",
            "path": "Observation.identifier",
            "slicing": {
                "discriminator": [{"type": "value", "path": "system"}],
                "rules": "openAtEnd",
                "ordered": True,
            },
        },
        {
            "id": "Observation.identifier:official",
            "path": "Observation.identifier",
            "sliceName": "official",
        },
        {
            "id": "Observation.identifier:official.system",
            "path": "Observation.identifier.system",
            "fixedUri": "urn:official",
        },
        {
            "id": "Observation.identifier:local",
            "path": "Observation.identifier",
            "sliceName": "local",
        },
        {
            "id": "Observation.identifier:local.system",
            "path": "Observation.identifier.system",
            "fixedUri": "urn:local",
        },
        {
            "id": "Observation.note",
            "path": "Observation.note",
            "slicing": {"discriminator": [{"type": "exists", "path": "author"}], "rules": "open"},
        },
        {
            "id": "Observation.note:signed",
            "path": "Observation.note",
            "sliceName": "signed",
            "max": "1",
        },
        {"id": "Observation.note:signed.author[x]", "path": "Observation.note.author[x]", "min": 1},
        {"id": "Observation.note:unsigned", "path": "Observation.note", "sliceName": "unsigned"},
        {
            "id": "Observation.note:unsigned.author[x]",
            "path": "Observation.note.author[x]",
            "max": "0",
        },
        {
            "id": "Observation.category",
            "path": "Observation.category",
            "slicing": {
                "discriminator": [{"type": "value", "path": "coding.code"}],
                "rules": "open",
            },
        },
        {
            "id": "Observation.category:vs",
            "path": "Observation.category",
            "sliceName": "vs",
            "min": 1,
            "max": "1",
        },
        {
            "id": "Observation.category:vs.coding.code",
            "path": "Observation.category.coding.code",
            "fixedCode": "vital-signs",
        },
        {
            "id": "Observation.hasMember",
            "path": "Observation.hasMember",
            "slicing": {
                "discriminator": [{"type": "type", "path": "$this.resolve()"}],
                "rules": "closed",
            },
        },
        {
            "id": "Observation.hasMember:obs",
            "path": "Observation.hasMember",
            "sliceName": "obs",
            "type": [
                {
                    "code": "Reference",
                    "targetProfile": ["http://hl7.org/fhir/StructureDefinition/Observation"],
                }
            ],
        },
    ],
)
# a profile on bp that adds nothing to the slicing but a slice's value: told apart by bp's slicing
DERIVED = _profile(
    "bp-derived",
    [
        {
            "id": "Observation.component:systolic.value[x]",
            "path": "Observation.component.value[x]",
            "min": 1,
        }
    ],
)
DERIVED["baseDefinition"] = BP["url"]
# slices by profile: a member must conform to a profile of its own
MEMBER = _profile("member", [{"id": "Observation.note", "path": "Observation.note", "min": 1}])
PANEL = _profile(
    "panel",
    [
        {
            "id": "Observation.contained",
            "path": "Observation.contained",
            "slicing": {"discriminator": [{"type": "profile", "path": "$this"}], "rules": "open"},
        },
        {
            "id": "Observation.contained:noted",
            "path": "Observation.contained",
            "sliceName": "noted",
            "min": 1,
            "type": [{"code": "Observation", "profile": [MEMBER["url"]]}],
        },
    ],
)
UNTELLABLE = _profile(
    "untellable",
    [
        {
            "id": "Observation.component",
            "path": "Observation.component",
            "slicing": {"discriminator": [{"type": "value", "path": "code"}], "rules": "open"},
        },
        {
            "id": "Observation.component:any",
            "path": "Observation.component",
            "sliceName": "any",
            "min": 1,
        },
    ],
)


def _observation(profile: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "bp1",
        "meta": {"profile": [BASE + profile]},
        "status": "final",
        "category": [
            {"coding": [{"system": "http://example.net/other", "code": "x"}]},
            {"coding": [{"code": "vital-signs"}]},
        ],
        "code": _code("85354-9"),
        "identifier": [
            {"system": "urn:official", "value": "1"},
            {"system": "urn:local", "value": "2"},
            {"system": "urn:other", "value": "3"},
        ],
        "note": [{"authorString": "Dr A", "text": "a"}, {"text": "b"}, {"text": "c"}],
        "component": [
            {"code": _code("8480-6"), "valueQuantity": {"value": 120}},
            {"code": _code("8462-4"), "valueQuantity": {"value": 80}},
        ],
    }


def _errors(resource: dict[str, Any]) -> list[str]:
    catalog = project_catalog().extended([BP, DERIVED, MEMBER, PANEL, UNTELLABLE])
    issues, _ = validate_documents([Document("t.json", 1, resource)], catalog)
    return [f"{i.location}: {i.message}" for i in issues if i.severity == "error"]


def test_a_conforming_instance_passes() -> None:
    assert _errors(_observation("bp")) == []


def _broken(change) -> list[str]:
    resource = _observation("bp")
    change(resource)
    return _errors(resource)


def test_pattern_slice_missing_is_an_error_at_its_element() -> None:
    errors = _broken(lambda r: r["component"].pop(1))
    assert any("Observation.component: slice 'diastolic' is required" in e for e in errors), errors


def test_closed_slicing_refuses_an_item_of_no_slice() -> None:
    def extra(r):
        r["component"].append({"code": _code("8867-4"), "valueQuantity": {"value": 60}})

    errors = _broken(extra)
    assert errors == [
        "Observation.component[2]: matches none of the slices of Observation.component "
        "(systolic, diastolic), and the slicing is closed"
    ]


def test_a_slice_constrains_only_its_own_items() -> None:
    # the diastolic item may hold a string; the systolic one must hold a Quantity
    def retype(r):
        r["component"][1]["valueString"] = r["component"][1].pop("valueQuantity") and "80"

    assert _broken(retype) == []

    def retype_systolic(r):
        r["component"][0]["valueString"] = "120"
        del r["component"][0]["valueQuantity"]

    errors = _broken(retype_systolic)
    assert any(e.startswith("Observation.component[0].value.ofType(string)") for e in errors)


def test_exists_discriminator_and_max_per_slice() -> None:
    errors = _broken(lambda r: r["note"][1].update(authorString="Dr B"))
    assert errors == [
        "Observation.note: slice 'signed' allows at most 1 (found 2) in profile bp"
    ], errors


def test_ordered_slices_must_come_in_order() -> None:
    errors = _broken(lambda r: r["identifier"].insert(0, r["identifier"].pop(1)))
    assert any("slice 'official' comes after 'local'" in e for e in errors), errors


def test_open_at_end_refuses_a_sliced_item_after_an_unsliced_one() -> None:
    errors = _broken(lambda r: r["identifier"].insert(0, r["identifier"].pop()))
    assert errors == [
        "Observation.identifier[1]: is in slice 'official' after an item of no slice, but the "
        "slicing of Observation.identifier is open only at the end",
        "Observation.identifier[2]: is in slice 'local' after an item of no slice, but the "
        "slicing of Observation.identifier is open only at the end",
    ], errors


def test_value_discriminator_on_a_child_path() -> None:
    errors = _broken(lambda r: r["category"].pop(1))
    assert any("slice 'vs' is required" in e for e in errors), errors


def test_type_discriminator_through_resolve() -> None:
    member = {"resourceType": "Observation", "id": "m1", "status": "final", "code": _code("8480-6")}
    patient = {"resourceType": "Patient", "id": "p1"}
    observation = _observation("bp")
    observation["contained"] = [member]
    observation["hasMember"] = [{"reference": "#m1"}]
    assert _errors(observation) == []
    observation["contained"].append(patient)
    observation["hasMember"].append({"reference": "#p1"})
    errors = _errors(observation)
    assert any(
        e.startswith("Observation.hasMember[1]: matches none of the slices") for e in errors
    ), errors


def test_a_derived_profile_uses_its_base_slicing() -> None:
    assert _errors(_observation("bp-derived")) == []
    resource = _observation("bp-derived")
    del resource["component"][0]["valueQuantity"]
    errors = _errors(resource)
    # only the systolic item (told apart by bp's pattern) must have a value
    assert any(e.startswith("Observation.component[0]") and "value" in e for e in errors), errors
    assert not any(e.startswith("Observation.component[1]") for e in errors), errors


def test_profile_discriminator_validates_the_candidate() -> None:
    member = {"resourceType": "Observation", "id": "m1", "status": "final", "code": _code("1-8")}
    resource = {
        "resourceType": "Observation",
        "id": "panel",
        "meta": {"profile": [PANEL["url"]]},
        "status": "final",
        "code": _code("85354-9"),
        "contained": [member],
        "hasMember": [{"reference": "#m1"}],
    }
    errors = _errors(copy.deepcopy(resource))
    assert any("slice 'noted' is required" in e for e in errors), errors
    member["note"] = [{"text": "checked"}]
    assert _errors(resource) == []


@pytest.mark.parametrize("profile", ["untellable"])
def test_a_slicing_that_cannot_be_told_apart_fails_closed(profile: str) -> None:
    errors = _errors(_observation(profile))
    assert any(
        "cannot tell the slices of Observation.component apart" in e
        and "fixes no value at 'code'" in e
        for e in errors
    ), errors
