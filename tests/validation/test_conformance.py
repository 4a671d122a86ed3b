"""The project's conformance package: generated from the terminology table, published as JSON,
packaged for npm, and covering every profile that export claims."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from fhir_admsc import terminology as term
from fhir_admsc.cli import cli
from fhir_admsc.conformance import build_resources, load_resources, npm_package, resource_json
from fhir_admsc.views.study import view_files
from tests.validation.corpus import demo_resources


def test_published_files_are_what_the_generator_builds() -> None:
    built = {(r["resourceType"], r["id"]): resource_json(r) for r in build_resources()}
    published = {(r["resourceType"], r["id"]): resource_json(r) for r in load_resources()}
    assert built.keys() == published.keys(), "run: python -m fhir_admsc.conformance"
    for key, text in built.items():
        assert published[key] == text, f"{key} is stale: run python -m fhir_admsc.conformance"


def test_every_structure_definition_is_a_proper_r4_profile() -> None:
    structures = [r for r in load_resources() if r["resourceType"] == "StructureDefinition"]
    assert len(structures) > 40
    for sd in structures:
        assert sd["url"].startswith(term.CANONICAL_BASE)
        assert sd["baseDefinition"] == f"http://hl7.org/fhir/StructureDefinition/{sd['type']}"
        assert sd["fhirVersion"] == "4.0.1"
        assert sd["derivation"] == "constraint"
        assert sd["differential"]["element"], sd["id"]


def test_every_profile_that_export_claims_is_in_the_package() -> None:
    urls = {r["url"] for r in load_resources()}
    claimed = {p for r in demo_resources() for p in r["meta"]["profile"]}
    extensions = {e["url"] for r in demo_resources() for e in r.get("extension", [])}
    assert claimed <= urls
    assert {u for u in extensions if u.startswith(term.CANONICAL_BASE)} <= urls


def test_code_system_holds_every_project_code_used_by_export() -> None:
    (cs,) = [r for r in load_resources() if r["resourceType"] == "CodeSystem"]
    codes = {c["code"] for c in cs["concept"]}
    used = set()

    def walk(value):
        if isinstance(value, dict):
            if value.get("system") == term.ADMSC and "code" in value:
                used.add(value["code"])
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(list(demo_resources()))
    assert used and used <= codes


def test_npm_package_layout(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["profiles", "package", "-o", str(tmp_path / "p.tgz")])
    assert result.exit_code == 0, result.output
    data = (tmp_path / "p.tgz").read_bytes()
    assert data == npm_package(load_resources(), view_files()), (
        "package is not byte-identical run to run"
    )
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("package/package.json"))
        index = json.load(tar.extractfile("package/.index.json"))
    assert manifest["fhirVersions"] == ["4.0.1"]
    assert manifest["dependencies"] == {"hl7.fhir.r4.core": "4.0.1"}
    assert manifest["name"] and manifest["version"]
    other = {n for n in names if n.startswith("package/other/")}
    assert other == {f"package/other/{name}" for name in view_files()}
    assert {f"package/{f['filename']}" for f in index["files"]} == set(names) - other - {
        "package/package.json",
        "package/.index.json",
    }
    assert any(f["resourceType"] == "ImplementationGuide" for f in index["files"])


@pytest.mark.parametrize(
    "kind", ["StructureDefinition", "ValueSet", "CodeSystem", "ImplementationGuide"]
)
def test_package_has_each_kind_of_conformance_resource(kind: str) -> None:
    assert any(r["resourceType"] == kind for r in load_resources())
