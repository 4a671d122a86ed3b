"""One way in: validate, push --dry-run and report read the same forms of FHIR input the same way
(a study folder, a Bundle, a JSON resource, an NDJSON file, folders of JSON, of NDJSON or of both)
and refuse the same ones with the same message."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from fhir_admsc.cli import cli
from fhir_admsc.errors import ExitCode
from fhir_admsc.inputs import read_fhir
from fhir_admsc.resources import fhir_files, read_documents
from fhir_admsc.synth import write_synthetic_study
from tests.servers import FhirServer

STUDY_ID = "ADMSC-INPUTS-1"


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("inputs") / "study"
    write_synthetic_study(folder, participants=2, seed=11, study_id=STUDY_ID)
    return folder


def _lines(resources: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in resources)


def _bundle(resources: list[dict], target: Path) -> Path:
    entries = [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources]
    target.write_text(
        json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries})
    )
    return target


def _ndjson_file(resources: list[dict], target: Path) -> Path:
    target.write_text(_lines(resources))
    return target


def _json_folder(resources: list[dict], target: Path) -> Path:
    target.mkdir()
    for i, r in enumerate(resources):
        (target / f"{i:04d}-{r['resourceType']}.json").write_text(json.dumps(r, indent=2))
    return target


def _ndjson_folder(resources: list[dict], target: Path) -> Path:
    target.mkdir()
    (target / "nested").mkdir()
    for kind in sorted({r["resourceType"] for r in resources}):
        # half the types one folder down: a folder is read with its subfolders
        where = target / "nested" if len(kind) % 2 else target
        (where / f"{kind}.ndjson").write_text(
            _lines([r for r in resources if r["resourceType"] == kind])
        )
    return target


def _mixed_folder(resources: list[dict], target: Path) -> Path:
    target.mkdir()
    half = len(resources) // 2
    (target / "first.ndjson").write_text(_lines(resources[:half]))
    for i, r in enumerate(resources[half:]):  # a Bundle would have to hold what it refers to
        (target / f"{i:04d}.json").write_text(json.dumps(r))
    (target / "README.txt").write_text("not FHIR: not read")
    return target


FORMS: dict[str, Callable[[list[dict], Path], Path] | None] = {
    "study-folder": None,
    "bundle": lambda rs, tmp: _bundle(rs, tmp / "bundle.json"),
    "json-resource": lambda rs, tmp: _write_json(rs[0], tmp / "one.json"),
    "ndjson-file": lambda rs, tmp: _ndjson_file(rs, tmp / "all.ndjson"),
    "json-folder": lambda rs, tmp: _json_folder(rs, tmp / "json"),
    "ndjson-folder": lambda rs, tmp: _ndjson_folder(rs, tmp / "ndjson"),
    "mixed-folder": lambda rs, tmp: _mixed_folder(rs, tmp / "mixed"),
}


def _write_json(resource: dict, target: Path) -> Path:
    target.write_text(json.dumps(resource))
    return target


@pytest.fixture(params=list(FORMS), ids=list(FORMS))
def source(request: pytest.FixtureRequest, study: Path, tmp_path: Path) -> tuple[str, Path]:
    make = FORMS[request.param]
    return request.param, study if make is None else make(read_fhir(study), tmp_path)


def _run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_every_form_reads_to_the_same_resources(study: Path, source: tuple[str, Path]) -> None:
    form, path = source
    expected = read_fhir(study)
    got = read_fhir(path)
    if form == "json-resource":
        assert got == expected[:1]
    else:
        assert sorted(got, key=json.dumps) == sorted(expected, key=json.dumps)


def test_validate_accepts_every_form(study: Path, source: tuple[str, Path]) -> None:
    form, path = source
    count = 1 if form == "json-resource" else len(read_fhir(study))
    result = _run("validate", path)
    assert result.exit_code == 0, result.output
    # a Bundle's own shell is checked too, but not counted as a resource
    assert f"{count} resource{'s' if count != 1 else ''} checked: 0 errors" in result.output


def test_report_reads_every_form_to_the_same_table(study: Path, source: tuple[str, Path]) -> None:
    form, path = source
    expected = _run("report", study, "--format", "json")
    assert expected.exit_code == 0, expected.output
    result = _run("report", path, "--format", "json")
    if form == "json-resource":  # one Patient is no study
        assert result.exit_code == ExitCode.INVALID_DATA, result.output
        assert "ResearchStudy" in result.output, result.output
        return
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads(expected.stdout)


def test_push_dry_run_plans_every_resource_of_every_form(
    sekmet_server: FhirServer, study: Path, source: tuple[str, Path]
) -> None:
    form, path = source
    count = 1 if form == "json-resource" else len(read_fhir(study))
    result = _run("push", path, "--server", sekmet_server.base_url, "--dry-run")
    planned = [line for line in result.stdout.splitlines() if line.startswith("create\t")]
    assert len(planned) == count, result.output
    assert result.exit_code == ExitCode.CHANGES_PENDING, result.output


EMPTY: dict[str, Callable[[Path], Path]] = {
    "empty-folder": lambda tmp: _mkdir(tmp / "empty"),
    "folder-without-fhir-files": lambda tmp: _with(_mkdir(tmp / "text"), "notes.txt", "hello"),
    "empty-ndjson-file": lambda tmp: _with(tmp, "empty.ndjson", "\n\n"),
    "empty-bundle": lambda tmp: _with(
        tmp, "empty.json", '{"resourceType": "Bundle", "type": "collection"}'
    ),
}


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _with(folder: Path, name: str, text: str) -> Path:
    (folder / name).write_text(text)
    return folder if name == "notes.txt" else folder / name


@pytest.mark.parametrize("make", list(EMPTY.values()), ids=list(EMPTY))
def test_every_command_refuses_an_input_without_resources(
    sekmet_server: FhirServer, tmp_path: Path, make: Callable[[Path], Path]
) -> None:
    path = make(tmp_path)
    commands = {
        "validate": ["validate", path],
        "push": ["push", path, "--server", sekmet_server.base_url, "--dry-run"],
        "report": ["report", path],
    }
    for name, args in commands.items():
        result = _run(*args)
        assert result.exit_code == ExitCode.INVALID_DATA, (name, result.output)
        assert f"no resources found in {path}" in result.output, (name, result.output)


def test_a_bad_file_is_named_alike_by_every_command(sekmet_server: FhirServer, tmp_path: Path):
    folder = _mkdir(tmp_path / "bad")
    (folder / "a.ndjson").write_text('{"resourceType": "Patient", "id": "p1"}\n{"resourceType"\n')
    where = f"{folder / 'a.ndjson'}:2"
    for args in (
        ["validate", folder],
        ["push", folder, "--server", sekmet_server.base_url, "--dry-run"],
        ["report", folder],
    ):
        result = _run(*args)
        assert result.exit_code == ExitCode.INVALID_DATA, (args[0], result.output)
        assert where in result.output and "is not valid JSON" in result.output, result.output


def test_folders_skip_hidden_files_and_read_subfolders(tmp_path: Path) -> None:
    folder = _mkdir(tmp_path / "f")
    (folder / ".out.json.tmp.json").write_text("{")  # a writer's temporary file
    _mkdir(folder / "sub")
    (folder / "sub" / "p.json").write_text('{"resourceType": "Patient", "id": "p"}')
    assert fhir_files(folder) == [folder / "sub" / "p.json"]
    assert [d.value["id"] for d in read_documents(folder)] == ["p"]
