"""The project's conformance resources: profiles, extensions, CodeSystem, ValueSets and the
ImplementationGuide, built from the terminology table, stored in ``profiles/`` and packaged for npm.

``build_resources()`` is the source of truth; ``fhir_admsc/profiles/*.json`` is its published output
(regenerate with ``python -m fhir_admsc.conformance``; a test keeps the two equal).
"""

from __future__ import annotations

import gzip
import io
import json
import re
import tarfile
from collections.abc import Iterable
from importlib import resources as package_files
from pathlib import Path
from typing import Any

from fhir_admsc import r4
from fhir_admsc import terminology as term
from fhir_admsc.output import write_files

PACKAGE_NAME = "fhir-admsc.profiles"
PACKAGE_VERSION = "0.1.0"
IG_ID = "fhir-admsc"
PUBLISHER = "fhir-admsc contributors"
STATUS = "draft"
DATE = "2026-11-24"
CORE = "http://hl7.org/fhir/StructureDefinition/"


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[-_]", name))


def _fhirpath_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Profile:
    """A StructureDefinition built element by element, as a differential on an R4 base type."""

    def __init__(self, name: str, base: str, title: str, description: str) -> None:
        self.name, self.base, self.title, self.description = name, base, title, description
        self.elements: dict[str, dict[str, Any]] = {}
        self.invariants: list[dict[str, str]] = []

    def element(self, path: str, **properties: Any) -> Profile:
        """Constrain ``<base>.<path>`` (path ``""`` is the root); ``id`` may carry slice names."""
        element_id = f"{self.base}.{path}" if path else self.base
        plain = re.sub(r":[^.]+", "", element_id)
        entry = self.elements.setdefault(element_id, {"id": element_id, "path": plain})
        entry.update(properties)
        return self

    def require(self, *paths: str) -> Profile:
        for path in paths:
            self.element(path, min=1)
        return self

    def reference(self, path: str, *targets: str, min: int | None = None) -> Profile:
        """Restrict a Reference element to target types (R4 base profiles or our profiles)."""
        profiles = [t if "/" in t else CORE + t for t in targets]
        properties: dict[str, Any] = {"type": [{"code": "Reference", "targetProfile": profiles}]}
        if min is not None:
            properties["min"] = min
        return self.element(path, **properties)

    def pattern(self, path: str, kind: str, value: Any) -> Profile:
        return self.element(path, **{f"pattern{kind}": value})

    def bind(self, path: str, value_set: str, strength: str = "required") -> Profile:
        return self.element(path, binding={"strength": strength, "valueSet": value_set})

    def extension(self, name_or_url: str, slice_name: str, min: int, max: str) -> Profile:
        """A slice of ``extension`` for the extension with that url (one of ours by name)."""
        url = name_or_url if "/" in name_or_url else term.extension_url(name_or_url)
        self.element(
            "extension",
            slicing={
                "discriminator": [{"type": "value", "path": "url"}],
                "ordered": False,
                "rules": "open",
            },
        )
        return self.element(
            f"extension:{slice_name}",
            sliceName=slice_name,
            min=min,
            max=max,
            type=[{"code": "Extension", "profile": [url]}],
        )

    def invariant(self, key: str, human: str, expression: str, severity: str = "error") -> Profile:
        self.invariants.append(
            {
                "key": key,
                "severity": severity,
                "human": human,
                "expression": expression,
                "source": self.url,
            }
        )
        return self

    @property
    def url(self) -> str:
        return term.profile_url(self.name)

    def resource(self, kind: str = "resource", context: Iterable[str] = ()) -> dict[str, Any]:
        """The StructureDefinition, its differential in the base type's element order."""
        if self.invariants:
            self.element("", constraint=self.invariants)
        elements = sorted(self.elements.values(), key=_element_order(self.base))
        sd: dict[str, Any] = {
            "resourceType": "StructureDefinition",
            "id": f"admsc-{self.name}" if kind == "resource" else self.name,
            "url": self.url if kind == "resource" else term.extension_url(self.name),
            "version": PACKAGE_VERSION,
            "name": f"Admsc{_camel(self.name)}" if kind == "resource" else _camel(self.name),
            "title": self.title,
            "status": STATUS,
            "date": DATE,
            "publisher": PUBLISHER,
            "description": self.description,
            "fhirVersion": term.FHIR_VERSION,
            "kind": "complex-type" if kind == "extension" else "resource",
            "abstract": False,
        }
        if kind == "extension":
            sd["context"] = [{"type": "element", "expression": c} for c in context]
        sd.update(
            {
                "type": self.base,
                "baseDefinition": CORE + self.base,
                "derivation": "constraint",
                "differential": {"element": elements},
            }
        )
        return sd


