"""The R4 base definitions shipped in fhir_admsc/r4_definitions.json.gz."""

from __future__ import annotations

import re
from importlib.resources import files

import pytest

from fhir_admsc import r4 as d
from fhir_admsc.r4 import Binding, ElementDef

VS = "http://hl7.org/fhir/ValueSet/"
SD = "http://hl7.org/fhir/StructureDefinition/"


def element(type_name: str, path: str) -> ElementDef:
    """Return the one element of ``type_name`` at ``path``."""
    found = [e for e in d.base_elements(type_name) if e.path == path]
    assert len(found) == 1, f"{path}: {len(found)} elements"
    return found[0]


def codes(value_set: str) -> set[str]:
    """Return the codes of an expandable value set."""
    pairs = d.expansion(value_set)
    assert pairs is not None, d.unexpandable_reason(value_set)
    return {code for _, code in pairs}


# --------------------------------------------------------------------------- data file


def test_data_file_is_compact() -> None:
    data = files("fhir_admsc") / "r4_definitions.json.gz"
    assert 50_000 < len(data.read_bytes()) < 1_500_000


# --------------------------------------------------------------------------- types


@pytest.mark.parametrize(
    "name",
    ["Observation", "Patient", "Bundle", "ResearchStudy", "BiologicallyDerivedProduct"],
)
def test_resource_types(name: str) -> None:
    assert d.is_resource_type(name)
    assert not d.is_datatype(name)
    assert name in d.resource_types()


@pytest.mark.parametrize(
    "name",
    ["Quantity", "CodeableConcept", "Reference", "Extension", "Dosage", "Element", "date"],
)
def test_datatypes(name: str) -> None:
    assert d.is_datatype(name)
    assert not d.is_resource_type(name)
    assert name not in d.resource_types()


@pytest.mark.parametrize(
    "name",
    ["Resource", "DomainResource", "SubscriptionStatus", "MetadataResource", "Nonsense"],
    ids=["abstract-Resource", "abstract-DomainResource", "R4B-only", "logical", "unknown"],
)
def test_not_concrete_r4_resource_types(name: str) -> None:
    assert not d.is_resource_type(name)
    assert name not in d.resource_types()


def test_resource_types_match_the_r4_resource_type_code_system() -> None:
    declared = d.code_system_codes("http://hl7.org/fhir/resource-types")
    assert declared is not None
    assert d.resource_types() == declared - {"Resource", "DomainResource"}
    assert len(d.resource_types()) == 146


@pytest.mark.parametrize("name", ["boolean", "date", "xhtml"])
def test_primitive_types(name: str) -> None:
    assert d.is_primitive_type(name)


@pytest.mark.parametrize("name", ["Quantity", "Patient", "Element"])
def test_not_primitive_types(name: str) -> None:
    assert not d.is_primitive_type(name)


@pytest.mark.parametrize("name", ["Nonsense", "observation", "SubscriptionStatus", ""])
def test_unknown_type_raises_key_error(name: str) -> None:
    with pytest.raises(KeyError):
        d.base_elements(name)


def test_every_type_starts_with_its_root() -> None:
    names = d.resource_types() | {"Resource", "DomainResource", "Quantity", "Element", "Dosage"}
    for name in names:
        elements = d.base_elements(name)
        assert elements[0].path == name
        assert all(e.path.startswith(name + ".") for e in elements[1:]), name


def test_quantity_profiles_are_available() -> None:
    simple = d.base_elements("SimpleQuantity")
    assert simple[0].path == "Quantity"
    assert "sqty-1" in {c.key for c in simple[0].constraints}
    assert element("Observation", "Observation.referenceRange.low").types[0].profiles == (
        SD + "SimpleQuantity",
    )


def test_base_elements_are_cached() -> None:
    assert d.base_elements("Observation") is d.base_elements("Observation")


# --------------------------------------------------------------------------- elements


def test_observation_status() -> None:
    status = element("Observation", "Observation.status")
    assert (status.min, status.max) == (1, "1")
    assert [t.code for t in status.types] == ["code"]
    assert status.binding == Binding("required", VS + "observation-status")
    pairs = d.expansion(status.binding.value_set)
    assert pairs is not None
    assert ("http://hl7.org/fhir/observation-status", "final") in pairs
    assert ("http://hl7.org/fhir/observation-status", "bogus") not in pairs


