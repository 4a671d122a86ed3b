"""The study's ViewDefinitions and table queries give the tables the reverse mappings give,
cell for cell, on the demo and on synthetic studies, from NDJSON folders and from Bundles."""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner

from fhir_admsc.cli import cli
from fhir_admsc.inputs import read_fhir
from fhir_admsc.mappings import study_from_fhir
from fhir_admsc.study import cell_text
from fhir_admsc.tables import TABLES
from fhir_admsc.views import duck
from fhir_admsc.views import spark as views_on_spark
from fhir_admsc.views.definition import check_view
from fhir_admsc.views.study import study_views, table_queries

# The Tabular ViewDefinition profile's primitive types (invariant primitives-only)
TABULAR_TYPES = {
    "base64Binary", "boolean", "canonical", "code", "dateTime", "decimal", "id", "instant",
    "integer", "integer64", "markdown", "oid", "string", "positiveInt", "time", "unsignedInt",
    "url", "uuid",
}  # fmt: skip


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo and a 40-participant synthetic study, each as an NDJSON folder and a Bundle."""
    folder = tmp_path_factory.mktemp("exports")
    assert (
        run("synth", "--participants", "40", "--seed", "3", "-o", str(folder / "syn")).exit_code
        == 0
    )
    found = {}
    for name, source in [("demo", ["--demo"]), ("synthetic", [str(folder / "syn")])]:
        for fmt in ("ndjson", "bundle"):
            out = folder / f"{name}-{fmt}" if fmt == "ndjson" else folder / f"{name}.json"
            more = ["--format", "ndjson"] if fmt == "ndjson" else []
            assert run("export", *source, *more, "-o", str(out)).exit_code == 0
            found[f"{name}-{fmt}"] = out
    return found


def _rows_as_text(rows: list[tuple]) -> list[tuple[str, ...]]:
    return sorted(tuple(cell_text(value) for value in row) for row in rows)


@pytest.mark.parametrize(
    "source", ["demo-ndjson", "demo-bundle", "synthetic-ndjson", "synthetic-bundle"]
)
def test_the_views_give_the_tables_of_the_reverse_mappings(
    exports: dict[str, Path], source: str
) -> None:
    path = exports[source]
    study = study_from_fhir(read_fhir(path))
    connection = duck.connect()
    relations = duck.load_files(connection, [path])
    # an export's NDJSON files hold one type each: each view reads only its type's files
    assert bool(relations) == source.endswith("ndjson")
    assert relations.get("Patient", "resources_Patient") == "resources_Patient"
    tables = duck.study_tables(connection, relations)
    assert set(tables) == {t.attribute for t in TABLES} | {"study"}
    assert tables["study"][1] == [(study.info.study_id, study.info.title)]
    for table in TABLES:
        columns, rows = tables[table.attribute]
        assert columns == list(table.columns), table.attribute
        expected = [
            tuple(cell_text(getattr(row, c)) for c in table.columns)
            for row in getattr(study, table.attribute)
        ]
        assert expected, f"{table.attribute}: the study has rows of every table"
        assert _rows_as_text(rows) == sorted(expected), table.attribute


def test_a_changed_resource_changes_the_table(exports: dict[str, Path], tmp_path: Path) -> None:
    """The comparison can fail: an outcome value edited in the NDJSON shows in the outcomes."""
    folder = tmp_path / "edited"
    folder.mkdir()
    for path in exports["demo-ndjson"].iterdir():
        text = path.read_text(encoding="utf-8")
        if path.name == "Observation.ndjson":
            text = text.replace('"valueInteger":7}', '"valueInteger":6}', 1)
        (folder / path.name).write_text(text, encoding="utf-8")
    connection = duck.connect()
    duck.load_files(connection, [exports["demo-ndjson"]])
    before = duck.study_tables(connection)["outcomes"][1]
    duck.load_files(connection, [folder])
    after = duck.study_tables(connection)["outcomes"][1]
    assert len(set(before) - set(after)) == 1
    assert (
        study_from_fhir(read_fhir(folder)).outcomes
        != study_from_fhir(read_fhir(exports["demo-ndjson"])).outcomes
    )


@pytest.mark.parametrize("name", sorted(study_views()))
def test_each_view_is_shareable_and_tabular(name: str) -> None:
    view = study_views()[name]
    check_view(view)
    assert view["url"].endswith(f"/ViewDefinition/{name}")
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", view["name"])
    assert view["fhirVersion"] == ["4.0.1"]

    def columns(select: dict) -> list[dict]:
        found = list(select.get("column", []))
        for inner in select.get("select", []) + select.get("unionAll", []):
            found += columns(inner)
        return found

    for column in (c for s in view["select"] for c in columns(s)):
        assert column["type"] in TABULAR_TYPES, column
        assert not column.get("collection", False), column


def test_views_writes_the_views_and_table_queries_that_run_elsewhere(
    exports: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "views"
    result = run("views", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "wrote 16 ViewDefinitions and 9 table queries" in result.stderr
    # each written view runs through the command line ...
    patients = run("view", str(out / "ViewDefinition-patients.json"), str(exports["demo-ndjson"]))
    assert patients.exit_code == 0, patients.output
    assert len(patients.stdout.splitlines()) == 10
    # ... and the table queries run in a plain DuckDB over the views' rows
    connection = duckdb.connect()
    for name in study_views():
        rows = out / f"{name}.parquet"
        written = run(
            "view", str(out / f"ViewDefinition-{name}.json"), str(exports["demo-ndjson"]),
            "--format", "parquet", "-o", str(rows),
        )  # fmt: skip
        assert written.exit_code == 0, written.output
        connection.execute(f"CREATE TABLE {name} AS SELECT * FROM read_parquet('{rows}')")
    sql = (out / "participants.sql").read_text(encoding="utf-8")
    assert sql == table_queries()["participants"] + ";\n"
    found = connection.execute(sql.rstrip().rstrip(";")).fetchall()
    assert len(found) == 9
    assert min(found)[:3] == ("P01", "female", 1968)


def test_the_npm_package_carries_the_views_where_validators_do_not_look(tmp_path: Path) -> None:
    result = run("profiles", "package", "-o", str(tmp_path / "package.tgz"))
    assert result.exit_code == 0, result.output
    assert "and the study's 16 ViewDefinitions" in result.stderr
    with tarfile.open(tmp_path / "package.tgz") as tar:
        names = tar.getnames()
        view = json.load(
            io.TextIOWrapper(tar.extractfile("package/other/ViewDefinition-patients.json"))
        )
    assert view == study_views()["patients"]
    assert not [n for n in names if n.startswith("package/ViewDefinition")]


def test_the_views_on_spark_give_the_tables_duckdb_gives(
    exports: dict[str, Path], spark: Any
) -> None:
    """The demo's NDJSON folder and the synthetic study's Bundle read together, once on each
    engine (Spark is slow to start a job: one pass covers both kinds of input)."""
    sources = [exports["demo-ndjson"], exports["synthetic-bundle"]]
    connection = duck.connect()
    duck.load_files(connection, sources)
    expected = duck.study_tables(connection)
    assert len(expected["participants"][1]) == 9 + 40
    views_on_spark.load_files(spark, sources)
    found = views_on_spark.study_tables(spark)
    assert found.keys() == expected.keys()
    for table, (columns, rows) in found.items():
        assert columns == expected[table][0], table
        assert _rows_as_text(rows) == _rows_as_text(expected[table][1]), table