def _element_order(base: str):
    """Sort key: the element's place in the R4 base snapshot, slices right after their element."""
    order = {e.path: i for i, e in enumerate(r4.base_elements(base))}

    def key(element: dict[str, Any]) -> tuple:
        parts = element["id"].split(".")
        position = []
        for depth in range(1, len(parts) + 1):
            prefix = re.sub(r":[^.]+", "", ".".join(parts[:depth]))
            sliced = ":" in parts[depth - 1]
            position.append((order.get(prefix, len(order)), 1 if sliced else 0, parts[depth - 1]))
        return tuple(position)

    return key


def _coding(system: str, code: str) -> dict[str, str]:
    return {"system": system, "code": code}


def _own(concept: term.Concept) -> dict[str, Any]:
    return {"coding": [_coding(term.ADMSC, concept.code)]}


def _clinical(profile: Profile, subject: bool = True) -> Profile:
    """What every clinical resource carries: the study link, the identifier and the patient."""
    profile.extension(term.study_link_url(profile.base), "researchStudy", 1, "1")
    profile.reference("extension:researchStudy.value[x]", "ResearchStudy", min=1)
    _identified(profile)
    if subject:
        profile.reference("subject", "Patient", min=1)
    return profile


def _identified(profile: Profile) -> Profile:
    system = term.identifier_system(re.sub(r"(?<!^)(?=[A-Z])", "-", profile.base).lower())
    profile.require("identifier")
    return profile.invariant(
        f"admsc-{profile.name}-id",
        f"Has a business identifier of system {system}",
        f"identifier.where(system = {_fhirpath_string(system)} and value.exists()).exists()",
    )


def _measure_profile(measure: term.Measure, category: str) -> Profile:
    c = measure.concept
    p = Profile(
        c.code,
        "Observation",
        f"{c.display} (Observation)",
        f"An observation of {c.display.lower()} in the ADMSC study.",
    )
    _clinical(p)
    p.pattern(
        "category", "CodeableConcept", {"coding": [_coding(term.OBSERVATION_CATEGORY, category)]}
    )
    p.element("category", min=1, max="1")
    p.pattern("code", "CodeableConcept", _own(c))
    p.reference("encounter", "Encounter", min=1)
    p.element("effective[x]", min=1, type=[{"code": "dateTime"}])
    value = f"value.ofType({'integer' if measure.kind == 'integer' else 'Quantity'})"
    if measure.kind == "integer":
        p.element("value[x]", min=1, type=[{"code": "integer"}])
    elif measure.kind == "decimal":
        ucum, _ = measure.unit or ("1", "1")
        p.element(
            "value[x]",
            min=1,
            type=[{"code": "Quantity"}],
            patternQuantity={"system": term.UCUM, "code": ucum},
        )
        value += ".value"
    else:
        p.element("value[x]", min=1, type=[{"code": "CodeableConcept"}])
        p.bind("value[x]", term.value_set_url("presence"))
    if measure.kind != "presence":
        bounds = []
        if measure.minimum is not None:
            bounds.append(
                f"{value} {'>' if measure.minimum_exclusive else '>='} {measure.minimum:g}"
            )
        if measure.maximum is not None:
            bounds.append(f"{value} <= {measure.maximum:g}")
        p.invariant(
            f"admsc-{c.code}-range", f"{c.display} is {measure.expected()}", " and ".join(bounds)
        )
    if category == "imaging":
        p.element("bodySite", min=1)
        p.bind("bodySite", term.value_set_url("disc-levels"))
        p.reference("partOf", "ImagingStudy", min=1)
    return p


