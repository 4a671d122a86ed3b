"""Study tables as Excel saves them: what reads like the contract exports as the demo does, and
every other form is refused with its cause and remedy, the file, line and column, and nothing
written, by the whole-study export and the streamed one alike."""

from __future__ import annotations

import codecs
import csv
import io
import re
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fhir_admsc.cli import cli
from fhir_admsc.study import TABLES
from fhir_admsc.synth import write_synthetic_study
from tests.conftest import DATA
from tests.helpers import read_rows

GOLDEN = DATA / "demo_transaction.json"

# Excel's "Save as type" choices: the separator and the encoding of what each one writes (with
# ';' for "CSV (Comma delimited)" where the region's list separator is ';'), always with CRLF.
CSV_UTF8 = (",", "utf-8-sig")
CSV_WINDOWS = (",", "cp1252")
CSV_SEMICOLON_LOCALE = (";", "cp1252")
TEXT_TAB_DELIMITED = ("\t", "cp1252")
UNICODE_TEXT = ("\t", "utf-16")

SAVE_AS_CSV_UTF8 = 'save it from Excel as "CSV UTF-8 (Comma delimited)"'


def save_as(path: Path, form: tuple[str, str], rows: list[list[str]] | None = None) -> None:
    """Rewrite a table as Excel saves it in ``form``; ``rows`` (header first) replace its rows."""
    if rows is None:
        header, body = read_rows(path)
        rows = [header, *body]
    separator, encoding = form
    text = io.StringIO()
    csv.writer(text, delimiter=separator, lineterminator="\r\n").writerows(rows)
    if encoding == "utf-16":  # "Unicode Text": little-endian, with a BOM
        path.write_bytes(codecs.BOM_UTF16_LE + text.getvalue().encode("utf-16-le"))
    else:
        path.write_bytes(text.getvalue().encode(encoding))


def edited(path: Path, index: int, column: str, value: str) -> list[list[str]]:
    """The rows of a table (header first) with one cell changed."""
    header, rows = read_rows(path)
    rows[index][header.index(column)] = value
    return [header, *rows]


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


EXPORTS = [pytest.param("bundle", id="bundle"), pytest.param("ndjson", id="ndjson-streamed")]


def export(folder: Path, out: Path, how: str, *more: str) -> Result:
    """``export`` of ``folder`` into the empty folder ``out``: a Bundle, or NDJSON files."""
    out.mkdir(exist_ok=True)
    if how == "bundle":
        return run("export", folder, "-o", out / "bundle.json", *more)
    return run("export", folder, "--format", "ndjson", "-o", out / "ndjson", *more)


def refused(result: Result, out: Path) -> list[str]:
    """The problems listed by a failed export that wrote no file."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert [p for p in out.rglob("*") if not p.is_dir()] == []
    lines = result.stderr.splitlines()
    assert lines[0].startswith("Error: ") and lines[0].endswith(" in the study data"), lines
    return [line.removeprefix("  ") for line in lines[1:]]


def midnight(cell: str, row: int) -> str:
    """A date cell as Excel writes a date-and-time cell at midnight, in each of its forms."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", cell):
        return cell
    return cell + [" 00:00:00", " 00:00", "T00:00:00"][row % 3]


@pytest.mark.parametrize("how", EXPORTS)
def test_csv_utf8_with_excel_booleans_midnight_dates_and_empty_rows_exports_as_the_demo(
    study_dir: Path, tmp_path: Path, how: str
) -> None:
    for table in TABLES:
        header, rows = read_rows(study_dir / table.file)
        rows = [
            [midnight(cell, n).replace("true", "TRUE").replace("false", "False") for cell in row]
            for n, row in enumerate(rows)
        ]
        empty = [[""] * len(header)] * 3  # Excel writes them for cleared rows still formatted
        save_as(study_dir / table.file, CSV_UTF8, [header, *rows, *empty])
    assert (study_dir / "participants.csv").read_bytes().startswith(codecs.BOM_UTF8 + b"partic")
    assert b"TRUE" in (study_dir / "adverse_events.csv").read_bytes()
    assert b"2017-06-05 00:00:00,L4-L5" in (study_dir / "participants.csv").read_bytes()
    assert (study_dir / "visits.csv").read_bytes().endswith(b"\r\n,,\r\n,,\r\n,,\r\n")

    result = export(study_dir, tmp_path / "out", how)
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("exported 675 resources of ADMSC-FSO794")
    if how == "bundle":
        assert (tmp_path / "out" / "bundle.json").read_bytes() == GOLDEN.read_bytes()
    else:
        assert export_of_the_demo(tmp_path) == files_in(tmp_path / "out" / "ndjson")


