"""The validator's fixture corpus: clean resources from the demo export, and one broken case per
rule kind, each with the error it must produce (severity, where, which rule).

``write_corpus(folder)`` writes every case as a JSON file with a manifest, so that other engines can
be run over exactly the same inputs.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fhir_admsc import terminology as term
from fhir_admsc.bundle import bundle
from fhir_admsc.cli import demo_folder
from fhir_admsc.mappings import study_to_fhir
from fhir_admsc.tables import read_study


@cache
def demo_resources() -> tuple[dict[str, Any], ...]:
    return tuple(study_to_fhir(read_study(demo_folder())))


def demo(profile: str, index: int = 0) -> dict[str, Any]:
    """A fresh copy of the ``index``-th demo resource that claims profile ``profile``."""
    url = term.profile_url(profile)
    found = [r for r in demo_resources() if url in r["meta"]["profile"]]
    return copy.deepcopy(found[index])


def ext(resource: dict[str, Any], name: str) -> dict[str, Any]:
    url = term.extension_url(name) if "/" not in name else name
    return next(e for e in resource["extension"] if e["url"] == url)


def drop_ext(resource: dict[str, Any], name: str) -> None:
    url = term.extension_url(name) if "/" not in name else name
    resource["extension"] = [e for e in resource["extension"] if e["url"] != url]


@dataclass(frozen=True)
class Case:
    """One corpus case: the input, and the error it must produce (None for a clean case)."""

    id: str
    kind: str  # the rule kind exercised
    make: Callable[[], Any]
    location: str | None = None  # expected FHIRPath (ending) of the error
    rule: str | None = None  # expected rule (ending) of the error
    severity: str = "error"

    def document(self) -> Any:
        return self.make()


def _with(profile: str, change: Callable[[dict[str, Any]], None], index: int = 0):
    def make() -> dict[str, Any]:
        resource = demo(profile, index)
        change(resource)
        return resource

    return make


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(resource: dict[str, Any]) -> None:
        target = resource
        *parents, last = path.split(".")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return change


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def change(resource: dict[str, Any]) -> None:
        target = resource
        *parents, last = path.split(".")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        del target[last]

    return change


def _bundle(change: Callable[[dict[str, Any]], None]) -> Callable[[], dict[str, Any]]:
    def make() -> dict[str, Any]:
        b = bundle(copy.deepcopy(list(demo_resources())), "collection", "ADMSC-FSO794")
        change(b)
        return b

    return make


def _duplicate_full_url(b: dict[str, Any]) -> None:
    b["entry"][2]["fullUrl"] = b["entry"][1]["fullUrl"]


def _without_full_urls(b: dict[str, Any]) -> None:
    for entry in b["entry"]:
        del entry["fullUrl"]


def _subject_is_an_observation(b: dict[str, Any]) -> None:
    """A procedure whose subject is an Observation's entry, by its urn:uuid fullUrl."""
    observation = next(e for e in b["entry"] if e["resource"]["resourceType"] == "Observation")
    procedure = next(e for e in b["entry"] if e["resource"]["resourceType"] == "Procedure")
    procedure["resource"]["subject"]["reference"] = observation["fullUrl"]


def _dangling_reference(b: dict[str, Any]) -> None:
    b["entry"] = [e for e in b["entry"] if e["resource"]["resourceType"] != "Location"]


def _ae_before_first_procedure(b: dict[str, Any]) -> None:
    ae = next(e["resource"] for e in b["entry"] if e["resource"]["resourceType"] == "AdverseEvent")
    ae["date"] = "2016-01-01"
    ae.pop("suspectEntity")


def _early_repeat(b: dict[str, Any]) -> None:
    repeat = next(
        e["resource"]
        for e in b["entry"]
        if e["resource"]["resourceType"] == "Procedure"
        and any(x.get("valuePositiveInt") == 2 for x in e["resource"].get("extension", []))
    )
    first = next(
        e["resource"]
        for e in b["entry"]
        if e["resource"]["id"]
        == ext(repeat, "repeat-of")["valueReference"]["reference"].split("/")[1]
    )
    repeat["performedDateTime"] = first["performedDateTime"][:8] + "28"