def profiles() -> list[Profile]:
    """Every profile of the project, one per kind of resource that export writes, family by
    family as the mappings are."""
    return [
        *_study_profiles(),
        *_subject_profiles(),
        *_procedure_profiles(),
        *_observation_profiles(),
        *_adverse_event_profiles(),
        *_imaging_profiles(),
    ]


def _study_profiles() -> list[Profile]:
    """The study, its sponsor and its sites."""
    out: list[Profile] = []

    p = Profile(
        "research-study",
        "ResearchStudy",
        "ADMSC research study",
        "The study: its identifier, status, arm, sponsor and sites.",
    )
    _identified(p)
    p.require("title", "arm")
    p.reference("sponsor", "Organization")
    p.reference("site", "Location")
    out.append(p)

    p = Profile(
        "sponsor", "Organization", "ADMSC study sponsor", "The organisation sponsoring the study."
    )
    _identified(p).require("name")
    out.append(p)

    p = Profile("site", "Location", "ADMSC study site", "A site where participants enrol.")
    _identified(p).require("name")
    out.append(p)
    return out


def _subject_profiles() -> list[Profile]:
    """A participant, their enrolment, index condition and visits."""
    out: list[Profile] = []

    p = Profile(
        "patient",
        "Patient",
        "ADMSC participant",
        "A pseudonymous study participant: gender and birth year only.",
    )
    _identified(p).require("gender")
    p.invariant(
        "admsc-patient-birth-year",
        "Only the year of birth is recorded",
        "birthDate.empty() or birthDate.toString().length() = 4",
    )
    p.element("name", max="0").element("telecom", max="0").element("address", max="0")
    out.append(p)

    p = Profile(
        "research-subject",
        "ResearchSubject",
        "ADMSC study enrolment",
        "A participant's enrolment in the study.",
    )
    p.extension("study-site", "studySite", 0, "1")
    p.extension("withdrawal-reason", "withdrawalReason", 0, "1")
    _identified(p)
    p.require("period", "period.start", "assignedArm")
    p.reference("study", "ResearchStudy")
    p.reference("individual", "Patient")
    p.invariant(
        "admsc-subject-withdrawn",
        "A withdrawn participant has a withdrawal date (period.end)",
        "status = 'withdrawn' implies period.end.exists()",
    )
    out.append(p)

    p = Profile(
        "condition",
        "Condition",
        "ADMSC index condition",
        "Discogenic low back pain at the participant's index disc.",
    )
    _clinical(p)
    p.extension("symptom-duration", "symptomDuration", 0, "1")
    p.require("clinicalStatus")
    p.pattern("code", "CodeableConcept", _own(term.LOW_BACK_PAIN))
    p.element("bodySite", min=1, max="1")
    p.bind("bodySite", term.value_set_url("disc-levels"))
    out.append(p)

    p = Profile("visit", "Encounter", "ADMSC study visit", "A scheduled visit of the study.")
    _clinical(p)
    p.element("type", min=1, max="1")
    p.bind("type", term.value_set_url("visits"))
    p.require("period", "period.start")
    out.append(p)
    return out


def _procedure_profile(name: str, concept_: term.Concept, title: str) -> Profile:
    """The profile of a harvest or (``name`` "injection") an injection procedure."""
    p = Profile(name, "Procedure", title, f"{concept_.display}.")
    _clinical(p)
    injection = name == "injection"
    p.extension("injection-number", "injectionNumber", int(injection), "1" if injection else "0")
    p.extension("repeat-of", "repeatOf", 0, "1" if injection else "0")
    p.extension("cell-dose", "cellDose", int(injection), "1" if injection else "0")
    p.extension("procedure-volume", "volume", 0, "1")
    p.extension("imaging-guidance", "guidance", 0, "1")
    p.extension("cell-product", "cellProduct", int(injection), "1" if injection else "0")
    p.pattern("code", "CodeableConcept", _own(concept_))
    p.element("performed[x]", min=1, type=[{"code": "dateTime"}])
    if injection:
        p.element("bodySite", min=1, max="1")
        p.bind("bodySite", term.value_set_url("disc-levels"))
        number = f"extension({_fhirpath_string(term.extension_url('injection-number'))}).value"
        repeat = f"extension({_fhirpath_string(term.extension_url('repeat-of'))}).value"
        p.invariant(
            "admsc-injection-repeat",
            "A repeat injection (number 2) names the first injection (repeat-of)",
            f"{number} = 2 implies {repeat}.exists()",
        )
        p.invariant(
            "admsc-injection-5-months",
            "A repeat injection is at least 5 months after the first",
            # all(): true when the first injection is not among the resources checked
            f"{repeat}.resolve().ofType(Procedure).all((performed as dateTime) + 5 months "
            "<= (%resource.performed as dateTime))",
        )
    return p


