"""`fhir-admsc view`: a ViewDefinition run over exported FHIR data, as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner

from fhir_admsc.cli import cli

PATIENTS = {
    "resourceType": "ViewDefinition",
    "resource": "Patient",
    "select": [
        {
            "column": [
                {"name": "key", "path": "getResourceKey()"},
                {"name": "participant", "path": "identifier.value.first()"},
                {"name": "sex", "path": "gender", "type": "code"},
                {"name": "born", "path": "birthDate", "type": "date"},
            ]
        }
    ],
}


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("exported")
    assert (
        run("export", "--demo", "--format", "ndjson", "-o", str(folder / "ndjson")).exit_code == 0
    )
    assert run("export", "--demo", "-o", str(folder / "bundle.json")).exit_code == 0
    return folder


def write_view(folder: Path, view: dict, name: str = "view.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(view), encoding="utf-8")
    return path


def test_a_view_over_an_ndjson_export_prints_csv(exported: Path, tmp_path: Path) -> None:
    result = run("view", str(write_view(tmp_path, PATIENTS)), str(exported / "ndjson"))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "key,participant,sex,born"
    assert len(lines) == 10  # the nine demo participants
    assert "ADMSC-FSO794/P01,female,1968" in result.stdout


def test_a_bundle_gives_the_rows_an_ndjson_folder_gives(exported: Path, tmp_path: Path) -> None:
    view = str(write_view(tmp_path, PATIENTS))
    from_folder = run("view", view, str(exported / "ndjson"))
    from_bundle = run("view", view, str(exported / "bundle.json"))
    assert from_bundle.exit_code == 0, from_bundle.output
    assert sorted(from_bundle.stdout.splitlines()) == sorted(from_folder.stdout.splitlines())


@pytest.mark.parametrize(
    ("fmt", "reader"),
    [("parquet", "read_parquet"), ("ndjson", "read_ndjson"), ("csv", "read_csv")],
)
def test_each_format_reads_back_to_the_same_rows(
    exported: Path, tmp_path: Path, fmt: str, reader: str
) -> None:
    out = tmp_path / f"patients.{fmt}"
    result = run(
        "view",
        str(write_view(tmp_path, PATIENTS)),
        str(exported / "ndjson"),
        "--format",
        fmt,
        "-o",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert f"wrote 9 rows of 4 columns to {out}" in result.stderr
    rows = duckdb.sql(f"SELECT participant, sex FROM {reader}('{out}') ORDER BY 1").fetchall()
    assert rows[0] == ("ADMSC-FSO794/P01", "female")
    assert len(rows) == 9


def test_a_view_that_is_not_json_names_the_file_and_line(exported: Path, tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"resource": "Patient",\n "select": [}', encoding="utf-8")
    result = run("view", str(path), str(exported / "ndjson"))
    assert result.exit_code == 1
    assert f"{path}: is not JSON (line 2" in result.stderr


def test_fhirpath_outside_the_subset_is_named_with_its_place(
    exported: Path, tmp_path: Path
) -> None:
    view = json.loads(json.dumps(PATIENTS))
    view["select"][0]["column"][2]["path"] = "gender.substring(0, 1)"
    result = run("view", str(write_view(tmp_path, view)), str(exported / "ndjson"))
    assert result.exit_code == 1
    assert "select[0].column[2]: substring() is not in the FHIRPath subset" in result.stderr
    assert "gender.substring(0, 1)" in result.stderr


def test_several_values_in_a_single_column_stop_the_view_and_write_nothing(
    exported: Path, tmp_path: Path
) -> None:
    view = {
        "resource": "Observation",
        "select": [{"column": [{"name": "code", "path": "code.coding.code"}]}],
    }
    out = tmp_path / "codes.csv"
    result = run("view", str(write_view(tmp_path, view)), str(exported / "ndjson"), "-o", str(out))
    assert result.exit_code == 1
    assert "column 'code' ('code.coding.code') gives several values" in result.stderr
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["view.json"]


def test_sql_prints_the_query_without_reading_data(tmp_path: Path) -> None:
    result = run("view", str(write_view(tmp_path, PATIENTS)), "--sql")
    assert result.exit_code == 0, result.output
    sql = result.stdout
    assert sql.startswith("SELECT row.* FROM (SELECT unnest(")
    assert "= 'Patient'" in sql
    connection = duckdb.connect()
    connection.execute("CREATE TABLE resources (resource JSON)")
    connection.execute(
        "INSERT INTO resources VALUES (?)",
        [json.dumps({"resourceType": "Patient", "id": "a", "gender": "other"})],
    )
    assert connection.execute(sql.rstrip().rstrip(";")).fetchall() == [("a", None, "other", None)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param([], "give the FHIR data to read", id="no source"),
        pytest.param(
            ["--format", "parquet"], "--format parquet on duckdb needs -o", id="parquet to stdout"
        ),
    ],
)
def test_usage_mistakes_exit_2(
    exported: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    source = [str(exported / "ndjson")] if args else []
    result = run("view", str(write_view(tmp_path, PATIENTS)), *source, *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_spark_writes_a_folder_of_part_files(exported: Path, tmp_path: Path, spark: Any) -> None:
    out = tmp_path / "patients"
    result = run(
        "view", str(write_view(tmp_path, PATIENTS)), str(exported / "ndjson"),
        "--engine", "spark", "--format", "parquet", "-o", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"wrote 9 rows of 4 columns to {out}" in result.stderr
    rows = duckdb.sql(f"SELECT participant, sex FROM read_parquet('{out}/*.parquet') ORDER BY 1")
    assert rows.fetchall()[0] == ("ADMSC-FSO794/P01", "female")
    again = run(
        "view", str(write_view(tmp_path, PATIENTS)), str(exported / "ndjson"),
        "--engine", "spark", "-o", str(out),
    )  # fmt: skip
    assert again.exit_code == 2
    assert "exists: Spark writes a new folder" in again.stderr


def test_a_spark_query_that_breaks_names_the_column_and_leaves_nothing(
    exported: Path, tmp_path: Path, spark: Any
) -> None:
    view = {
        "resource": "Observation",
        "select": [{"column": [{"name": "code", "path": "code.coding.code"}]}],
    }
    out = tmp_path / "codes"
    result = run(
        "view", str(write_view(tmp_path, view)), str(exported / "ndjson"),
        "--engine", "spark", "-o", str(out),
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "column 'code' ('code.coding.code') gives several values" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["view.json"]