def _ae_before_suspect(b: dict[str, Any]) -> None:
    ae = next(  # the pain flare after P06's second injection
        e["resource"]
        for e in b["entry"]
        if e["resource"]["resourceType"] == "AdverseEvent"
        and e["resource"]["identifier"]["value"].endswith("/AE-001")
    )
    ref = ae["suspectEntity"][0]["instance"]["reference"]
    proc = next(e["resource"] for e in b["entry"] if f"Procedure/{e['resource']['id']}" == ref)
    proc["performedDateTime"] = "2018-06-30"


def _medication_reference(r: dict[str, Any]) -> None:
    r["medicationReference"] = {"reference": "Medication/x"}
    del r["medicationCodeableConcept"]


def _core_extension_wrong_context(r: dict[str, Any]) -> None:
    r.setdefault("extension", []).append(
        {"url": term.WORKFLOW_RESEARCH_STUDY, "valueReference": {"reference": "ResearchStudy/x"}}
    )


def _extension_not_allowed(r: dict[str, Any]) -> None:
    r["extension"].append(
        {
            "url": term.extension_url("cell-dose"),
            "valueQuantity": {"value": 1, "unit": "cells", "system": term.UCUM, "code": "{cells}"},
        }
    )


def _unknown_extension(r: dict[str, Any]) -> None:
    r["extension"].append({"url": term.extension_url("cell-dosage"), "valueString": "x"})


def _wrong_unit(r: dict[str, Any]) -> None:
    ext(r, "cell-dose")["valueQuantity"]["code"] = "10*6"


def _extension_wrong_context(r: dict[str, Any]) -> None:
    r["extension"].append({"url": term.extension_url("ae-expected"), "valueBoolean": True})


