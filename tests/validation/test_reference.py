"""The HL7 FHIR validator engine (org.hl7.fhir.validation through HAPI FHIR) as the reference: our
package loads in it, our exports conform to our profiles under it, and it agrees with our
validator on every case of the corpus, or the difference is recorded in KNOWN_DIFFERENCES with
which engine is wrong and why.

The reference runs offline (tests/reference/harness.py builds and runs it): one JVM start
validates the scaled export and the whole corpus, another the demo export.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from fhir_admsc.bundle import bundle
from fhir_admsc.conformance import PACKAGE_NAME, PACKAGE_VERSION, load_resources
from fhir_admsc.mappings import study_to_fhir
from fhir_admsc.study import Study
from tests.helpers import scaled_study
from tests.reference.harness import Reference, Run, errors
from tests.validation.corpus import CASES, Case, write_corpus
from tests.validation.sites import Site, element, our_sites

SCALE = 5  # copies of the demo study in the large export: about 3,400 resources
ENTRY_RESOURCE = re.compile(r"^Bundle\.entry\[\d+\]\.resource(/\*.*?\*/)?")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# Code systems of our exports that the reference cannot check offline: with no terminology server
# it has only the R4 definitions and our package. Their codes pass unchecked, and a
# CodeableConcept that has one of our codes beside them meets its binding through ours.
NOT_VALIDATED_OFFLINE = {
    "http://loinc.org": "LOINC: not in the FHIR definitions, served by a terminology server",
    "http://snomed.info/sct": "SNOMED CT: licensed, served by a terminology server",
}


class Known(NamedTuple):
    """A recorded difference: the elements where each engine reports errors, and why they differ."""

    ours: tuple[str, ...]
    reference: tuple[str, ...]
    why: str


OFFLINE = (
    "The reference cannot know it offline: with no terminology server it does not look codes up "
    "in {system} (see NOT_VALIDATED_OFFLINE), whereas ours checks the code's format ({check})"
)
KNOWN_DIFFERENCES: dict[str, Known] = {
    "profile-not-loaded": Known(
        (),
        ("Patient", "Patient.meta.profile"),
        "Ours is right by the HL7 validator's own test suite: it records a warning for a "
        "meta.profile nobody loaded (bb-obs-value-is-not-in-valueset, obs-temp, obs-fio2, "
        "bundle-profiles in FHIR/fhir-test-cases, see test_hl7_cases); the reference runs the "
        "engine through HAPI's FhirInstanceValidator, whose errorForUnknownProfiles makes it an "
        "error",
    ),
    "profile-reference-target": Known(
        ("AdverseEvent.suspectEntity.instance",),
        (),
        "As for base-reference-target: outside a Bundle the HL7 engine does not resolve Device/abc "
        "and so does not compare its type with the profile's targetProfile (Procedure)",
    ),
    "base-reference-target": Known(
        ("Observation.encounter",),
        (),
        "The reference cannot check it outside a Bundle: the HL7 engine compares a reference's "
        "target with targetProfile only once it has resolved the target (InstanceValidator."
        "checkReference), and Patient/... is not at hand; ours reads the type from the literal "
        "reference. Inside a Bundle the reference checks it (Reference_REF_BadTargetType)",
    ),
    "external-loinc-format": Known(
        ("Observation.code.coding.code",),
        (),
        OFFLINE.format(system="LOINC", check="97909-5 has the wrong check digit"),
    ),
    "external-snomed-format": Known(
        ("Condition.code.coding.code",),
        (),
        OFFLINE.format(system="SNOMED CT", check="279039008 fails the Verhoeff check"),
    ),
    "study-ae-before-first-procedure": Known(
        ("AdverseEvent.date",),
        (),
        "The reference cannot know it: a study rule of ours across resources "
        "(ae-after-first-procedure), in no profile",
    ),
}


@dataclass(frozen=True)
class Inputs:
    """The files of the shared reference run."""

    scaled: Path
    scaled_resources: int
    corpus: Path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, demo_study: Study) -> Inputs:
    folder = tmp_path_factory.mktemp("reference-inputs")
    study = scaled_study(demo_study, SCALE)
    resources = list(study_to_fhir(study))
    scaled = folder / "scaled.json"
    scaled.write_text(json.dumps(bundle(resources, "transaction", study.info.study_id)))
    write_corpus(folder / "corpus")
    return Inputs(scaled, len(resources), folder / "corpus")


@pytest.fixture(scope="module")
def reference_run(reference: Reference, inputs: Inputs) -> Run:
    """The scaled export and the whole corpus, through one JVM start, a file per core at a time."""
    return reference.run([inputs.scaled, inputs.corpus], threads=os.cpu_count() or 1)


def records_of(run: Run, file: Path) -> list[dict[str, Any]]:
    return [r for r in run.records if Path(r["file"]) == file]


def path_in_resource(record: dict[str, Any], issue: dict[str, Any]) -> str:
    """The reference's location of an issue from its resource's type on
    (``Bundle.entry[3].resource/*Observation/x*/.value`` is ``Observation.value``)."""
    location = issue["location"] or ""
    inside = ENTRY_RESOURCE.sub("", location)
    if "entry" in record or not location:
        return record["resource"].split("/")[0] + inside
    return location


def error_summary(records: list[dict[str, Any]]) -> list[str]:
    """Each distinct error once, resource ids left out: "count x location: [messageId] message"."""
    found: Counter[str] = Counter()
    for record in records:
        for issue in errors(record["issues"]):
            text = f"{path_in_resource(record, issue)}: [{issue['messageId']}] {issue['message']}"
            found[UUID.sub("<id>", text)] += 1
    return [f"{n} x {text}" for text, n in sorted(found.items())]


def test_our_package_loads_offline(reference_run: Run) -> None:
    resources = load_resources()
    structures = [r for r in resources if r["resourceType"] == "StructureDefinition"]
    assert reference_run.summary["package"] == {
        "name": PACKAGE_NAME,
        "version": PACKAGE_VERSION,
        "fhirVersion": "4.0.1",
        "files": len(resources),
        "indexed": len(resources),
        "snapshots": {"generated": len(structures), "failures": []},
    }
    assert reference_run.summary["network_attempts"] == []
    # The HL7 core refuses web access itself (ManagedWebAccess) and only logs it.
    assert "internet" not in reference_run.stderr


def test_what_the_reference_cannot_check_offline(reference_run: Run) -> None:
    assert sorted(reference_run.summary["code_systems_not_validated"]) == sorted(
        NOT_VALIDATED_OFFLINE
    )


def test_demo_export_conforms(
    reference_validate: Callable[[list[Path]], dict[str, list[dict[str, Any]]]],
    demo_study: Study,
    tmp_path: Path,
) -> None:
    resources = list(study_to_fhir(demo_study))
    path = tmp_path / "demo.json"
    path.write_text(json.dumps(bundle(resources, "transaction", demo_study.info.study_id)))
    issues = reference_validate([path])
    assert len(issues) == len(resources) + 1  # and the Bundle
    assert error_summary([{"resource": r, "issues": i} for r, i in issues.items()]) == []


def test_scaled_export_conforms(
    reference_run: Run, inputs: Inputs, record_property: Callable[[str, Any], None]
) -> None:
    records = records_of(reference_run, inputs.scaled)
    assert len(records) == inputs.scaled_resources + 1  # and the Bundle
    timing = next(f for f in reference_run.summary["files"] if Path(f["file"]) == inputs.scaled)
    record_property("reference_startup_ms", reference_run.summary["startup_ms"])
    record_property("reference_scaled_export_ms", timing["ms"])
    assert error_summary(records) == []


# The agreement table. Both engines' locations are normalised to element paths; the reference's
# errors that the clean cases also show are left out of the broken cases (the clean rows show
# them), so that each broken row compares what the case adds.


def related(a: str, b: str) -> bool:
    """The same element, or one inside the other: the HL7 engine reports a cardinality, slice,
    unknown-element or extension-context error at the element that holds it (``Observation``
    for ``Observation.encounter``), and a fixed value at the child that differs
    (``Procedure.extension.value.code`` for ``Procedure.extension.value``)."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def reference_sites(run: Run, corpus: Path, case: Case) -> frozenset[Site]:
    """Where the reference reports errors on the case, less those of the clean cases."""

    def key(record: dict[str, Any], issue: dict[str, Any]) -> tuple[str, str, str]:
        return record["resource"], path_in_resource(record, issue), str(issue["messageId"])

    clean = [c for c in CASES if c.kind == "clean"] if case.kind != "clean" else []
    baseline = {
        key(record, issue)
        for c in clean
        for record in records_of(run, corpus / f"{c.id}.json")
        for issue in errors(record["issues"])
    }
    return frozenset(
        Site(record["resource"], element(path_in_resource(record, issue)))
        for record in records_of(run, corpus / f"{case.id}.json")
        for issue in errors(record["issues"])
        if key(record, issue) not in baseline
    )


def agree(case: Case, ours: frozenset[Site], theirs: frozenset[Site]) -> bool:
    """A clean case, or one whose rule only warns: neither reports an error. A broken one: both
    report an error on the same resource and (related) element."""
    if case.kind == "clean" or case.severity != "error":
        return not ours and not theirs
    return any(
        o.resource == t.resource and related(o.element, t.element) for o in ours for t in theirs
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_reference_agrees_or_the_difference_is_known(
    case: Case, reference_run: Run, inputs: Inputs
) -> None:
    ours = our_sites(case.document(), keys=False)
    theirs = reference_sites(reference_run, inputs.corpus, case)
    known = KNOWN_DIFFERENCES.get(case.id)
    if known is None:
        said = error_summary(records_of(reference_run, inputs.corpus / f"{case.id}.json"))
        assert agree(case, ours, theirs), "\n".join(
            [f"ours: {sorted(ours)}", f"reference: {sorted(theirs)}", *said]
        )
    else:
        assert not agree(case, ours, theirs), "both now agree: remove the KNOWN_DIFFERENCES row"
        assert (sorted({s.element for s in ours}), sorted({s.element for s in theirs})) == (
            sorted(known.ours),
            sorted(known.reference),
        )