def _procedure_profiles() -> list[Profile]:
    """The harvest and injection procedures, the lipoaspirate and the cell product lot."""
    out = [
        _procedure_profile("harvest", term.HARVEST, "ADMSC adipose harvest"),
        _procedure_profile("injection", term.INJECTION, "ADMSC intradiscal injection"),
    ]

    p = Profile(
        "lipoaspirate",
        "Specimen",
        "ADMSC lipoaspirate",
        "The adipose tissue collected by a harvest.",
    )
    _clinical(p)
    p.pattern("type", "CodeableConcept", _own(term.LIPOASPIRATE))
    p.require("type", "collection", "collection.collected[x]")
    out.append(p)

    p = Profile(
        "cell-product",
        "BiologicallyDerivedProduct",
        "ADMSC cell product lot",
        "A lot of culture-expanded autologous adipose-derived MSC.",
    )
    _clinical(p, subject=False)
    p.extension("harvest-procedure", "harvestProcedure", 1, "1")
    p.extension("cell-viability", "cellViability", 0, "1")
    p.element("productCategory", min=1, patternCode="cells")
    p.pattern("productCode", "CodeableConcept", _own(term.ADMSC_PRODUCT))
    p.require("productCode", "collection", "collection.source")
    p.reference("collection.source", "Patient")
    out.append(p)
    return out


def _observation_profiles() -> list[Profile]:
    """Patient-reported outcomes, imaging findings and analgesic use."""
    out: list[Profile] = []

    for measure in term.OUTCOME_MEASURES.values():
        out.append(_measure_profile(measure, "survey"))
    for measure in term.IMAGING_FINDINGS.values():
        out.append(_measure_profile(measure, "imaging"))

    p = Profile(
        "analgesic-use",
        "MedicationStatement",
        "ADMSC analgesic use",
        "An analgesic a participant takes or stopped, as recorded at a visit.",
    )
    _clinical(p)
    p.extension("analgesic-category", "category", 1, "1")
    p.element("medication[x]", type=[{"code": "CodeableConcept"}])
    p.reference("context", "Encounter", min=1)
    p.element("effective[x]", min=1, type=[{"code": "dateTime"}])
    p.invariant(
        "admsc-analgesic-name",
        "The medication is named as recorded (text)",
        "medication.ofType(CodeableConcept).text.exists()",
    )
    out.append(p)
    return out


def _adverse_event_profiles() -> list[Profile]:
    """Adverse events."""
    out: list[Profile] = []

    p = Profile(
        "adverse-event",
        "AdverseEvent",
        "ADMSC adverse event",
        "An adverse event, its severity, seriousness, outcome and causality.",
    )
    ae_ext = {
        name: _fhirpath_string(term.extension_url(name))
        for name in ("ae-resolved-date", "ae-causality")
    }
    p.extension("ae-causality", "causality", 1, "1")
    p.extension("ae-resolved-date", "resolvedDate", 0, "1")
    p.extension("ae-expected", "expected", 0, "1")
    p.extension("ae-action-taken", "actionTaken", 0, "1")
    _identified(p)
    p.require("event", "event.text", "date", "seriousness", "severity", "outcome")
    p.reference("subject", "Patient")
    p.reference("suspectEntity.instance", "Procedure")
    p.element("study", min=1, max="1")
    p.reference("study", "ResearchStudy")
    p.invariant(
        "admsc-ae-resolution",
        "An adverse event does not resolve before it starts",
        # Compared as ISO-8601 text: the HL7 FHIRPath engine (the reference validator's, and the
        # IG Publisher's) implements neither toDate() nor toDateTime().
        f"extension({ae_ext['ae-resolved-date']}).exists() implies "
        f"extension({ae_ext['ae-resolved-date']}).value.toString() >= "
        "date.toString().substring(0, 10)",
    )
    p.invariant(
        "admsc-ae-after-procedure",
        "An adverse event does not start before the procedure suspected of causing it",
        "suspectEntity.instance.resolve().ofType(Procedure).all((performed as dateTime) "
        "<= %resource.date)",
    )
    out.append(p)
    return out


