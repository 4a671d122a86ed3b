"""`fhir-admsc validate`: exit codes, formats (golden files) and what it reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest
from click.testing import CliRunner

from fhir_admsc.cli import cli
from tests.conftest import DATA
from tests.validation.corpus import demo

GOLDEN = DATA / "validation"


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def ndjson(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three resources, two of them broken, in input.ndjson in the working directory."""
    clean, female, pain = demo("patient", 0), demo("patient", 1), demo("nprs-average", 0)
    female["gender"] = "femme"
    pain["valueInteger"] = 11
    monkeypatch.chdir(tmp_path)
    path = Path("input.ndjson")
    path.write_text("".join(json.dumps(r) + "\n" for r in (clean, female, pain)))
    return path


@pytest.mark.parametrize(
    "fmt, golden",
    [
        ("text", "report.txt"),
        ("json", "report.json"),
        ("sarif", "report.sarif"),
        ("junit", "report.xml"),
    ],
)
def test_each_format_matches_its_golden_file(ndjson: Path, fmt: str, golden: str) -> None:
    result = run("validate", str(ndjson), "--format", fmt)
    assert result.exit_code == 1
    assert result.stdout == (GOLDEN / golden).read_text()
    assert "3 resources checked: 2 errors, 0 warnings" in result.stderr


def test_clean_export_exits_0(tmp_path: Path) -> None:
    out = tmp_path / "bundle.json"
    assert run("export", "--demo", "-o", str(out)).exit_code == 0
    result = run("validate", str(out))
    assert result.exit_code == 0, result.stdout
    assert "675 resources checked: 0 errors, 0 warnings" in result.stdout


def test_ndjson_export_folder_validates_clean(tmp_path: Path) -> None:
    assert run("export", "--demo", "--format", "ndjson", "-o", str(tmp_path)).exit_code == 0
    result = run("validate", str(tmp_path))
    assert result.exit_code == 0, result.stdout


def test_errors_name_file_and_line(ndjson: Path) -> None:
    lines = run("validate", str(ndjson)).stdout.splitlines()
    assert lines[0].startswith("input.ndjson:2: error: Patient.gender: ")
    assert lines[1].startswith("input.ndjson:3: error: Observation: ")


def test_bundle_entries_carry_their_line(tmp_path: Path) -> None:
    out = tmp_path / "bundle.json"
    run("export", "--demo", "-o", str(out))
    bundle = json.loads(out.read_text())
    bundle["entry"][3]["resource"]["gender"] = "femme"
    out.write_text(json.dumps(bundle, indent=2))
    text = out.read_text().splitlines()
    result = run("validate", str(out))
    line = int(result.stdout.split(":")[1])
    assert '"resource": {' in text[line - 1]
    assert (
        f"Bundle.entry[3].resource/*Patient/{bundle['entry'][3]['resource']['id']}*/.gender"
        in result.stdout
    )


def test_ig_profile_and_fail_on_warning(tmp_path: Path) -> None:
    """A profile brought with --ig and applied with --profile: its extensible binding gives a
    warning, which fails the run only with --fail-on warning."""
    ig = tmp_path / "ig"
    ig.mkdir()
    url = "https://example.org/fhir/StructureDefinition/coded-patient"
    (ig / "sd.json").write_text(
        json.dumps(
            {
                "resourceType": "StructureDefinition",
                "url": url,
                "name": "CodedPatient",
                "status": "draft",
                "kind": "resource",
                "abstract": False,
                "type": "Patient",
                "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
                "derivation": "constraint",
                "differential": {
                    "element": [
                        {
                            "id": "Patient.maritalStatus",
                            "path": "Patient.maritalStatus",
                            "min": 1,
                            "binding": {
                                "strength": "extensible",
                                "valueSet": "https://fhir-admsc.org/fhir/ValueSet/visits",
                            },
                        }
                    ]
                },
            }
        )
    )
    resource = demo("patient")
    resource["maritalStatus"] = {"coding": [{"system": "urn:example:x", "code": "single"}]}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(resource))
    common = ["validate", str(path), "--ig", str(ig), "--profile", url]
    result = run(*common)
    assert result.exit_code == 0, result.stdout
    assert (
        "warning: Patient.maritalStatus: 'urn:example:x#single' is not in the extensible"
        in result.stdout
    )
    assert run(*common, "--fail-on", "warning").exit_code == 1
    del resource["maritalStatus"]
    path.write_text(json.dumps(resource))
    result = run(*common)
    assert result.exit_code == 1
    assert "'maritalStatus' is required by profile CodedPatient" in result.stdout


def test_broken_json_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"resourceType": "Patient",\n  "id": }')
    result = run("validate", str(path))
    assert result.exit_code == 1
    assert f"{path}:2: fatal: $this: is not valid JSON" in result.stdout


