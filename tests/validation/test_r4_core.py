"""What R4 itself defines beyond its resources, applied as the HL7 validator applies it: its
extensions (their contexts and value types), the vital signs profiles an Observation's code calls
for, its ValueSets; and the checks of references, canonicals, URLs and StructureDefinitions that
came with them (cases of the HL7 suite in test_hl7_cases.py record the agreement)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from fhir_admsc import r4
from fhir_admsc.cli import cli
from fhir_admsc.resources import Document
from fhir_admsc.validation.catalog import project_catalog
from fhir_admsc.validation.run import validate_documents

SD = "http://hl7.org/fhir/StructureDefinition/"


def _issues(resource: dict[str, Any], **options: Any) -> list[str]:
    found, _ = validate_documents([Document("t.json", 1, resource)], project_catalog(), **options)
    return [f"{i.severity} {i.location}: {i.message}" for i in found]


def _errors(resource: dict[str, Any], **options: Any) -> list[str]:
    return [i for i in _issues(resource, **options) if i.startswith(("error", "fatal"))]


def _temperature() -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "t1",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-03-02T10:00:00Z",
        "valueQuantity": {
            "value": 37.1,
            "unit": "C",
            "system": "http://unitsofmeasure.org",
            "code": "Cel",
        },
    }


def test_a_conforming_body_temperature_passes_and_names_the_profile_r4_requires() -> None:
    issues = _issues(_temperature())
    assert [i for i in issues if not i.startswith("information")] == []
    assert any(SD + "bodytemp" in i and "8310-5" in i for i in issues), issues


def test_a_vital_sign_code_brings_its_profile_in() -> None:
    snomed = _temperature()
    snomed["code"] = {"coding": [{"system": "http://snomed.info/sct", "code": "276885007"}]}
    errors = _errors(snomed)
    assert any("BodyTempCode" in e for e in errors), errors
    unitless = _temperature()
    unitless["valueQuantity"]["code"] = "K"  # ucum-bodytemp is required: Cel or [degF]
    assert any("Observation.value.ofType(Quantity).code" in e for e in _errors(unitless))
    other = _temperature()
    other["code"] = {"coding": [{"system": "http://loinc.org", "code": "2160-0"}]}
    del other["category"]
    assert _errors(other) == []  # creatinine is no vital sign: the base rules only


def test_vs_1_speaks_of_datetimes_only() -> None:
    coarse = _temperature()
    coarse["effectiveDateTime"] = "2024"
    assert any("vs-1" in e for e in _errors(coarse))
    period = _temperature()
    del period["effectiveDateTime"]
    period["effectivePeriod"] = {"start": "2024"}
    assert _errors(period) == []


def _patient(**fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", **fields}


def test_r4_extensions_are_checked_against_their_context_and_type() -> None:
    family = SD + "humanname-mothers-family"
    on_name = _patient(name=[{"family": "A", "extension": [{"url": family, "valueString": "B"}]}])
    errors = _errors(on_name)
    assert any("Patient.name[0].extension[0]" in e and "HumanName.family" in e for e in errors)
    on_family = _patient(
        name=[{"family": "A", "_family": {"extension": [{"url": family, "valueString": "B"}]}}]
    )
    assert _errors(on_family) == []
    link = SD + "narrativeLink"
    assert any(
        "Patient.extension[0]" in e
        for e in _errors(_patient(extension=[{"url": link, "valueUri": "#a"}]))
    )
    assert _errors(_patient(extension=[{"url": link, "valueUrl": "#a"}])) == []


def test_an_extension_url_names_no_version() -> None:
    url = SD + "patient-birthPlace"
    versioned = _patient(extension=[{"url": url + "|4.0.1", "valueAddress": {"city": "X"}}])
    assert any("without a version" in e for e in _errors(versioned))
    assert _errors(_patient(extension=[{"url": url, "valueAddress": {"city": "X"}}])) == []


def test_r4_value_sets_are_known_offline() -> None:
    assert (
        r4.core_definition("http://hl7.org/fhir/ValueSet/age-units")["resourceType"] == "ValueSet"
    )
    assert r4.core_definition("http://example.org/ValueSet/age-units") is None
    catalog = project_catalog()
    assert ("http://unitsofmeasure.org", "a") in catalog.expansion(
        "http://hl7.org/fhir/ValueSet/age-units"
    )


def _document(*references: str) -> dict[str, Any]:
    observation = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"text": "x"},
    }
    entries = [
        {
            "fullUrl": "http://example.org/fhir/Composition/c1",
            "resource": {
                "resourceType": "Composition",
                "id": "c1",
                "status": "final",
                "type": {"text": "note"},
                "date": "2024-01-01",
                "author": [{"display": "A"}],
                "title": "T",
                "section": [{"title": "S", "entry": [{"reference": r} for r in references]}],
            },
        }
    ]
    for version in ("1", "2"):
        resource = copy.deepcopy(observation)
        resource["meta"] = {"versionId": version}
        entries.append({"fullUrl": "http://example.org/fhir/Observation/o1", "resource": resource})
    return {"resourceType": "Bundle", "type": "document", "identifier": {"value": "d"},
            "timestamp": "2024-01-01T00:00:00Z", "entry": entries}  # fmt: skip


def test_a_reference_to_an_entry_in_several_versions_must_name_one() -> None:
    errors = _errors(_document("Observation/o1"))
    assert any("2 entries of the Bundle match" in e for e in errors), errors
    assert not any("reference-resolves" in e or "Bundle" in e for e in _errors(
        _document("Observation/o1/_history/2")
    ) if "section" in e)  # fmt: skip
    assert any("is not in the Bundle" in e for e in _errors(_document("Observation/o1/_history/3")))


def _definition(elements: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "StructureDefinition",
        "url": "http://example.org/fhir/StructureDefinition/t",
        "name": "T",
        "status": "draft",
        "kind": "resource",
        "abstract": False,
        "type": "Patient",
        "baseDefinition": SD + "Patient",
        "derivation": "constraint",
        "differential": {"element": elements},
    }


def test_a_discriminator_path_must_name_an_element_of_the_sliced_type() -> None:
    bad = {"type": "value", "path": "type"}
    element = {"id": "Patient.extension", "path": "Patient.extension"}
    errors = _errors(
        _definition([{**element, "slicing": {"discriminator": [bad], "rules": "open"}}])
    )
    assert any("differential.element[0].slicing.discriminator[0]" in e for e in errors), errors
    good = {"type": "value", "path": "url"}
    sliced = [{**element, "slicing": {"discriminator": [good], "rules": "open"}}]
    assert _errors(_definition(sliced)) == []
    identifiers = {"id": "Patient.identifier", "path": "Patient.identifier"}
    deep = {"type": "pattern", "path": "type.coding.system"}
    assert (
        _errors(
            _definition([{**identifiers, "slicing": {"discriminator": [deep], "rules": "open"}}])
        )
        == []
    )


def test_a_binding_needs_a_type_that_takes_codes() -> None:
    binding = {"strength": "required", "valueSet": "http://hl7.org/fhir/ValueSet/age-units"}
    date = {"id": "Patient.birthDate", "path": "Patient.birthDate", "binding": binding}
    assert any("takes no codes" in e or "take no codes" in e for e in _errors(_definition([date])))
    gender = {"id": "Patient.gender", "path": "Patient.gender", "binding": binding}
    assert _errors(_definition([gender])) == []


def test_a_canonical_is_absolute_or_a_contained_id() -> None:
    relative = {"resourceType": "Measure", "status": "draft", "library": ["Library/l1"]}
    assert any("Measure.library[0]" in e for e in _errors(relative))
    absolute = {
        "resourceType": "Measure",
        "status": "draft",
        "library": ["http://x.org/Library/l1"],
    }
    assert _errors(absolute) == []


def test_example_urls_are_refused_on_request(tmp_path: Path) -> None:
    patient = _patient(photo=[{"url": "http://files.example.org/p1.png"}])
    assert _errors(patient) == []
    assert any("example URL" in e for e in _errors(patient, example_urls=False))
    assert (
        _errors(_patient(photo=[{"url": "http://files.examples.org/p1.png"}]), example_urls=False)
        == []
    )
    path = tmp_path / "p.json"
    path.write_text(__import__("json").dumps(patient), encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(cli, ["validate", str(path)]).exit_code == 0
    refused = runner.invoke(cli, ["validate", "--no-example-urls", str(path)])
    assert refused.exit_code == 1 and "Patient.photo[0].url" in refused.output


def _layered() -> list[dict[str, Any]]:
    def profile(name: str, base: str, element: dict[str, Any]) -> dict[str, Any]:
        return {
            "resourceType": "StructureDefinition",
            "url": f"http://example.org/fhir/StructureDefinition/{name}",
            "name": name,
            "status": "draft",
            "kind": "resource",
            "abstract": False,
            "type": "Patient",
            "baseDefinition": base,
            "derivation": "constraint",
            "differential": {"element": [element]},
        }

    def extensible(path: str, value_set: str) -> dict[str, Any]:
        binding = {
            "strength": "extensible",
            "valueSet": f"http://hl7.org/fhir/ValueSet/{value_set}",
        }
        return {"id": path, "path": path, "binding": binding}

    a = profile("a", SD + "Patient", extensible("Patient.maritalStatus", "marital-status"))
    b = profile("b", a["url"], extensible("Patient.communication.language", "marital-status"))
    return [a, b]


def test_a_profile_checked_for_conformance_first_reports_as_when_checked_alone() -> None:
    from fhir_admsc.validation.engine import Validator

    a, b = _layered()
    catalog = project_catalog().extended([a, b])
    local = {"coding": [{"system": "http://example.net/local", "code": "x"}]}
    patient = _patient(
        meta={"profile": [b["url"]]}, maritalStatus=local, communication=[{"language": local}]
    )
    alone = Validator(catalog).validate(patient)
    profiled = [i.rule.split("#")[0] for i in alone if i.rule.startswith("http://example.org")]
    assert profiled == [a["url"], b["url"]]
    checked_first = Validator(catalog)
    from fhir_admsc.validation.engine import Context

    assert checked_first._conforms(Context(patient), patient, b["url"])
    assert checked_first.validate(patient) == alone


def test_an_extension_a_profile_slices_is_judged_by_its_definition_once() -> None:
    from tests.validation.corpus import demo_resources

    visit = next(r for r in demo_resources() if r["resourceType"] == "Encounter")
    url = SD + "workflow-researchStudy"
    assert [e["url"] for e in visit["extension"]].count(url) == 1
    broken = copy.deepcopy(visit)
    broken["extension"] = [{"url": url, "valueString": "not a reference"}]
    issues, _ = validate_documents([Document("t.json", 1, broken)], project_catalog())
    rules = sorted(i.rule.split("#")[0] for i in issues if i.location.endswith("ofType(string)"))
    # R4's definition of the extension once, and the slice of the project's profile
    assert rules == [url, "https://fhir-admsc.org/fhir/StructureDefinition/admsc-visit"], rules
