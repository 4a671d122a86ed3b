"""`report` through the study's views (DuckDB, Spark) equals `report` through the reverse mappings:
the same outcome table, every figure, on the demo and on synthetic studies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fhir_admsc.cli import cli
from tests.helpers import synthetic_export


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo and synthetic studies of 9 and 300 participants: folders, NDJSON, Bundles."""
    folder = tmp_path_factory.mktemp("studies")
    found = {"demo-folder": Path(__file__).parents[2] / "fhir_admsc" / "demo"}
    assert run("export", "--demo", "-o", str(folder / "demo.json")).exit_code == 0
    assert run("export", "--demo", "--format", "ndjson", "-o", str(folder / "demo")).exit_code == 0
    found |= {"demo-bundle": folder / "demo.json", "demo-ndjson": folder / "demo"}
    for size in (9, 300):
        found[f"syn{size}-ndjson"] = synthetic_export(folder, size, seed=5)
        bundle = folder / f"syn{size}.json"
        assert run("export", str(folder / f"study{size}"), "-o", str(bundle)).exit_code == 0
        found[f"syn{size}-bundle"] = bundle
    return found


def report(source: Path, engine: str, fmt: str = "json") -> str:
    result = run("report", str(source), "--format", fmt, "--engine", engine, "-q")
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize(
    "source",
    ["demo-folder", "demo-bundle", "demo-ndjson", "syn9-ndjson", "syn9-bundle", "syn300-ndjson"],
)
def test_duckdb_gives_the_report_of_the_reverse_mappings(
    studies: dict[str, Path], source: str
) -> None:
    expected = report(studies[source], "python")
    assert '"participants": ' in expected
    assert report(studies[source], "duckdb") == expected


def test_the_demo_through_the_views_prints_the_papers_figures(studies: dict[str, Path]) -> None:
    text = report(studies["demo-bundle"], "duckdb", "text")
    assert "Average pain reduced (NPRS)                               7/9 (78%)" in text
    assert "Average pain reduced by 50% or more                       5/9 (56%)" in text


@pytest.mark.parametrize("source", ["demo-ndjson", "syn9-bundle"])
def test_the_html_report_is_the_same_every_figure(studies: dict[str, Path], source: str) -> None:
    assert report(studies[source], "duckdb", "html") == report(studies[source], "python", "html")


def test_spark_gives_the_report_of_the_reverse_mappings(
    studies: dict[str, Path], spark: Any
) -> None:
    assert report(studies["syn9-ndjson"], "spark") == report(studies["syn9-ndjson"], "python")


@pytest.mark.parametrize("engine", ["duckdb", "python"])
def test_a_reference_to_nothing_read_is_refused_by_both_paths(
    studies: dict[str, Path], tmp_path: Path, engine: str
) -> None:
    """Without the Encounters, the Observations' encounter references resolve to nothing: both
    paths refuse the input, naming the element, rather than report on what is left."""
    for path in studies["demo-ndjson"].iterdir():
        if path.name != "Encounter.ndjson":
            (tmp_path / path.name).write_bytes(path.read_bytes())
    result = run("report", str(tmp_path), "--engine", engine)
    assert result.exit_code == 1, result.output
    assert "Observation.encounter" in result.stderr
    assert "which is not among the resources read" in result.stderr