def _imaging_profiles() -> list[Profile]:
    """The lumbar MRI study and its report."""
    out: list[Profile] = []

    p = Profile("mri-study", "ImagingStudy", "ADMSC lumbar MRI study", "A lumbar spine MRI.")
    _clinical(p)
    p.element("modality", min=1, max="1", patternCoding=_coding(term.DICOM_DCM, "MR"))
    p.reference("encounter", "Encounter", min=1)
    p.require("started")
    p.pattern("procedureCode", "CodeableConcept", _own(term.LUMBAR_MRI))
    out.append(p)

    p = Profile(
        "mri-report",
        "DiagnosticReport",
        "ADMSC lumbar MRI report",
        "The report of a lumbar MRI with one Observation per finding.",
    )
    _clinical(p)
    p.pattern("category", "CodeableConcept", {"coding": [_coding(*term.RADIOLOGY[:2])]})
    p.pattern("code", "CodeableConcept", _own(term.LUMBAR_MRI))
    p.reference("encounter", "Encounter", min=1)
    p.element("effective[x]", min=1, type=[{"code": "dateTime"}])
    p.reference("result", "Observation")
    p.element("imagingStudy", min=1, max="1")
    p.reference("imagingStudy", "ImagingStudy")
    out.append(p)
    return out


def extension_definitions() -> list[dict[str, Any]]:
    """A StructureDefinition for every extension of the project."""
    out = []
    for ext in term.EXTENSIONS.values():
        p = Profile(ext.name, "Extension", ext.description, ext.description + ".")
        p.element("extension", max="0")
        p.element("url", fixedUri=ext.url)
        value: dict[str, Any] = {"min": 1, "type": [{"code": ext.value_type}]}
        if ext.target:
            value["type"][0]["targetProfile"] = [CORE + ext.target]
        if ext.unit:
            if ext.value_type == "Quantity":
                # (a Duration pattern without a value would break drt-1 in the definition itself;
                # the invariant below pins its unit instead)
                value["patternQuantity"] = {"system": term.UCUM, "code": ext.unit[0]}
            p.invariant(
                f"admsc-{ext.name}-unit",
                f"The value is a UCUM quantity in {ext.unit[0]}",
                f"value.all(system = {_fhirpath_string(term.UCUM)} and code = "
                f"{_fhirpath_string(ext.unit[0])} and value.exists() and value >= 0)",
            )
        p.element("value[x]", **value)
        if ext.value_set:
            p.bind("value[x]", term.value_set_url(ext.value_set))
        out.append(p.resource("extension", ext.contexts))
    return out


def code_system() -> dict[str, Any]:
    concepts = term.all_concepts()
    return {
        "resourceType": "CodeSystem",
        "id": "admsc",
        "url": term.ADMSC,
        "version": PACKAGE_VERSION,
        "name": "AdmscConcepts",
        "title": "ADMSC study concepts",
        "status": STATUS,
        "date": DATE,
        "publisher": PUBLISHER,
        "description": "Study-specific concepts of the ADMSC intradiscal cell-therapy study "
        "for which no verified standard code is used alone.",
        "caseSensitive": True,
        "content": "complete",
        "count": len(concepts),
        "concept": [{"code": c.code, "display": c.display} for c in concepts],
    }