def export_of_the_demo(tmp_path: Path) -> dict[str, bytes]:
    assert run("export", "--demo", "--format", "ndjson", "-o", tmp_path / "demo").exit_code == 0
    return files_in(tmp_path / "demo")


def files_in(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("how", EXPORTS)
def test_a_workbook_named_as_a_table_is_refused_with_the_remedy(
    study_dir: Path, tmp_path: Path, how: str
) -> None:
    path = study_dir / "visits.csv"
    with zipfile.ZipFile(path, "w") as workbook:  # an .xlsx is a ZIP of XML parts
        workbook.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        workbook.writestr("xl/media/logo.png", bytes(range(256)))
    result = export(study_dir, tmp_path / "out", how)
    assert refused(result, tmp_path / "out") == [
        f"{path}: is a spreadsheet workbook, not text: {SAVE_AS_CSV_UTF8}"
    ]


@pytest.mark.parametrize(
    ("file", "form", "expected"),
    [
        pytest.param(
            "participants.csv",
            CSV_SEMICOLON_LOCALE,
            ":1: uses ';' as its separator, not ',': save it as CSV (comma delimited) with ',' "
            "between cells (in Excel: set the list separator of the computer's region settings "
            "to ',' first)",
            id="semicolon-separated",
        ),
        pytest.param(
            "visits.csv",
            TEXT_TAB_DELIMITED,
            f":1: uses tabs as its separator, not ',': {SAVE_AS_CSV_UTF8}",
            id="tab-separated",
        ),
        pytest.param(
            "outcomes.csv",
            UNICODE_TEXT,
            f': is UTF-16 text (Excel\'s "Unicode Text"), not UTF-8: {SAVE_AS_CSV_UTF8}',
            id="unicode-text",
        ),
    ],
)
@pytest.mark.parametrize("how", EXPORTS)
def test_a_table_excel_did_not_save_as_csv_utf8_is_refused_with_the_remedy(
    study_dir: Path, tmp_path: Path, how: str, file: str, form: tuple[str, str], expected: str
) -> None:
    save_as(study_dir / file, form)
    result = export(study_dir, tmp_path / "out", how)
    assert refused(result, tmp_path / "out") == [f"{study_dir / file}{expected}"]


@pytest.mark.parametrize(
    ("file", "index", "column", "value", "line"),
    [
        pytest.param(
            "adverse_events.csv", 0, "term", "douleur après l’injection", 2, id="adverse-event"
        ),
        pytest.param("participants.csv", 4, "withdrawal_reason", "déménagé", 6, id="participant"),
        pytest.param("medications.csv", 0, "medication", "Novalgin® Tropfen", 2, id="medication"),
    ],
)
@pytest.mark.parametrize("how", EXPORTS)
def test_windows_1252_is_named_with_the_line_and_column_of_the_first_such_cell(
    study_dir: Path,
    tmp_path: Path,
    how: str,
    file: str,
    index: int,
    column: str,
    value: str,
    line: int,
) -> None:
    rows = edited(study_dir / file, index, column, value)
    rows[-1][rows[0].index(column)] = "später"  # only the first one is named
    save_as(study_dir / file, CSV_WINDOWS, rows)
    result = export(study_dir, tmp_path / "out", how)
    assert refused(result, tmp_path / "out") == [
        f"{study_dir / file}:{line}: column '{column}': '{value}' is not UTF-8 text (the file "
        f'looks like Windows-1252, as Excel\'s "CSV (Comma delimited)" saves it): '
        f"{SAVE_AS_CSV_UTF8}"
    ]


@pytest.mark.parametrize(
    ("encode", "expected"),
    [
        pytest.param(
            lambda text: text.encode("cp1252"),
            ":3: is not UTF-8 text (the file looks like Windows-1252): save it as UTF-8",
            id="windows-1252",
        ),
        pytest.param(
            lambda text: text.encode("utf-16"),
            ": is UTF-16 text, not UTF-8: save it as UTF-8",
            id="utf-16",
        ),
    ],
)
@pytest.mark.parametrize("how", EXPORTS)
def test_study_json_not_in_utf8_is_named_with_the_remedy(
    study_dir: Path, tmp_path: Path, how: str, encode, expected: str
) -> None:
    path = study_dir / "study.json"
    text = path.read_text(encoding="utf-8").replace("SYNTHETIC demonstration", "Étude SYNTHETIC")
    assert text.splitlines()[2].startswith('  "title": "Étude')
    path.write_bytes(encode(text))
    result = export(study_dir, tmp_path / "out", how)
    assert refused(result, tmp_path / "out") == [f"{path}{expected}"]


DAY_MONTH = (
    "is not a date in the form YYYY-MM-DD (the order of day and month in such dates is not "
    "certain): format the column as yyyy-mm-dd in Excel (Format Cells, Custom) before saving"
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("05/06/2017", DAY_MONTH, id="slashes"),
        pytest.param("5/6/2017", DAY_MONTH, id="slashes-no-zeros"),
        pytest.param("05.06.2017", DAY_MONTH, id="dots"),
        pytest.param("05-06-2017", DAY_MONTH, id="hyphens"),
        pytest.param(
            "2017-06-05 14:30:00",
            "has a time of day: expected a date only (YYYY-MM-DD)",
            id="time-of-day",
        ),
        pytest.param(
            "2017-06-05T00:00:01",
            "has a time of day: expected a date only (YYYY-MM-DD)",
            id="a-second-after-midnight",
        ),
    ],
)
@pytest.mark.parametrize("how", EXPORTS)
def test_dates_that_are_not_dates_only_are_refused_never_guessed(
    study_dir: Path, tmp_path: Path, how: str, value: str, expected: str
) -> None:
    path = study_dir / "participants.csv"
    save_as(path, CSV_UTF8, edited(path, 2, "enrolled_on", value))
    result = export(study_dir, tmp_path / "out", how)
    assert refused(result, tmp_path / "out") == [
        f"{path}:4: column 'enrolled_on': '{value}' {expected}"
    ]