@pytest.mark.parametrize(
    ("key", "expression"),
    [
        ("obs-6", "dataAbsentReason.empty() or value.empty()"),
        (
            "obs-7",
            "value.empty() or component.code.where(coding.intersect(%resource.code.coding)"
            ".exists()).empty()",
        ),
    ],
    ids=["obs-6", "obs-7"],
)
def test_observation_invariants(key: str, expression: str) -> None:
    root = d.base_elements("Observation")[0]
    found = {c.key: c for c in root.constraints}
    assert found[key].expression == expression
    assert found[key].severity == "error"
    assert found[key].human


def test_observation_choice_and_cardinality() -> None:
    value = element("Observation", "Observation.value[x]")
    assert (value.min, value.max) == (0, "1")
    assert {t.code for t in value.types} == {
        "Quantity",
        "CodeableConcept",
        "string",
        "boolean",
        "integer",
        "Range",
        "Ratio",
        "SampledData",
        "time",
        "dateTime",
        "Period",
    }
    assert element("Observation", "Observation.component.code").min == 1
    assert element("Observation", "Observation.component").max == "*"


def test_observation_subject_targets() -> None:
    (ref,) = element("Observation", "Observation.subject").types
    assert ref.code == "Reference"
    assert SD + "Patient" in ref.target_profiles
    assert SD + "Practitioner" not in ref.target_profiles