def value_sets() -> list[dict[str, Any]]:
    out = []
    for name, (title, concepts) in term.VALUE_SETS.items():
        out.append(
            {
                "resourceType": "ValueSet",
                "id": name,
                "url": term.value_set_url(name),
                "version": PACKAGE_VERSION,
                "name": _camel(name),
                "title": title,
                "status": STATUS,
                "date": DATE,
                "publisher": PUBLISHER,
                "description": f"{title}, from the ADMSC study CodeSystem.",
                "compose": {
                    "include": [
                        {
                            "system": term.ADMSC,
                            "concept": [
                                {"code": c.code, "display": c.display} for c in concepts.values()
                            ],
                        }
                    ]
                },
            }
        )
    return out


def implementation_guide(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "ImplementationGuide",
        "id": IG_ID,
        "url": f"{term.CANONICAL_BASE}/ImplementationGuide/{IG_ID}",
        "version": PACKAGE_VERSION,
        "name": "FhirAdmsc",
        "title": "fhir-admsc: ADMSC cell-therapy study data in FHIR R4",
        "status": STATUS,
        "date": DATE,
        "publisher": PUBLISHER,
        "description": "Profiles, extensions and terminology for the data of an intradiscal "
        "adipose-derived MSC study: procedures, outcomes, adverse events, MRI.",
        "packageId": PACKAGE_NAME,
        "fhirVersion": [term.FHIR_VERSION],
        "definition": {
            "resource": [
                {
                    "reference": {"reference": f"{r['resourceType']}/{r['id']}"},
                    "name": r.get("title", r["id"]),
                    "exampleBoolean": False,
                }
                for r in resources
            ]
        },
    }


def build_resources() -> list[dict[str, Any]]:
    """Every conformance resource of the project, in a stable order, the IG last."""
    resources = [p.resource() for p in profiles()]
    resources += extension_definitions()
    resources += [code_system(), *value_sets()]
    return [*resources, implementation_guide(resources)]


def file_name(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}-{resource['id']}.json"


def resource_json(resource: dict[str, Any]) -> str:
    return json.dumps(resource, indent=2, ensure_ascii=False) + "\n"


def profiles_folder() -> Path:
    return Path(str(package_files.files("fhir_admsc") / "profiles"))


def load_resources(folder: Path | None = None) -> list[dict[str, Any]]:
    """The published conformance resources, as stored in ``profiles/``."""
    folder = folder or profiles_folder()
    return [json.loads(path.read_text(encoding="utf-8")) for path in sorted(folder.glob("*.json"))]


def npm_package(resources: list[dict[str, Any]], other: dict[str, str] | None = None) -> bytes:
    """A FHIR NPM package (``package.tgz``) of ``resources``, byte-identical run to run;
    ``other`` files (name: text) go in ``package/other``, where validators do not look."""
    manifest = {
        "name": PACKAGE_NAME,
        "version": PACKAGE_VERSION,
        "description": "Profiles and terminology of fhir-admsc (FHIR R4)",
        "canonical": term.CANONICAL_BASE,
        "fhirVersions": [term.FHIR_VERSION],
        "type": "IG",
        "author": PUBLISHER,
        "license": "CC0-1.0",
        "dependencies": {"hl7.fhir.r4.core": term.FHIR_VERSION},
    }
    index = {
        "index-version": 1,
        "files": [
            {
                k: v
                for k, v in {
                    "filename": file_name(r),
                    "resourceType": r["resourceType"],
                    "id": r["id"],
                    "url": r.get("url"),
                    "version": r.get("version"),
                    "kind": r.get("kind"),
                    "type": r.get("type"),
                }.items()
                if v is not None
            }
            for r in resources
        ],
    }
    files = {
        "package/package.json": json.dumps(manifest, indent=2) + "\n",
        "package/.index.json": json.dumps(index, indent=2) + "\n",
    }
    files.update({f"package/{file_name(r)}": resource_json(r) for r in resources})
    files.update({f"package/other/{name}": text for name, text in (other or {}).items()})
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, text in files.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def write_profiles(folder: Path) -> None:
    """Regenerate the published JSON files in ``folder`` from ``build_resources()``."""
    resources = build_resources()
    write_files(
        folder,
        {file_name(r): resource_json(r).encode() for r in resources},
        stale=[p.name for p in folder.glob("*.json")],
    )


if __name__ == "__main__":
    write_profiles(profiles_folder())
