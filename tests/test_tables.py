"""Reading and writing the study folder: every kind of defect is named by file, line and column."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhir_admsc.errors import InvalidDataError
from fhir_admsc.study import TABLES, Study
from fhir_admsc.tables import read_study, write_study
from tests.helpers import read_rows, set_cell, write_rows


def problems_of(folder: Path) -> list[str]:
    with pytest.raises(InvalidDataError) as caught:
        read_study(folder)
    return [str(p) for p in caught.value.problems]


def test_demo_reads_with_every_table(demo_study: Study) -> None:
    assert demo_study.info.study_id == "ADMSC-FSO794"
    assert len(demo_study.participants) == 9
    for table in TABLES:
        assert getattr(demo_study, table.attribute), f"demo has no rows in {table.file}"


@pytest.mark.parametrize(
    ("file", "index", "column", "value", "expected"),
    [
        pytest.param(
            "participants.csv",
            0,
            "sex",
            "femal",
            "column 'sex': 'femal' is not allowed",
            id="bad-enum",
        ),
        pytest.param(
            "participants.csv",
            1,
            "enrolled_on",
            "2017-02-30",
            "column 'enrolled_on': '2017-02-30' is not a calendar date",
            id="bad-date",
        ),
        pytest.param(
            "participants.csv",
            1,
            "enrolled_on",
            "03/07/2017",
            "'03/07/2017' is not a date in the form YYYY-MM-DD (the order of day and month",
            id="date-format",
        ),
        pytest.param(
            "participants.csv",
            2,
            "participant_id",
            "",
            "column 'participant_id': is required (the cell is empty)",
            id="empty-required",
        ),
        pytest.param(
            "participants.csv",
            2,
            "participant_id",
            "P 03",
            "is not an identifier",
            id="bad-identifier",
        ),
        pytest.param(
            "participants.csv", 0, "birth_year", "1968.5", "is not an integer", id="bad-integer"
        ),
        pytest.param(
            "outcomes.csv",
            0,
            "value",
            "11",
            "column 'value': '11' is out of range for nprs_average: expected an integer "
            "from 0 to 10",
            id="out-of-range",
        ),
        pytest.param(
            "outcomes.csv",
            0,
            "value",
            "6.5",
            "is not allowed for nprs_average",
            id="integer-measure",
        ),
        pytest.param(
            "outcomes.csv",
            0,
            "measure",
            "nprs_avg",
            "column 'measure': 'nprs_avg'",
            id="unknown-measure",
        ),
        pytest.param(
            "adverse_events.csv",
            0,
            "serious",
            "yes",
            "'yes' is not a boolean (expected true or false)",
            id="bad-boolean",
        ),
        pytest.param(
            "imaging_findings.csv",
            3,
            "value",
            "maybe",
            "expected absent or present",
            id="bad-presence",
        ),
        pytest.param(
            "procedures.csv",
            1,
            "injection_number",
            "3",
            "column 'injection_number'",
            id="injection-number",
        ),
        pytest.param(
            "procedures.csv",
            1,
            "viability_pct",
            "120",
            "expected a number from 0 to 100",
            id="viability-range",
        ),
        pytest.param(
            "imaging_reports.csv", 0, "study_uid", "1.2.abc", "is not a DICOM UID", id="dicom-uid"
        ),
    ],
)
def test_cell_defect_named_by_file_line_column(
    study_dir: Path, file: str, index: int, column: str, value: str, expected: str
) -> None:
    line = set_cell(study_dir, file, index, column, value)
    problems = problems_of(study_dir)
    assert any(p.startswith(f"{study_dir / file}:{line}: ") and expected in p for p in problems), (
        problems
    )


@pytest.mark.parametrize(
    ("file", "index", "column", "value", "expected"),
    [
        pytest.param(
            "visits.csv",
            0,
            "participant_id",
            "P99",
            "'P99' is not in participants.csv",
            id="unknown-participant",
        ),
        pytest.param(
            "outcomes.csv",
            0,
            "visit",
            "month24",
            "column 'visit': 'month24' is not in visits.csv for participant P01",
            id="visit-missing",
        ),
        pytest.param(
            "participants.csv", 1, "participant_id", "P01", "is a duplicate", id="duplicate-id"
        ),
        pytest.param(
            "procedures.csv",
            1,
            "cell_dose",
            "",
            "column 'cell_dose': is required for an injection",
            id="injection-without-dose",
        ),
        pytest.param(
            "procedures.csv",
            0,
            "cell_dose",
            "10000000",
            "is for injections only",
            id="harvest-with-dose",
        ),
        pytest.param(
            "visits.csv",
            6,
            "visit_date",
            "2017-06-10",
            "is not after the month9 visit",
            id="visit-dates-out-of-order",
        ),
        pytest.param(
            "visits.csv",
            0,
            "visit_date",
            "2017-01-01",
            "is before enrolment of P01",
            id="visit-before-enrolment",
        ),
        pytest.param(
            "adverse_events.csv",
            0,
            "resolved_on",
            "2017-08-01",
            "is before onset_on",
            id="resolved-before-onset",
        ),
        pytest.param(
            "adverse_events.csv",
            0,
            "suspected_procedure_id",
            "P01-I1",
            "is a procedure of another participant (P01)",
            id="suspect-of-other",
        ),
        pytest.param(
            "participants.csv", 0, "site_id", "S9", "is not a site of study.json", id="unknown-site"
        ),
        pytest.param(
            "participants.csv",
            0,
            "status",
            "withdrawn",
            "column 'withdrawn_on': is required when status is withdrawn",
            id="withdrawn-without-date",
        ),
        pytest.param(
            "imaging_findings.csv",
            0,
            "report_id",
            "NOPE",
            "is not in imaging_reports.csv",
            id="finding-without-report",
        ),
        pytest.param(
            "procedures.csv",
            1,
            "harvest_procedure_id",
            "P02-H",
            "is a harvest of another participant",
            id="harvest-of-other",
        ),
        pytest.param(
            "procedures.csv",
            1,
            "performed_on",
            "2017-06-01",
            "is before its harvest",
            id="injection-before-harvest",
        ),
    ],
)
def test_cross_table_defect_named_by_file_line_column(
    study_dir: Path, file: str, index: int, column: str, value: str, expected: str
) -> None:
    line = set_cell(study_dir, file, index, column, value)
    problems = problems_of(study_dir)
    assert any(p.startswith(f"{study_dir / file}:{line}: ") and expected in p for p in problems), (
        problems
    )


def test_duplicate_injection_number_names_the_lines_of_both_rows(study_dir: Path) -> None:
    header, rows = read_rows(study_dir / "procedures.csv")
    second = next(i for i, r in enumerate(rows) if r[header.index("procedure_id")] == "P04-I2")
    line = set_cell(study_dir, "procedures.csv", second, "injection_number", "1")
    first_line = line - 1  # P04-I1 is the row before
    problems = [p for p in problems_of(study_dir) if "one injection of each number" in p]
    assert [p.split(": column")[0] for p in problems] == [
        f"{study_dir / 'procedures.csv'}:{first_line}",
        f"{study_dir / 'procedures.csv'}:{line}",
    ], problems


def test_lot_rows_must_agree(study_dir: Path) -> None:
    header, rows = read_rows(study_dir / "procedures.csv")
    lots = [i for i, r in enumerate(rows) if r[header.index("product_lot")] == "LOT-P04"]
    assert len(lots) == 2
    line = set_cell(study_dir, "procedures.csv", lots[1], "viability_pct", "50")
    problems = problems_of(study_dir)
    assert any(
        f"procedures.csv:{line}: column 'viability_pct': '50' differs from the other "
        "injections of lot LOT-P04" in p
        for p in problems
    ), problems


def test_every_defect_of_a_file_is_reported(study_dir: Path) -> None:
    set_cell(study_dir, "outcomes.csv", 0, "value", "11")
    set_cell(study_dir, "outcomes.csv", 5, "value", "-1")
    set_cell(study_dir, "participants.csv", 3, "sex", "x")
    problems = problems_of(study_dir)
    assert len(problems) == 3, problems
    assert sum("outcomes.csv" in p for p in problems) == 2


def test_unknown_column_is_an_error(study_dir: Path) -> None:
    header, rows = read_rows(study_dir / "visits.csv")
    write_rows(study_dir / "visits.csv", [*header, "vist_note"], [[*r, ""] for r in rows])
    problems = problems_of(study_dir)
    assert problems == [
        f"{study_dir / 'visits.csv'}:1: column 'vist_note': is not a column of "
        "visits.csv (expected participant_id, visit, visit_date)"
    ]


def test_missing_required_column_is_an_error(study_dir: Path) -> None:
    header, rows = read_rows(study_dir / "visits.csv")
    keep = [i for i, c in enumerate(header) if c != "visit_date"]
    write_rows(
        study_dir / "visits.csv", [header[i] for i in keep], [[r[i] for i in keep] for r in rows]
    )
    assert any(
        "visits.csv:1: column 'visit_date': is missing from the header" in p
        for p in problems_of(study_dir)
    )


def test_ragged_row_is_an_error(study_dir: Path) -> None:
    with (study_dir / "visits.csv").open("a") as f:
        f.write("P01,month24\n")
    _, rows = read_rows(study_dir / "visits.csv")
    assert any(
        f"visits.csv:{len(rows) + 1}: has 2 cells, the header has 3" in p
        for p in problems_of(study_dir)
    )


def test_line_numbers_count_quoted_line_breaks(study_dir: Path) -> None:
    header, rows = read_rows(study_dir / "procedures.csv")
    rows[0][header.index("notes")] = "first line\nsecond line"
    write_rows(study_dir / "procedures.csv", header, rows)
    line = set_cell(study_dir, "procedures.csv", 1, "guidance", "xray")
    problems = problems_of(study_dir)
    assert any(f"procedures.csv:{line + 1}: column 'guidance'" in p for p in problems), problems


def test_bom_and_crlf_are_tolerated(study_dir: Path, demo_study: Study) -> None:
    for table in TABLES:
        path = study_dir / table.file
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    assert read_study(study_dir) == demo_study


def test_absent_tables_mean_no_rows(study_dir: Path) -> None:
    for name in ["adverse_events.csv", "medications.csv", "imaging_findings.csv"]:
        (study_dir / name).unlink()
    study = read_study(study_dir)
    assert study.adverse_events == [] and study.medications == [] and study.imaging_findings == []


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param('{"study_id": "X",', "study.json:1: is not valid JSON", id="broken-json"),
        pytest.param("[]", "must hold one JSON object", id="not-object"),
        pytest.param(
            '{"study_id": "X", "title": "T", "status": "done", "arm": {"name": "a"}}',
            "column 'status': 'done' is not allowed",
            id="bad-status",
        ),
        pytest.param(
            '{"study_id": "X", "title": "T", "status": "active", "arm": {"name": "a"}, "phase": 1}',
            "column 'phase': '1' is not a known key",
            id="unknown-key",
        ),
        pytest.param(
            '{"study_id": "X", "status": "active", "arm": {"name": "a"}}',
            "column 'title': is required",
            id="missing-key",
        ),
        pytest.param(
            '{"study_id": "X", "title": "T", "status": "active", "arm": {}}',
            "column 'arm.name': is required",
            id="nested-missing",
        ),
    ],
)
def test_study_json_defects(study_dir: Path, content: str, expected: str) -> None:
    (study_dir / "study.json").write_text(content)
    problems = problems_of(study_dir)
    assert any(expected in p and "study.json" in p for p in problems), problems


def test_missing_folder_and_study_json(tmp_path: Path) -> None:
    assert problems_of(tmp_path / "nope") == [
        f"{tmp_path / 'nope'}: is not a study folder (no such directory)"
    ]
    assert "is missing: every study folder needs a study.json" in problems_of(tmp_path)[0]


def test_write_then_read_gives_the_same_study(tmp_path: Path, demo_study: Study) -> None:
    write_study(demo_study, tmp_path / "copy")
    assert read_study(tmp_path / "copy") == demo_study


def test_writer_reproduces_the_demo_files_byte_for_byte(tmp_path: Path, demo_study: Study) -> None:
    from fhir_admsc.cli import demo_folder

    write_study(demo_study, tmp_path / "copy")
    for path in sorted(demo_folder().iterdir()):
        assert (tmp_path / "copy" / path.name).read_bytes() == path.read_bytes(), path.name


def test_writer_keeps_empty_optional_cells_empty(study_dir: Path, tmp_path: Path) -> None:
    set_cell(study_dir, "participants.csv", 0, "birth_year", "")
    set_cell(study_dir, "participants.csv", 0, "status", "withdrawn")
    set_cell(study_dir, "participants.csv", 0, "withdrawn_on", "2018-01-02")
    set_cell(study_dir, "participants.csv", 0, "withdrawal_reason", 'moved away, "far"')
    study = read_study(study_dir)
    write_study(study, tmp_path / "out")
    header, rows = read_rows(tmp_path / "out" / "participants.csv")
    assert rows[0][header.index("birth_year")] == ""
    assert rows[0][header.index("withdrawal_reason")] == 'moved away, "far"'
    assert read_study(tmp_path / "out") == study


def test_writer_removes_tables_that_have_no_rows_any_more(
    tmp_path: Path, demo_study: Study
) -> None:
    write_study(demo_study, tmp_path / "out")
    write_study(demo_study.model_copy(update={"adverse_events": []}), tmp_path / "out")
    assert not (tmp_path / "out" / "adverse_events.csv").exists()
    assert json.loads((tmp_path / "out" / "study.json").read_text())["study_id"] == "ADMSC-FSO794"
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


def test_non_utf8_table_is_named_by_line_and_column(study_dir: Path) -> None:
    (study_dir / "visits.csv").write_bytes(
        "participant_id,visit,visit_date\nP\xe9".encode("latin-1")
    )
    assert problems_of(study_dir) == [
        f"{study_dir / 'visits.csv'}:2: column 'participant_id': 'Pé' is not UTF-8 text (the "
        'file looks like Windows-1252, as Excel\'s "CSV (Comma delimited)" saves it): save it '
        'from Excel as "CSV UTF-8 (Comma delimited)"'
    ]


def test_broken_quoting_is_named_with_its_line(study_dir: Path) -> None:
    with (study_dir / "visits.csv").open("a") as f:
        f.write('P01,"month24,2019-01-01\n')
    _, rows = read_rows(study_dir / "visits.csv")
    problems = problems_of(study_dir)
    assert any(f"visits.csv:{len(rows) + 1}: is not valid CSV" in p for p in problems), problems
