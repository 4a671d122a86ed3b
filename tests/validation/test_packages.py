"""`--ig` packages: a .tgz, a folder or name#version from the FHIR package cache; dependencies
from the other packages or the cache, a missing one named once; a hostile package is data, never
code: nothing written, links not followed, limits kept, and a clear error naming the member."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fhir_admsc.cli import cli
from fhir_admsc.errors import ConfigurationError
from fhir_admsc.validation.packages import load_package, load_packages
from fhir_admsc.validation.run import validate_paths

BASE = "https://registry.example.net/fhir/StructureDefinition/"


def _profile(name: str, parent: str = "http://hl7.org/fhir/StructureDefinition/Patient") -> dict:
    return {
        "resourceType": "StructureDefinition",
        "url": BASE + name,
        "name": name,
        "status": "active",
        "kind": "resource",
        "abstract": False,
        "type": "Patient",
        "baseDefinition": parent,
        "derivation": "constraint",
        "differential": {
            "element": [{"id": "Patient.birthDate", "path": "Patient.birthDate", "min": 1}]
        },
    }


def _manifest(name: str, dependencies: dict[str, str] | None = None) -> dict[str, Any]:
    return {"name": name, "version": "1.0.0", "dependencies": dependencies or {}}


def _tgz(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return path


def _cached(cache: Path, name: str, resources: list[dict], dependencies=None) -> None:
    folder = cache / f"{name}#1.0.0" / "package"
    folder.mkdir(parents=True)
    (folder / "package.json").write_text(json.dumps(_manifest(name, dependencies)))
    for r in resources:
        (folder / f"StructureDefinition-{r['name']}.json").write_text(json.dumps(r))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "fhir-cache"
    folder.mkdir()
    monkeypatch.setenv("FHIR_PACKAGE_CACHE", str(folder))
    return folder


def _patient(tmp_path: Path, profile: str) -> Path:
    path = tmp_path / "patient.json"
    path.write_text(
        json.dumps({"resourceType": "Patient", "id": "p", "meta": {"profile": [BASE + profile]}})
    )
    return path


def test_a_package_from_the_cache_by_name_and_version(cache: Path, tmp_path: Path) -> None:
    _cached(cache, "example.registry", [_profile("with-birth-date")])
    issues, _ = validate_paths([_patient(tmp_path, "with-birth-date")], ["example.registry#1.0.0"])
    assert [i.location for i in issues if i.severity == "error"] == ["Patient.birthDate"]
    with pytest.raises(ConfigurationError, match="not in the FHIR package cache"):
        load_package("example.registry#2.0.0")


def test_dependencies_come_from_the_cache_and_a_missing_one_is_named_once(
    cache: Path, tmp_path: Path
) -> None:
    _cached(cache, "example.base", [_profile("with-birth-date")])
    derived = _profile("derived", parent=BASE + "with-birth-date")
    derived["differential"] = {
        "element": [{"id": "Patient.gender", "path": "Patient.gender", "min": 1}]
    }
    package = _tgz(
        tmp_path / "derived.tgz",
        {
            "package/package.json": json.dumps(
                _manifest(
                    "example.derived",
                    {"example.base": "1.0.0", "example.gone": "3.1.0", "hl7.fhir.r4.core": "4.0.1"},
                )
            ).encode(),
            "package/StructureDefinition-derived.json": json.dumps(derived).encode(),
        },
    )
    loaded = load_packages([package])
    assert {r["url"] for r in loaded.resources} == {BASE + "derived", BASE + "with-birth-date"}
    assert len(loaded.notes) == 1 and "needs example.gone#3.1.0" in loaded.notes[0]
    issues, _ = validate_paths([_patient(tmp_path, "derived")], [package])
    errors = sorted(i.location for i in issues if i.severity == "error")
    assert errors == [
        "Patient.birthDate",
        "Patient.gender",
    ]  # the base profile from the cache applies
    warnings = [i for i in issues if i.severity == "warning" and "example.gone" in i.message]
    assert len(warnings) == 1


def test_the_cli_takes_name_and_version(cache: Path, tmp_path: Path) -> None:
    _cached(cache, "example.registry", [_profile("with-birth-date")])
    patient = _patient(tmp_path, "with-birth-date")
    result = CliRunner().invoke(cli, ["validate", str(patient), "--ig", "example.registry#1.0.0"])
    assert result.exit_code == 1 and "Patient.birthDate" in result.stdout
    missing = CliRunner().invoke(cli, ["validate", str(patient), "--ig", "nowhere#1.0.0"])
    assert missing.exit_code == 2 and "nowhere#1.0.0" in missing.stderr


def test_a_hostile_package_is_read_as_data(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    package = _tgz(
        tmp_path / "hostile.tgz",
        {
            "package/package.json": json.dumps(_manifest("hostile")).encode(),
            "../../outside/escaped.json": json.dumps(_profile("escaped")).encode(),
            "/abs/escaped2.json": json.dumps(_profile("escaped2")).encode(),
        },
        links={
            "package/linked.json": "/etc/passwd",
            "package/up.json": "../../outside/escaped.json",
        },
    )
    loaded = load_package(package)
    assert {r["name"] for r in loaded.resources} == {"escaped", "escaped2"}  # read, never written
    assert list(outside.iterdir()) == []
    assert not Path("/abs").exists()


@pytest.mark.parametrize(
    "member, limit, expected",
    [
        (b"[" * 200 + b"]" * 200, None, "levels of JSON nesting"),
        (
            b'{"resourceType": "StructureDefinition", "text": "' + b"x" * (2 * 1024 * 1024) + b'"}',
            "1",
            "MB for one input file",
        ),
        (b"{not json", None, "not valid JSON"),
    ],
)
def test_a_hostile_member_is_a_clear_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, member: bytes, limit: str | None, expected: str
) -> None:
    if limit:
        monkeypatch.setenv("FHIR_ADMSC_MAX_FILE_MB", limit)
    package = _tgz(tmp_path / "p.tgz", {"package/bad.json": member})
    with pytest.raises(ConfigurationError, match=expected) as caught:
        load_package(package)
    assert "p.tgz:package/bad.json" in str(caught.value)


def test_not_a_package(tmp_path: Path) -> None:
    path = tmp_path / "p.tgz"
    path.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(ConfigurationError, match="not a FHIR package"):
        load_package(path)


def test_a_folder_package_does_not_follow_links(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "StructureDefinition-x.json").write_text(json.dumps(_profile("x")))
    folder = tmp_path / "ig"
    folder.mkdir()
    (folder / "StructureDefinition-y.json").write_text(json.dumps(_profile("y")))
    (folder / "linked.json").symlink_to(secret / "StructureDefinition-x.json")
    (folder / "linked-folder").symlink_to(secret, target_is_directory=True)
    assert {r["name"] for r in load_package(folder).resources} == {"y"}
