"""Input limits: files, JSON documents, nesting depth and CSV tables beyond them are refused with
a message that names the file, the line and the limit, before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import responses
from click.testing import CliRunner, Result

from fhir_admsc.cli import cli
from fhir_admsc.fhir import FHIR_JSON
from tests.helpers import read_rows, set_cell

BASE = "https://fhir.example.test/r4"


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def nested(depth: int) -> str:
    """A JSON value ``depth`` arrays deep."""
    return "[" * depth + "]" * depth


def patient(**more) -> str:
    return json.dumps({"resourceType": "Patient", "id": "p1", **more})


@pytest.fixture
def bundle_file(tmp_path: Path) -> Path:
    path = tmp_path / "bundle.json"
    path.write_text(run("export", "--demo").stdout)
    return path


@pytest.mark.parametrize(
    ("command", "output"),
    [
        pytest.param(["export"], "out.json", id="export"),
        pytest.param(["push", "--dry-run", "--server", BASE], None, id="push"),
        pytest.param(["report"], "out.txt", id="report"),
    ],
)
def test_a_table_over_the_file_limit_is_not_read(
    study_dir: Path, tmp_path: Path, monkeypatch, command: list[str], output: str | None
) -> None:
    monkeypatch.setenv("FHIR_ADMSC_MAX_FILE_MB", "1")
    (study_dir / "outcomes.csv").write_bytes(b"x" * (1024 * 1024 + 1))  # not even CSV
    args = [command[0], study_dir, *command[1:]]
    result = run(*args, *(["-o", tmp_path / output] if output else []))
    assert result.exit_code == 1
    assert (
        f"{study_dir / 'outcomes.csv'}: is larger than the limit of 1 MB for one input file"
    ) in result.stderr
    assert "FHIR_ADMSC_MAX_FILE_MB" in result.stderr
    assert output is None or not (tmp_path / output).exists()


def test_an_ndjson_file_over_the_file_limit_is_not_validated(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FHIR_ADMSC_MAX_FILE_MB", "1")
    big = tmp_path / "Patient.ndjson"
    big.write_text((patient() + "\n") * 30_000)  # about 1.3 MB
    result = run("validate", big, "-o", tmp_path / "report.txt")
    assert result.exit_code == 1
    assert f"{big}: is larger than the limit of 1 MB for one input file" in result.stderr
    assert not (tmp_path / "report.txt").exists()


def test_the_demo_is_far_below_every_default_limit(bundle_file: Path) -> None:
    assert run("validate", bundle_file).exit_code == 0
    assert run("report", bundle_file).exit_code == 0


@pytest.mark.parametrize("command", ["validate", "report", "push"])
def test_a_bundle_over_the_json_document_limit_is_refused(
    bundle_file: Path, monkeypatch, command: str
) -> None:
    monkeypatch.setenv("FHIR_ADMSC_MAX_JSON_MB", "1")
    bundle = json.loads(bundle_file.read_text())
    bundle["entry"] *= 2  # the demo export is 0.8 MB
    bundle_file.write_text(json.dumps(bundle))
    extra = ["--dry-run", "--server", BASE] if command == "push" else []
    result = run(command, bundle_file, *extra)
    assert result.exit_code == 1
    assert f"{bundle_file}:1: is larger than the limit of 1 MB for one JSON document" in (
        result.stderr
    )


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param(patient(extension=json.loads(nested(64))), 3, id="65-levels"),
        pytest.param(
            patient()[:-1] + ', "extension": ' + nested(100_000) + "}", 3, id="beyond-parser"
        ),
        pytest.param("{" + '"a":{' * 64 + "}" * 65, 3, id="objects"),
    ],
)
@pytest.mark.parametrize("command", ["validate", "report"])
def test_an_ndjson_line_nested_too_deep_is_refused_with_its_line(
    tmp_path: Path, text: str, line: int, command: str
) -> None:
    path = tmp_path / "Patient.ndjson"
    path.write_text(f"{patient()}\n\n{text}\n")
    result = run(command, path)
    assert result.exit_code == 1
    assert f"{path}:{line}: nests deeper than the limit of 64 levels of JSON nesting" in (
        result.stderr
    )
    assert "FHIR_ADMSC_MAX_JSON_DEPTH" in result.stderr


def test_a_bundle_nested_too_deep_names_the_line_where_the_limit_is_passed(tmp_path: Path) -> None:
    entries = [{"resource": json.loads(patient(id=f"p{n}"))} for n in range(5)]
    entries[3]["resource"]["extension"] = [json.loads(nested(70))]
    path = tmp_path / "bundle.json"
    path.write_text(
        '{"resourceType": "Bundle", "type": "collection", "entry": [\n'
        + ",\n".join(json.dumps(e) for e in entries)
        + "\n]}\n"
    )
    result = run("validate", path)
    assert result.exit_code == 1
    assert f"{path}:5: nests deeper than the limit of 64 levels" in result.stderr


def test_the_depth_limit_can_be_raised(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "Patient.ndjson"
    path.write_text(patient(extension=json.loads(nested(70))) + "\n")
    assert "nests deeper" in run("validate", path).stderr
    monkeypatch.setenv("FHIR_ADMSC_MAX_JSON_DEPTH", "100")
    result = run("validate", path)
    assert result.exit_code == 1  # now read, and found to be no valid Patient
    assert "nests deeper" not in result.stderr
    assert "1 resource checked: 1 error" in result.stderr


@pytest.mark.parametrize(
    ("number", "message"),
    [
        pytest.param(
            "9" * 5000, "holds a number too long to read (more than 4300 digits)", id="digits"
        ),
        pytest.param("NaN", "holds NaN or an infinite number", id="nan"),
        pytest.param("-1e999", "holds NaN or an infinite number", id="overflow"),
    ],
)
@pytest.mark.parametrize("command", ["validate", "report", "push"])
def test_a_number_json_cannot_carry_is_refused(
    tmp_path: Path, command: str, number: str, message: str
) -> None:
    path = tmp_path / "Patient.ndjson"
    path.write_text(patient() + "\n" + patient()[:-1] + ', "x": ' + number + "}\n")
    extra = ["--server", BASE] if command == "push" else []
    result = run(command, path, *extra)
    assert result.exit_code == 1
    assert f"{path}:2: {message}" in result.stderr


def test_a_table_over_the_row_limit_is_refused(study_dir: Path, monkeypatch) -> None:
    _, participants = read_rows(study_dir / "participants.csv")
    monkeypatch.setenv("FHIR_ADMSC_MAX_CSV_ROWS", str(len(participants)))
    result = run("export", study_dir)
    assert result.exit_code == 1
    assert (
        f"{study_dir / 'visits.csv'}: has more rows than the limit of {len(participants)} rows "
        "for one table (set FHIR_ADMSC_MAX_CSV_ROWS to raise it)"
    ) in result.stderr
    assert "participants.csv" not in result.stderr  # exactly at the limit


def test_a_cell_over_the_csv_field_limit_names_its_line(study_dir: Path) -> None:
    line = set_cell(study_dir, "procedures.csv", 2, "notes", "n" * 200_000)
    result = run("export", study_dir)
    assert result.exit_code == 1
    assert (
        f"{study_dir / 'procedures.csv'}:{line}: is not valid CSV: field larger than field limit"
        in (result.stderr)
    )


@pytest.mark.parametrize("value", ["lots", "0", "-5", "1.5"])
@pytest.mark.parametrize(
    "variable",
    [
        "FHIR_ADMSC_MAX_FILE_MB",
        "FHIR_ADMSC_MAX_JSON_MB",
        "FHIR_ADMSC_MAX_JSON_DEPTH",
        "FHIR_ADMSC_MAX_CSV_ROWS",
    ],
)
def test_a_limit_that_is_not_a_positive_whole_number_is_a_usage_error(
    tmp_path: Path, monkeypatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    result = run("export", "--demo", "-o", tmp_path / "out.json")
    assert result.exit_code == 2
    assert f"{variable}={value!r} is not a whole number" in result.stderr
    assert not (tmp_path / "out.json").exists()


@responses.activate
@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": []}) + " " * 2**21,
            "is larger than the limit of 1 MB for one JSON document",
            id="larger",
        ),
        pytest.param(
            '{"resourceType": "CapabilityStatement", "rest": ' + nested(100_000) + "}",
            "nests deeper than the limit of 64 levels",
            id="deeper",
        ),
    ],
)
def test_a_server_answer_beyond_the_limits_is_refused(
    tmp_path: Path, monkeypatch, body: str, message: str
) -> None:
    monkeypatch.setenv("FHIR_ADMSC_MAX_JSON_MB", "1")
    responses.get(f"{BASE}/metadata", body=body, content_type=FHIR_JSON)
    result = run("pull", "--server", BASE, "--study", "S", "-o", tmp_path / "out")
    # the server's answer is at fault, not the study data: exit 4
    assert result.exit_code == 4
    assert f"GET {BASE}/metadata: the answer {message}" in result.stderr
    assert "to raise it)" in result.stderr
    assert not (tmp_path / "out").exists()