@pytest.fixture(scope="module")
def day_month_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A synthetic study of 200 participants whose every visit date Excel wrote as dd/mm/yyyy,
    and how many visits it has."""
    folder = tmp_path_factory.mktemp("synthetic") / "study"
    write_synthetic_study(folder, 200, seed=3)
    path = folder / "visits.csv"
    header, rows = read_rows(path)
    column = header.index("visit_date")
    for row in rows:
        year, month, day = row[column].split("-")
        row[column] = f"{day}/{month}/{year}"
    save_as(path, CSV_UTF8, [header, *rows])
    return folder, len(rows)


def day_month_problem(folder: Path, line: int) -> str:
    header, rows = read_rows(folder / "visits.csv")
    value = rows[line - 2][header.index("visit_date")]
    return f"{folder / 'visits.csv'}:{line}: column 'visit_date': '{value}' {DAY_MONTH}"


@pytest.mark.parametrize("how", EXPORTS)
def test_one_wrong_column_is_a_few_lines_and_the_count_of_the_rest(
    day_month_study: tuple[Path, int], tmp_path: Path, how: str
) -> None:
    folder, visits = day_month_study
    assert visits > 1000
    result = export(folder, tmp_path / "out", how)
    assert refused(result, tmp_path / "out") == [
        day_month_problem(folder, 2),
        day_month_problem(folder, 3),
        day_month_problem(folder, 4),
        f"{folder / 'visits.csv'}: column 'visit_date': and {visits - 3} more rows with this "
        "problem",
        f"run again with --all-errors to list all {visits} problems",
    ]
    assert result.stderr.startswith(f"Error: {visits} problems in the study data\n")


@pytest.mark.parametrize("how", EXPORTS)
def test_all_errors_lists_every_row(
    day_month_study: tuple[Path, int], tmp_path: Path, how: str
) -> None:
    folder, visits = day_month_study
    result = export(folder, tmp_path / "out", how, "--all-errors")
    problems = refused(result, tmp_path / "out")
    assert problems == [day_month_problem(folder, line) for line in range(2, visits + 2)]
    assert result.stderr.startswith(f"Error: {visits} problems in the study data\n")


def test_kinds_of_problems_are_grouped_apart_in_the_order_they_are_met(
    study_dir: Path, tmp_path: Path
) -> None:
    path = study_dir / "visits.csv"
    header, rows = read_rows(path)
    for n, row in enumerate(rows[:6]):
        row[header.index("visit_date")] = "05/06/2017" if n % 2 else "2017-06-05 12:00:00"
    save_as(path, CSV_UTF8, [header, *rows])
    problems = refused(export(study_dir, tmp_path / "out", "bundle"), tmp_path / "out")
    time_of_day = "'2017-06-05 12:00:00' has a time of day: expected a date only (YYYY-MM-DD)"
    assert problems == [
        f"{path}:2: column 'visit_date': {time_of_day}",
        f"{path}:4: column 'visit_date': {time_of_day}",
        f"{path}:6: column 'visit_date': {time_of_day}",
        f"{path}:3: column 'visit_date': '05/06/2017' {DAY_MONTH}",
        f"{path}:5: column 'visit_date': '05/06/2017' {DAY_MONTH}",
        f"{path}:7: column 'visit_date': '05/06/2017' {DAY_MONTH}",
    ]
