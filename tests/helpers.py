"""Helpers of the tests: edit CSV tables of a scratch study folder, make synthetic exports."""

from __future__ import annotations

import csv
from pathlib import Path

from click.testing import CliRunner

from fhir_admsc.cli import cli


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def write_rows(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows([header, *rows])


def set_cell(folder: Path, file: str, index: int, column: str, value: str) -> int:
    """Set one cell of a table; returns the line number of that row (header is line 1)."""
    header, rows = read_rows(folder / file)
    rows[index][header.index(column)] = value
    write_rows(folder / file, header, rows)
    return index + 2


def scaled_study(study, copies: int):
    """``copies`` copies of a study's participants under new ids (P01 -> P01-003, and likewise
    procedure, lot, event and report ids): a large study that keeps every cross-table rule."""
    from fhir_admsc.study import TABLES, Study

    renamed = {
        "participant_id",
        "procedure_id",
        "product_lot",
        "harvest_procedure_id",
        "event_id",
        "suspected_procedure_id",
        "report_id",
    }
    tables: dict[str, list] = {}
    for attribute in (table.attribute for table in TABLES):
        rows = []
        for k in range(copies):
            for row in getattr(study, attribute):
                data = row.model_dump()
                for field in renamed & data.keys():
                    if data[field] is not None:
                        data[field] = f"{data[field]}-{k:03d}"
                rows.append(type(row).model_validate(data))
        tables[attribute] = rows
    return Study(info=study.info, **tables)


def table_differences(expected, actual) -> dict[str, tuple[list, list]]:
    """Rows missing from and extra in ``actual``, per table (row order aside); {} when equal."""
    from fhir_admsc.study import TABLES

    differences = {}
    if expected.info != actual.info:
        differences["study.json"] = ([expected.info], [actual.info])
    for attribute in (table.attribute for table in TABLES):
        want, got = getattr(expected, attribute), getattr(actual, attribute)
        missing = [r for r in want if r not in got]
        extra = [r for r in got if r not in want]
        if missing or extra or len(want) != len(got):
            differences[attribute] = (missing, extra)
    return differences


def synthetic_export(folder: Path, size: int, seed: int) -> Path:
    """A synthetic study of ``size`` participants written to ``folder``/study<size>, exported as
    an NDJSON folder beside it (returned)."""
    study = folder / f"study{size}"
    runner = CliRunner()
    made = runner.invoke(
        cli, ["synth", "--participants", str(size), "--seed", str(seed), "-o", str(study)]
    )
    assert made.exit_code == 0, made.output
    exported = runner.invoke(
        cli, ["export", str(study), "--format", "ndjson", "-o", f"{study}-ndjson"]
    )
    assert exported.exit_code == 0, exported.output
    return Path(f"{study}-ndjson")
