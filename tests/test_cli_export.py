"""`fhir-admsc export`: outputs, formats, determinism, golden file, and honest failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fhir_admsc.cli import cli
from tests.conftest import DATA
from tests.helpers import set_cell

GOLDEN = DATA / "demo_transaction.json"


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_demo_export_matches_the_golden_file(tmp_path: Path) -> None:
    result = run("export", "--demo", "-o", str(tmp_path / "bundle.json"))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "exported 675 resources of ADMSC-FSO794" in result.stderr
    assert (tmp_path / "bundle.json").read_bytes() == GOLDEN.read_bytes()


def test_export_is_byte_identical_from_run_to_run_and_to_stdout(tmp_path: Path) -> None:
    first, second = run("export", "--demo"), run("export", "--demo")
    assert first.exit_code == second.exit_code == 0
    assert first.stdout == second.stdout == GOLDEN.read_text()


def test_export_does_not_depend_on_where_the_folder_is(study_dir: Path) -> None:
    result = run("export", str(study_dir))
    assert result.exit_code == 0
    assert result.stdout == GOLDEN.read_text()


def test_transaction_upserts_every_resource() -> None:
    bundle = json.loads(run("export", "--demo").stdout)
    assert bundle["type"] == "transaction"
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert entry["request"] == {
            "method": "PUT",
            "url": f"{resource['resourceType']}/{resource['id']}",
        }
        assert entry["fullUrl"] == f"urn:uuid:{resource['id']}"


def test_collection_bundle_has_no_requests() -> None:
    result = run("export", "--demo", "--format", "collection")
    bundle = json.loads(result.stdout)
    assert bundle["type"] == "collection"
    assert len(bundle["entry"]) == 675
    assert all("request" not in entry for entry in bundle["entry"])


def test_ndjson_writes_one_file_per_type(tmp_path: Path) -> None:
    out = tmp_path / "ndjson"
    out.mkdir()
    (out / "Stale.ndjson").write_text("{}\n")
    (out / "notes.txt").write_text("kept")
    result = run("export", "--demo", "--format", "ndjson", "-o", str(out))
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert "Stale.ndjson" not in names and "notes.txt" in names
    counts = {p.stem: len(p.read_text().splitlines()) for p in out.glob("*.ndjson")}
    assert counts["Observation"] == 468 and counts["Patient"] == 9
    assert sum(counts.values()) == 675
    golden = json.loads(GOLDEN.read_text())
    first_patient = next(
        e["resource"] for e in golden["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    assert json.loads((out / "Patient.ndjson").read_text().splitlines()[0]) == first_patient


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([], id="neither-dir-nor-demo"),
        pytest.param(["--demo", "somewhere"], id="both-dir-and-demo"),
        pytest.param(["--demo", "--format", "ndjson"], id="ndjson-without-output"),
        pytest.param(["--demo", "--format", "xml"], id="unknown-format"),
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = run("export", *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Error" in result.stderr


def test_bad_input_exits_1_and_writes_nothing(study_dir: Path, tmp_path: Path) -> None:
    line = set_cell(study_dir, "outcomes.csv", 3, "value", "eleven")
    out = tmp_path / "bundle.json"
    result = run("export", str(study_dir), "-o", str(out))
    assert result.exit_code == 1
    assert f"outcomes.csv:{line}: column 'value': 'eleven' is not a number" in result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()
    assert list(tmp_path.glob("*.tmp")) == [] and list(tmp_path.glob(".*")) == []


def test_bad_input_leaves_an_earlier_output_untouched(study_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle.json"
    out.write_text("earlier")
    set_cell(study_dir, "visits.csv", 0, "visit_date", "yesterday")
    assert run("export", str(study_dir), "-o", str(out)).exit_code == 1
    assert out.read_text() == "earlier"


def test_unwritable_output_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    result = run("export", "--demo", "-o", str(tmp_path / "file" / "bundle.json"))
    assert result.exit_code == 2
    assert "Traceback" not in result.output and str(tmp_path / "file") in result.stderr