@pytest.mark.parametrize(
    ("path", "has_ele_1"),
    [
        ("Patient.gender", True),
        ("Patient.contact", True),
        ("Patient.contact.id", False),
        ("Patient.contained", False),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_inherited_ele_1(path: str, has_ele_1: bool) -> None:
    keys = {c.key for c in element("Patient", path).constraints}
    assert ("ele-1" in keys) is has_ele_1
    assert "ext-1" in {c.key for c in element("Patient", "Patient.extension").constraints}


def test_content_reference() -> None:
    nested = element("Questionnaire", "Questionnaire.item.item")
    assert nested.content_reference == "#Questionnaire.item"
    assert nested.types == ()


def test_quantity_has_qty_3() -> None:
    root = d.base_elements("Quantity")[0]
    assert "qty-3" in {c.key for c in root.constraints}


@pytest.mark.parametrize(
    ("type_name", "path", "value_set"),
    [
        ("Patient", "Patient.gender", "administrative-gender"),
        ("AdverseEvent", "AdverseEvent.severity", "adverse-event-severity"),
        ("AdverseEvent", "AdverseEvent.actuality", "adverse-event-actuality"),
        ("Procedure", "Procedure.status", "event-status"),
        ("ResearchStudy", "ResearchStudy.status", "research-study-status"),
        ("ResearchSubject", "ResearchSubject.status", "research-subject-status"),
        (
            "BiologicallyDerivedProduct",
            "BiologicallyDerivedProduct.productCategory",
            "product-category",
        ),
        ("Condition", "Condition.clinicalStatus", "condition-clinical"),
        ("Bundle", "Bundle.type", "bundle-type"),
    ],
    ids=lambda v: v if "." in v else None,
)
def test_required_bindings(type_name: str, path: str, value_set: str) -> None:
    binding = element(type_name, path).binding
    assert binding == Binding("required", VS + value_set)
    assert d.expansion(binding.value_set)


# --------------------------------------------------------------------------- expansions


@pytest.mark.parametrize(
    ("value_set", "expected"),
    [
        ("administrative-gender", {"male", "female", "other", "unknown"}),
        ("product-category", {"organ", "tissue", "fluid", "cells", "biologicalAgent"}),
        ("adverse-event-severity", {"mild", "moderate", "severe"}),
    ],
    ids=["gender", "bdp-category", "ae-severity"],
)
def test_exact_expansions(value_set: str, expected: set[str]) -> None:
    assert codes(VS + value_set) == expected


@pytest.mark.parametrize(
    ("value_set", "present", "absent"),
    [
        (
            "research-study-status",
            {"completed", "active", "administratively-completed"},
            {"revoked"},
        ),
        ("research-subject-status", {"off-study", "on-study", "screening"}, {"in-progress"}),
        ("event-status", {"completed", "in-progress", "not-done"}, {"final"}),
        ("observation-status", {"final", "preliminary", "amended"}, {"completed"}),
        ("units-of-time", {"h", "d", "wk", "mo", "a"}, {"hour"}),
    ],
    ids=["research-study", "research-subject", "procedure", "observation", "ucum-time"],
)
def test_expansion_members(value_set: str, present: set[str], absent: set[str]) -> None:
    found = codes(VS + value_set)
    assert present <= found
    assert not absent & found


def test_expansion_keeps_systems() -> None:
    pairs = d.expansion(VS + "units-of-time")
    assert pairs is not None
    assert {system for system, _ in pairs} == {"http://unitsofmeasure.org"}


def test_expansion_ignores_version_suffix() -> None:
    assert d.expansion(VS + "administrative-gender|4.0.1") == d.expansion(
        VS + "administrative-gender"
    )


def test_expandable_value_set_has_no_reason() -> None:
    assert d.unexpandable_reason(VS + "observation-status") is None


@pytest.mark.parametrize(
    ("value_set", "reason_part"),
    [
        (VS + "mimetypes", "urn:ietf:bcp:13"),
        (VS + "currencies", "urn:iso:std:iso:4217"),
        (VS + "ucum-units", "http://unitsofmeasure.org"),
        ("http://loinc.org/vs/LL379-9", "not defined"),
    ],
    ids=["mime-bcp13", "currencies-iso4217", "ucum", "loinc-answer-list"],
)
def test_unexpandable_required_value_sets(value_set: str, reason_part: str) -> None:
    assert d.expansion(value_set) is None
    reason = d.unexpandable_reason(value_set)
    assert reason is not None and reason_part in reason


def test_required_mimetype_binding_is_unexpandable() -> None:
    binding = element("Attachment", "Attachment.contentType").binding
    assert binding == Binding("required", VS + "mimetypes")
    assert d.expansion(binding.value_set) is None


def test_language_binding_is_not_required_and_not_expanded() -> None:
    binding = element("Patient", "Patient.communication.language").binding
    assert binding == Binding("preferred", VS + "languages")
    assert d.expansion(binding.value_set) is None
    reason = d.unexpandable_reason(binding.value_set)
    assert reason is not None and "not bound as required" in reason


# --------------------------------------------------------------------------- code systems


@pytest.mark.parametrize(
    ("system", "present", "absent"),
    [
        (
            "http://terminology.hl7.org/CodeSystem/observation-category",
            {"survey", "imaging", "laboratory", "vital-signs"},
            {"bogus"},
        ),
        ("http://hl7.org/fhir/research-subject-status", {"off-study"}, {"completed"}),
        # nested concepts are flattened (ActCode has deep hierarchies)
        ("http://terminology.hl7.org/CodeSystem/v3-ActCode", {"_ActEncounterCode", "AMB"}, set()),
        ("http://terminology.hl7.org/CodeSystem/v2-0203", {"MR"}, set()),
        # medplum added 'multi-select' to this R4 code system; the data file drops it
        ("http://hl7.org/fhir/questionnaire-item-control", {"drop-down"}, {"multi-select"}),
    ],
    ids=["observation-category", "research-subject", "v3-nested", "v2-0203", "item-control"],
)
def test_code_system_codes(system: str, present: set[str], absent: set[str]) -> None:
    found = d.code_system_codes(system)
    assert found is not None
    assert present <= found
    assert not absent & found


@pytest.mark.parametrize(
    "system",
    [
        "http://snomed.info/sct",
        "http://loinc.org",
        "http://terminology.hl7.org/CodeSystem/service-type",
        "http://hl7.org/fhir/detectedissue-status",
    ],
    ids=["snomed-not-present", "loinc-absent", "example-content", "R5-only"],
)
def test_code_systems_not_available(system: str) -> None:
    assert d.code_system_codes(system) is None


# --------------------------------------------------------------------------- primitives


PRIMITIVE_CASES = [
    ("date", ["2024", "2024-02", "2024-02-29"], ["2024-13-01", "24-02", "2024-02-30T"]),
    (
        "dateTime",
        ["2024-02-03T10:11:12Z", "2024"],
        ["2024-02-03T10:11", "2024-02-03 10:11:12Z"],
    ),
    ("instant", ["2024-02-03T10:11:12.5+01:00"], ["2024-02-03"]),
    ("id", ["abc-1.2", "A" * 64], ["a_b", "A" * 65]),
    ("code", ["final", "a b"], [" final", "a  b", ""]),
    ("decimal", ["0", "-1.50", "1e3"], ["01", "1.", "+1"]),
    ("integer", ["0", "-12"], ["1.0", "012"]),
    ("positiveInt", ["1", "42"], ["0", "-1"]),
    ("unsignedInt", ["0", "7"], ["-1", "07"]),
    ("uri", ["http://x", "urn:uuid:1"], ["has space"]),
    ("boolean", ["true", "false"], ["True", "1"]),
    ("uuid", ["urn:uuid:0a1b2c3d-0000-1111-2222-333344445555"], ["0a1b2c3d"]),
]


@pytest.mark.parametrize(
    ("type_name", "good", "bad"), PRIMITIVE_CASES, ids=[case[0] for case in PRIMITIVE_CASES]
)
def test_primitive_regex(type_name: str, good: list[str], bad: list[str]) -> None:
    regex = d.primitive_regex(type_name)
    assert regex is not None
    for value in good:
        assert re.fullmatch(regex, value), value
    for value in bad:
        assert not re.fullmatch(regex, value), value


@pytest.mark.parametrize("type_name", ["xhtml", "Quantity", "Nonsense"])
def test_no_primitive_regex(type_name: str) -> None:
    assert d.primitive_regex(type_name) is None


# --------------------------------------------------------------------------- R4 fidelity
# medplum's "r4" package grafts R4B/R5/medplum content onto R4; the extractor undoes it.


@pytest.mark.parametrize(
    ("type_name", "path"),
    [
        ("ResearchStudy", "ResearchStudy.recruitment"),
        ("ResearchStudy", "ResearchStudy.label"),
        ("ResearchStudy", "ResearchStudy.progressStatus"),
        ("Meta", "Meta.project"),
        ("Meta", "Meta.compartment"),
        ("Binary", "Binary.url"),
        ("EvidenceVariable", "EvidenceVariable.characteristic.definitionByCombination"),
    ],
    ids=lambda v: v if "." in v else None,
)
def test_non_r4_elements_are_absent(type_name: str, path: str) -> None:
    assert path not in {e.path for e in d.base_elements(type_name)}


def test_r4_elements_restored() -> None:
    definition = element("EvidenceVariable", "EvidenceVariable.characteristic.definition[x]")
    assert definition.min == 1
    assert element("EvidenceVariable", "EvidenceVariable.characteristic").min == 1
    assert element("ResearchStudy", "ResearchStudy.enrollment").max == "*"


def test_r4_binding_of_detected_issue_status() -> None:
    binding = element("DetectedIssue", "DetectedIssue.status").binding
    assert binding == Binding("required", VS + "observation-status")


def test_r4_reference_targets() -> None:
    (ref,) = element("ResearchStudy", "ResearchStudy.site").types
    assert ref.target_profiles == (SD + "Location",)
    (who,) = element("AuditEvent", "AuditEvent.agent.who").types
    assert not [t for t in who.target_profiles if "medplum" in t]


def test_r4_invariant_text_of_app_4() -> None:
    found = {c.key: c for c in d.base_elements("Appointment")[0].constraints}
    assert "'no-show'" in found["app-4"].expression


def test_r4_facts_biologically_derived_product_and_procedure() -> None:
    category = element("BiologicallyDerivedProduct", "BiologicallyDerivedProduct.productCategory")
    assert [t.code for t in category.types] == ["code"]
    assert category.binding == Binding("required", VS + "product-category")
    assert d.expansion(category.binding.value_set) == frozenset(
        ("http://hl7.org/fhir/product-category", code)
        for code in ("organ", "tissue", "fluid", "cells", "biologicalAgent")
    )
    status = element("Procedure", "Procedure.status")
    assert (status.min, status.binding) == (1, Binding("required", VS + "event-status"))
    assert ("http://hl7.org/fhir/event-status", "completed") in (
        d.expansion(status.binding.value_set) or frozenset()
    )