def test_missing_input_and_bad_option(tmp_path: Path) -> None:
    result = run("validate", str(tmp_path / "nope.json"))
    assert result.exit_code == 2 and result.stdout == ""
    assert f"'{tmp_path / 'nope.json'}' does not exist" in result.stderr
    assert run("validate", "--format", "html", str(tmp_path)).exit_code == 2
    assert run("validate", "--ig", str(tmp_path / "nope.tgz"), str(tmp_path)).exit_code == 2


def test_report_to_file(ndjson: Path) -> None:
    result = run("validate", str(ndjson), "--format", "json", "-o", "out.json")
    assert result.exit_code == 1 and result.stdout == ""
    outcome = json.loads(Path("out.json").read_text())
    assert outcome["resourceType"] == "OperationOutcome" and len(outcome["issue"]) == 2


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda p: p.mkdir(), id="empty-folder"),
        pytest.param(lambda p: p.write_text(""), id="empty-ndjson"),
        pytest.param(lambda p: p.write_text("\n\n"), id="blank-ndjson"),
    ],
)
def test_nothing_to_check_is_an_error(make, tmp_path: Path) -> None:
    """A CI job whose artefact is missing or empty must not go green."""
    path = tmp_path / "artefact.ndjson"
    make(path)
    result = run("validate", str(path))
    assert result.exit_code == 1
    assert f"fatal: $this: no resources found in {path}" in result.stdout
    junit = run("validate", str(path), "--format", "junit")
    assert junit.exit_code == 1 and 'failures="1"' in junit.stdout


@pytest.fixture(scope="module")
def demo_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "demo.json"
    assert run("export", "--demo", "-o", str(path)).exit_code == 0
    return path


PROFILES = "https://fhir-admsc.org/fhir/StructureDefinition/"


def test_a_named_profile_applies_to_the_resources_of_its_type(demo_bundle: Path) -> None:
    patients = run("validate", str(demo_bundle), "--profile", PROFILES + "admsc-patient")
    assert patients.exit_code == 0, patients.stdout
    assert "0 errors" in patients.stderr
    pain = run("validate", str(demo_bundle), "--profile", PROFILES + "admsc-nprs-average")
    assert pain.exit_code == 1
    errors = [line for line in pain.stdout.splitlines() if ": error: " in line]
    assert errors
    # only Observations that are not average pain scores are held to the profile
    assert all("/*Observation/" in line for line in errors)
    assert not any("/*Observation/" not in line and "Bundle.entry" in line for line in errors)


def test_an_unknown_profile_url_is_one_usage_error(demo_bundle: Path) -> None:
    url = "https://example.org/StructureDefinition/nowhere"
    result = run("validate", str(demo_bundle), "--profile", url)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.count(url) == 1
    assert "no loaded package defines this profile" in result.stderr


def test_junit_counts_the_test_cases_it_holds(ndjson: Path) -> None:
    suite = ElementTree.fromstring(run("validate", str(ndjson), "--format", "junit").stdout)
    cases = suite.findall("testcase")
    assert int(suite.get("tests")) == len(cases) == 3
    assert int(suite.get("failures")) == len([c for c in cases if c.find("failure") is not None])


def test_the_summary_is_shown_once_when_stdout_and_stderr_are_one_terminal(ndjson: Path) -> None:
    command = [sys.executable, "-c", "from fhir_admsc.cli import main; main()"]
    together = subprocess.run(
        [*command, "validate", str(ndjson)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert together.returncode == 1
    assert together.stdout.decode().count("3 resources checked") == 1
    apart = subprocess.run([*command, "validate", str(ndjson)], capture_output=True, text=True)
    assert "3 resources checked" in apart.stdout and "3 resources checked" in apart.stderr


def test_an_undefined_extension_is_an_error_unless_its_domain_is_allowed(tmp_path: Path) -> None:
    patient = demo("patient", 0)
    patient["extension"] = [
        {"url": "https://ehr.example.net/fhir/ext/shoe-size", "valueInteger": 9}
    ]
    path = tmp_path / "patient.json"
    path.write_text(json.dumps(patient))
    refused = run("validate", str(path))
    assert refused.exit_code == 1
    assert "Patient.extension[0]: extension https://ehr.example.net/fhir/ext/shoe-size" in (
        refused.stdout
    )
    allowed = run("validate", str(path), "--extension-domain", "https://ehr.example.net/fhir/")
    assert allowed.exit_code == 0, allowed.stdout


def test_a_profile_nobody_loaded_is_a_warning(tmp_path: Path) -> None:
    patient = demo("patient", 0)
    patient["meta"] = {"profile": ["https://registry.example.net/StructureDefinition/p"]}
    path = tmp_path / "patient.json"
    path.write_text(json.dumps(patient))
    result = run("validate", str(path))
    assert result.exit_code == 0
    assert "warning" in result.stdout and "not loaded, so it was not checked" in result.stdout
    assert run("validate", str(path), "--fail-on", "warning").exit_code == 1