CASES: list[Case] = [
    # clean cases
    *[
        Case(f"clean-{p}", "clean", _with(p, lambda r: None))
        for p in [
            "research-study",
            "patient",
            "research-subject",
            "condition",
            "visit",
            "harvest",
            "injection",
            "lipoaspirate",
            "cell-product",
            "nprs-average",
            "odi",
            "eq5d-mobility",
            "work-capacity",
            "disc-height",
            "annular-fissure",
            "analgesic-use",
            "adverse-event",
            "mri-study",
            "mri-report",
            "sponsor",
            "site",
        ]
    ],
    Case("clean-bundle", "clean", _bundle(lambda b: None)),
    # layer 1: structure
    Case(
        "structure-wrong-type",
        "structure",
        _with("nprs-average", _set("valueInteger", "seven")),
        "Observation.value.ofType(integer)",
        "fhir:R4",
    ),
    Case(
        "structure-unknown-element",
        "structure",
        _with("patient", _set("nickname", "Al")),
        "Patient.nickname",
        "fhir:R4",
    ),
    Case(
        "structure-bad-date",
        "structure",
        _with("visit", _set("period.start", "2017-02-30")),
        "Encounter.period.start",
        "fhir:R4",
    ),
    Case(
        "structure-empty-value",
        "structure",
        _with("patient", _set("gender", "")),
        "Patient.gender",
        "fhir:R4",
    ),
    Case(
        "structure-not-a-list",
        "structure",
        _with("nprs-average", lambda r: r.update(category=r["category"][0])),
        "Observation.category",
        "fhir:R4",
    ),
    # layer 2: profile rules
    Case(
        "profile-min-cardinality",
        "cardinality",
        _with("odi", _delete("encounter")),
        "Observation.encounter",
        "admsc-odi#Observation.encounter",
    ),
    Case(
        "profile-max-cardinality",
        "cardinality",
        _with("odi", lambda r: r["category"].append(copy.deepcopy(r["category"][0]))),
        "Observation.category",
        "admsc-odi#Observation.category",
    ),
    Case(
        "profile-pattern",
        "pattern",
        _with("odi", _set("code.coding.0.code", "nprs-average")),
        "Observation.code",
        "admsc-odi#Observation.code",
    ),
    Case(
        "profile-fixed",
        "fixed",
        _with("cell-product", _set("productCategory", "tissue")),
        "BiologicallyDerivedProduct.productCategory",
        "admsc-cell-product#BiologicallyDerivedProduct.productCategory",
    ),
    Case(
        "profile-required-binding",
        "binding",
        _with("condition", _set("bodySite.0.coding.0.code", "L6-S1")),
        "Condition.bodySite[0]",
        "admsc-condition#Condition.bodySite",
    ),
    Case(
        "profile-choice-type",
        "type",
        _with("odi", lambda r: r.update(valueInteger=40) or r.pop("valueQuantity")),
        "Observation.value.ofType(integer)",
        "admsc-odi#Observation.value[x]",
    ),
    Case(
        "profile-choice-type-alone",
        "type",
        _with("analgesic-use", _medication_reference),
        "MedicationStatement.medication.ofType(Reference)",
        "admsc-analgesic-use#MedicationStatement.medication[x]",
    ),
    Case(
        "base-reference-target",
        "reference",
        _with(
            "odi",
            _set(
                "encounter.reference", demo("patient")["resourceType"] + "/" + demo("patient")["id"]
            ),
        ),
        "Observation.encounter",
        "fhir:R4",  # R4's Observation.encounter allows only an Encounter: found before the profile
    ),
    Case(
        "profile-reference-target",
        "reference",
        # R4 allows a Device as a suspect entity; the project's profile only a Procedure
        _with("adverse-event", _set("suspectEntity.0.instance.reference", "Device/abc")),
        "AdverseEvent.suspectEntity[0].instance",
        "admsc-adverse-event#AdverseEvent.suspectEntity.instance",
    ),
    Case(
        "profile-missing-extension-slice",
        "extension-slice",
        _with("injection", lambda r: drop_ext(r, "cell-dose")),
        "Procedure.extension",
        "admsc-injection#Procedure.extension:cellDose",
    ),
    Case(
        "profile-extension-not-allowed",
        "extension-slice",
        _with("harvest", _extension_not_allowed),
        "Procedure.extension",
        "admsc-harvest#Procedure.extension:cellDose",
    ),
    Case(
        "profile-extension-value",
        "extension-definition",
        _with("injection", _wrong_unit),
        "Procedure.extension[2].value.ofType(Quantity)",
        "cell-dose#Extension.value[x]",
    ),
    Case(
        "profile-unknown-extension",
        "extension-definition",
        _with("injection", _unknown_extension),
        "Procedure.extension[6]",
        "cell-dosage",
    ),
    Case(
        "profile-extension-context",
        "extension-definition",
        _with("injection", _extension_wrong_context),
        "Procedure.extension[6]",
        "ae-expected",
    ),
    Case(
        "profile-invariant-range",
        "invariant",
        _with("nprs-average", _set("valueInteger", 11)),
        "Observation",
        "admsc-nprs-average#admsc-nprs-average-range",
    ),
    Case(
        "profile-invariant-birth-year",
        "invariant",
        _with("patient", _set("birthDate", "1968-05-01")),
        "Patient",
        "admsc-patient#admsc-patient-birth-year",
    ),
    Case(
        "profile-invariant-identifier",
        "invariant",
        _with("patient", _set("identifier.0.system", "urn:example:other")),
        "Patient",
        "admsc-patient#admsc-patient-id",
    ),
    # a claim of a profile nobody loaded is a warning, as in the HL7 validator's own test suite
    # (cases bb-obs-value-is-not-in-valueset, obs-temp, obs-fio2, bundle-profiles)
    Case(
        "profile-not-loaded",
        "profile",
        _with("patient", _set("meta.profile", ["https://example.org/StructureDefinition/x"])),
        "Patient",
        "https://example.org/StructureDefinition/x",
        severity="warning",
    ),
    Case(
        "core-extension-context",
        "extension-definition",
        _with("patient", _core_extension_wrong_context),
        "Patient.extension[0]",
        "workflow-researchStudy",
    ),
    Case(
        "own-code-unknown",
        "code-system",
        _with("visit", _set("type.0.coding.0.code", "month13")),
        "Encounter.type[0].coding[0].code",
        "fhir:R4",
    ),
    Case(
        "external-loinc-format",
        "code-format",
        _with("odi", _set("code.coding.1.code", "97909-5")),
        "Observation.code.coding[1].code",
        "fhir:R4",
    ),
    Case(
        "external-snomed-format",
        "code-format",
        _with("condition", _set("code.coding.1.code", "279039008")),
        "Condition.code.coding[1].code",
        "fhir:R4",
    ),
    # layer 3: R4 base rules
    Case(
        "base-required-binding-status",
        "base-binding",
        _with("harvest", _set("status", "done")),
        "Procedure.status",
        "fhir:R4",
    ),
    Case(
        "base-required-binding-gender",
        "base-binding",
        _with("patient", _set("gender", "femme")),
        "Patient.gender",
        "fhir:R4",
    ),
    Case(
        "base-required-binding-severity",
        "base-binding",
        _with("adverse-event", _set("severity.coding.0.code", "grave")),
        "AdverseEvent.severity",
        "fhir:R4",
    ),
    Case(
        "base-invariant",
        "base-invariant",
        _with("odi", lambda r: r.update(dataAbsentReason={"text": "not asked"})),
        "Observation",
        "fhir:R4#obs-6",
    ),
    Case(
        "base-invariant-datatype",
        "base-invariant",
        _with("odi", _delete("valueQuantity.system")),
        "Observation.value.ofType(Quantity)",
        "fhir:R4#qty-3",
    ),
    # layer 4: Bundle and study rules
    Case(
        "bundle-duplicate-fullurl",
        "bundle",
        _bundle(_duplicate_full_url),
        "Bundle.entry[2].fullUrl",
        "#unique-fullurl",
    ),
    # outside transactions and batches every entry needs a fullUrl (both engines say so); bdl-8,
    # fullUrl.contains('/_history/').not(), is empty without one and passes in the HL7 validator
    # (its contains() of nothing is false): neither reports it
    Case(
        "bundle-entry-without-fullurl",
        "bundle",
        _bundle(_without_full_urls),
        "Bundle.entry[0]",
        "#fullurl-required",
    ),
    # a urn:uuid reference is resolved through the entry's fullUrl, then its target type checked
    Case(
        "bundle-urn-uuid-wrong-target",
        "bundle",
        _bundle(_subject_is_an_observation),
        ".subject",
        "fhir:R4",  # R4's Procedure.subject allows Patient and Group: found before the profile
    ),
    # a collection may point at what its receiver holds: a warning (the HL7 validator says
    # nothing); a document or message must carry its targets (an error)
    Case(
        "bundle-dangling-reference",
        "bundle",
        _bundle(_dangling_reference),
        ".site[0].reference",
        "#reference-resolves",
        severity="warning",
    ),
    Case(
        "study-repeat-too-early",
        "study-invariant",
        _bundle(_early_repeat),
        "*/",
        "admsc-injection#admsc-injection-5-months",
    ),
    Case(
        "study-ae-before-suspect",
        "study-invariant",
        _bundle(_ae_before_suspect),
        "*/",
        "admsc-adverse-event#admsc-ae-after-procedure",
    ),
    Case(
        "study-ae-before-first-procedure",
        "study-rule",
        _bundle(_ae_before_first_procedure),
        "*/.date",
        "#ae-after-first-procedure",
    ),
]


def write_corpus(folder: Path) -> None:
    """Every case as ``<id>.json`` and a ``manifest.json`` of the expectations."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = []
    for case in CASES:
        (folder / f"{case.id}.json").write_text(json.dumps(case.document(), indent=2))
        manifest.append(
            {"id": case.id, "kind": case.kind, "location": case.location, "rule": case.rule}
        )
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
