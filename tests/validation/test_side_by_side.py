"""Validators hold no shared state: two of them with different IGs give their own answers when
used in turn in one process, and neither writes into the definitions it loaded."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from fhir_admsc.validation.catalog import load_ig
from fhir_admsc.validation.engine import Validator
from fhir_admsc.validation.run import catalog_for

PROFILE = "https://example.org/fhir/StructureDefinition/allowed-gender-patient"
VALUE_SET = "https://example.org/fhir/ValueSet/allowed-gender"
GENDER = "http://hl7.org/fhir/administrative-gender"


def _ig(folder: Path, allowed: str) -> Path:
    """An IG folder whose profile asks (through FHIRPath memberOf) for a gender its ValueSet
    allows; the profile is the same in every IG, the ValueSet's one code is ``allowed``."""
    folder.mkdir()
    profile = {
        "resourceType": "StructureDefinition",
        "id": "allowed-gender-patient",
        "url": PROFILE,
        "name": "AllowedGenderPatient",
        "status": "active",
        "fhirVersion": "4.0.1",
        "kind": "resource",
        "abstract": False,
        "type": "Patient",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
        "derivation": "constraint",
        "differential": {
            "element": [
                {
                    "id": "Patient",
                    "path": "Patient",
                    "constraint": [
                        {
                            "key": "agp-1",
                            "severity": "error",
                            "human": "the gender is one the study allows",
                            "expression": f"gender.memberOf('{VALUE_SET}')",
                        }
                    ],
                }
            ]
        },
    }
    value_set = {
        "resourceType": "ValueSet",
        "id": "allowed-gender",
        "url": VALUE_SET,
        "status": "active",
        "compose": {"include": [{"system": GENDER, "concept": [{"code": allowed}]}]},
    }
    (folder / "profile.json").write_text(json.dumps(profile))
    (folder / "value-set.json").write_text(json.dumps(value_set))
    return folder


def _patient(gender: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": f"p-{gender}",
        "meta": {"profile": [PROFILE]},
        "gender": gender,
    }


def _keys(issues: list[Any]) -> list[str]:
    return sorted(i.rule for i in issues if i.severity in ("error", "fatal"))


def test_two_validators_with_different_igs_used_in_turn(tmp_path: Path) -> None:
    women = Validator(catalog_for([_ig(tmp_path / "women", "female")]))
    men = Validator(catalog_for([_ig(tmp_path / "men", "male")]))
    refused = [f"{PROFILE}#agp-1"]
    for _ in range(2):  # interleaved, twice: the second validator made does not win
        assert _keys(women.validate(_patient("female"))) == []
        assert _keys(men.validate(_patient("female"))) == refused
        assert _keys(women.validate(_patient("male"))) == refused
        assert _keys(men.validate(_patient("male"))) == []


def test_validation_leaves_the_loaded_definitions_as_they_were(tmp_path: Path) -> None:
    folder = _ig(tmp_path / "ig", "female")
    resources = load_ig(folder)
    before = copy.deepcopy(resources)
    validator = Validator(catalog_for([folder]))
    validator.catalog.add(resources[0])  # the very dicts the user gave
    validator.catalog.add(resources[1])
    for gender in ("female", "male", "female"):
        validator.validate(_patient(gender))
    assert resources == before
    for sd in validator.catalog.structures.values():
        assert _written_keys(sd) == []


def _written_keys(value: Any) -> list[str]:
    """Keys a validator's memo would leave: names that no FHIR element has (a leading '_' on a
    name that is not a primitive's extension sibling of a present element)."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key.startswith("_") and key[1:] not in value:
                found.append(key)
            found += _written_keys(item)
    elif isinstance(value, list):
        for item in value:
            found += _written_keys(item)
    return found
