"""What a study folder holds: missing files of the contract, files that look like misnamed tables
(errors, naming the file meant), and files that are clearly no table (warnings), through every
command that reads a study folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import Result

from fhir_admsc.study import TABLES
from tests.conftest import DATA
from tests.test_excel import EXPORTS, export, refused, run
from tests.test_fuzz import BASE, FakeServer, run_with_server

GOLDEN = DATA / "demo_transaction.json"
SAVE_AS_CSV_UTF8 = 'save it from Excel as "CSV UTF-8 (Comma delimited)"'
NOT_OF_THE_CONTRACT = "is not a file of the study data contract"
NO_PARTICIPANTS = "is missing: every study folder needs a participants.csv"

# Every command that reads a study folder, with what it writes into ``out`` on success.
READERS = [
    *EXPORTS,
    pytest.param("report", id="report"),
    pytest.param("push", id="push-dry-run"),
]


def read_with(command: str, folder: Path, out: Path) -> Result:
    """One command that reads ``folder``; a push meets an empty server."""
    if command == "report":
        out.mkdir(exist_ok=True)
        return run("report", folder, "-o", out / "report.txt")
    if command == "push":
        out.mkdir(exist_ok=True)
        return run_with_server(FakeServer(), "push", folder, "--server", BASE, "--dry-run")
    return export(folder, out, command)


@pytest.mark.parametrize("command", READERS)
def test_a_folder_without_participants_is_refused(
    study_dir: Path, tmp_path: Path, command: str
) -> None:
    (study_dir / "participants.csv").unlink()
    result = read_with(command, study_dir, tmp_path / "out")
    assert refused(result, tmp_path / "out") == [
        f"{study_dir / 'participants.csv'}: {NO_PARTICIPANTS}"
    ]


@pytest.mark.parametrize("how", EXPORTS)
def test_a_folder_of_only_study_json_is_refused(study_dir: Path, tmp_path: Path, how: str) -> None:
    for table in TABLES:
        (study_dir / table.file).unlink()
    result = export(study_dir, tmp_path / "out", how)
    assert result.stderr.startswith("Error: 1 problem in the study data\n")
    assert refused(result, tmp_path / "out") == [
        f"{study_dir / 'participants.csv'}: {NO_PARTICIPANTS}"
    ]


@pytest.mark.parametrize("how", EXPORTS)
def test_a_folder_of_study_json_and_participants_exports(
    study_dir: Path, tmp_path: Path, how: str
) -> None:
    for table in TABLES:
        if not table.required:
            (study_dir / table.file).unlink()
    result = export(study_dir, tmp_path / "out", how)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr
    # 3 of the study, and a Patient, ResearchSubject and Condition for each of 9 participants
    assert result.stderr.startswith("exported 30 resources of ADMSC-FSO794")


@pytest.mark.parametrize(
    ("original", "name", "expected"),
    [
        pytest.param(
            "outcomes.csv",
            "outcomes (1).csv",
            f"{NOT_OF_THE_CONTRACT}: did you mean outcomes.csv? (rename it)",
            id="browser-copy",
        ),
        pytest.param(
            "outcomes.csv",
            "Outcomes.CSV",
            f"{NOT_OF_THE_CONTRACT}: did you mean outcomes.csv? (rename it)",
            id="capitals",
        ),
        pytest.param(
            "outcomes.csv",
            "outcomes.xlsx",
            f"{NOT_OF_THE_CONTRACT}: did you mean outcomes.csv? ({SAVE_AS_CSV_UTF8} under that "
            "name)",
            id="workbook",
        ),
        pytest.param(
            None,
            "Outcomes.xlsx",
            f"{NOT_OF_THE_CONTRACT}: a copy of outcomes.csv? (move it out of the folder)",
            id="workbook-next-to-its-csv",
        ),
        pytest.param(
            "adverse_events.csv",
            "Adverse events.tsv",
            f"{NOT_OF_THE_CONTRACT}: did you mean adverse_events.csv? ({SAVE_AS_CSV_UTF8} under "
            "that name)",
            id="spaces-and-tabs",
        ),
        pytest.param(
            "medications.csv",
            "medication.csv",
            f"{NOT_OF_THE_CONTRACT}: did you mean medications.csv? (rename it)",
            id="singular",
        ),
        pytest.param(
            None,
            "labs.csv",
            f"{NOT_OF_THE_CONTRACT} (study.json, participants.csv, visits.csv, procedures.csv, "
            "outcomes.csv, medications.csv, adverse_events.csv, imaging_reports.csv, "
            "imaging_findings.csv): rename it, or move it out of the folder",
            id="no-such-table",
        ),
    ],
)
@pytest.mark.parametrize("command", READERS)
def test_a_file_that_looks_like_a_misnamed_table_is_refused(
    study_dir: Path, tmp_path: Path, command: str, original: str | None, name: str, expected: str
) -> None:
    if original is None:
        (study_dir / name).write_bytes(b"PK\x03\x04")
    else:
        (study_dir / original).rename(study_dir / name)
    result = read_with(command, study_dir, tmp_path / "out")
    assert refused(result, tmp_path / "out") == [f"{study_dir / name}: {expected}"]


@pytest.mark.parametrize("how", EXPORTS)
def test_a_misnamed_study_json_is_named_with_the_missing_one(
    study_dir: Path, tmp_path: Path, how: str
) -> None:
    (study_dir / "study.json").rename(study_dir / "Study.JSON")
    result = export(study_dir, tmp_path / "out", how)
    assert refused(result, tmp_path / "out") == [
        f"{study_dir / 'Study.JSON'}: {NOT_OF_THE_CONTRACT}: did you mean study.json? (rename it)",
        f"{study_dir / 'study.json'}: is missing: every study folder needs a study.json",
    ]


NOT_TABLES = [
    ".DS_Store",
    "._participants.csv",
    "~$outcomes.xlsx",
    "Thumbs.db",
    "desktop.ini",
    "README.txt",
    "notes.md",
    "protocol.pdf",
    "CRF.docx",
    "demo-bundle.json",  # an export written beside the tables
]


@pytest.mark.parametrize("command", READERS)
def test_files_that_are_no_table_are_warned_of_and_left_out(
    study_dir: Path, tmp_path: Path, command: str
) -> None:
    for name in NOT_TABLES:
        (study_dir / name).write_bytes(b"\x00\x05\x16\x07")
    (study_dir / "old").mkdir()
    shutil.copy(study_dir / "visits.csv", study_dir / "old" / "visits.csv")
    result = read_with(command, study_dir, tmp_path / "out")
    assert result.exit_code == (3 if command == "push" else 0), result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        f"warning: {study_dir / name}: is not part of the study data contract: ignored"
        for name in sorted([*NOT_TABLES, "old"])
    ]
    if command == "bundle":
        assert (tmp_path / "out" / "bundle.json").read_bytes() == GOLDEN.read_bytes()
