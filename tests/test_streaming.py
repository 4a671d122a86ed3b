"""NDJSON export participant by participant: the same files as the whole-study export, the same
defects reported, nothing written on failure, and the whole-study path for ungrouped tables; with
one process and with worker processes mapping shares of the participants (``--jobs``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fhir_admsc import export as export_module
from fhir_admsc.bundle import ndjson_files
from fhir_admsc.cli import cli, demo_folder
from fhir_admsc.errors import FileAccessError, InvalidDataError
from fhir_admsc.mappings import study as study_family
from fhir_admsc.mappings import study_to_fhir
from fhir_admsc.output import StagedFiles, write_files
from fhir_admsc.study import TABLES, Study
from fhir_admsc.tables import read_study, write_study
from tests.helpers import read_rows, scaled_study, set_cell, write_rows

NOT_GROUPED = "the rows are not grouped by participant"


def export(folder: Path, output: Path, jobs: int = 1) -> Result:
    return CliRunner().invoke(
        cli, ["export", str(folder), "--format", "ndjson", "-o", str(output), "--jobs", str(jobs)]
    )


@pytest.fixture(params=[1, 3], ids=["one-process", "three-workers"])
def jobs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Processes for the export; workers are used however small the study."""
    monkeypatch.setattr(export_module, "SMALLEST_STUDY", 1)
    return request.param


def grouped(study: Study) -> Study:
    """``study`` with every table's rows grouped by participant in participants.csv order (and
    imaging findings in the order of their reports), each group keeping its rows' order."""
    position = {p.participant_id: i for i, p in enumerate(study.participants)}
    tables = {
        table.attribute: sorted(
            getattr(study, table.attribute), key=lambda row: position[row.participant_id]
        )
        for table in TABLES[1:]
        if table.attribute != "imaging_findings"
    }
    report = {r.report_id: i for i, r in enumerate(tables["imaging_reports"])}
    tables["imaging_findings"] = sorted(study.imaging_findings, key=lambda f: report[f.report_id])
    return study.model_copy(update=tables)


@pytest.fixture
def grouped_dir(tmp_path: Path, demo_study: Study) -> Path:
    """The demo study written grouped by participant (as shipped, adverse_events.csv is not)."""
    write_study(grouped(demo_study), tmp_path / "study")
    return tmp_path / "study"


def whole_study_files(folder: Path) -> dict[str, str]:
    """The NDJSON files of the whole-study export of ``folder``."""
    return ndjson_files(study_to_fhir(read_study(folder)))


def files_in(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.iterdir())}


def whole_study_problems(folder: Path) -> str:
    with pytest.raises(InvalidDataError) as caught:
        read_study(folder)
    return str(caught.value)


def row_index(folder: Path, file: str, participant: str, nth: int = 0) -> int:
    """The index of the ``nth`` row of ``participant`` in a table."""
    header, rows = read_rows(folder / file)
    column = header.index("participant_id")
    return [i for i, row in enumerate(rows) if row[column] == participant][nth]


@pytest.mark.parametrize(
    "copies",
    [pytest.param(1, id="demo"), pytest.param(40, id="scaled-360-participants")],
)
def test_streamed_files_equal_the_whole_study_export(
    tmp_path: Path,
    demo_study: Study,
    copies: int,
    jobs: int,
) -> None:
    folder = tmp_path / "study"
    write_study(grouped(scaled_study(demo_study, copies)), folder)
    result = export(folder, tmp_path / "out", jobs)
    assert result.exit_code == 0, result.output
    assert NOT_GROUPED not in result.stderr
    expected = whole_study_files(folder)
    assert files_in(tmp_path / "out") == expected
    count = sum(len(text.splitlines()) for text in expected.values())
    assert f"exported {count} resources of ADMSC-FSO794 to {len(expected)} NDJSON files" in (
        result.stderr
    )


def test_stale_ndjson_files_are_removed_and_others_kept(grouped_dir: Path, tmp_path: Path) -> None:
    out = earlier_output(tmp_path)
    (out / "Stale.ndjson").write_text("{}\n")
    result = export(grouped_dir, out)
    assert result.exit_code == 0, result.output
    assert NOT_GROUPED not in result.stderr
    assert files_in(out) == {**whole_study_files(grouped_dir), "notes.txt": "kept"}


def test_bom_and_crlf_stream_like_plain_files(grouped_dir: Path, tmp_path: Path, jobs: int) -> None:
    expected = whole_study_files(grouped_dir)
    for table in TABLES:
        path = grouped_dir / table.file
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    result = export(grouped_dir, tmp_path / "out", jobs)
    assert result.exit_code == 0, result.output
    assert files_in(tmp_path / "out") == expected


def move_row(folder: Path, file: str, index: int) -> int:
    """Move one row of a table to its end; returns the line it now starts on."""
    header, rows = read_rows(folder / file)
    rows.append(rows.pop(index))
    write_rows(folder / file, header, rows)
    return len(rows) + 1


@pytest.mark.parametrize(
    ("file", "index"),
    [
        pytest.param("visits.csv", 0, id="visit-of-P01-last"),
        pytest.param("procedures.csv", 2, id="procedure-of-P02-last"),
        pytest.param("imaging_findings.csv", 0, id="finding-of-first-report-last"),
    ],
)
def test_ungrouped_table_is_read_whole_with_the_same_output(
    grouped_dir: Path,
    tmp_path: Path,
    file: str,
    index: int,
    jobs: int,
) -> None:
    line = move_row(grouped_dir, file, index)
    result = export(grouped_dir, tmp_path / "out", jobs)
    assert result.exit_code == 0, result.output
    notices = [n for n in result.stderr.splitlines() if NOT_GROUPED in n]
    assert notices == [
        f"warning: {grouped_dir / file}:{line}: {NOT_GROUPED} in the order of "
        "participants.csv: reading the whole study into memory"
    ]
    assert files_in(tmp_path / "out") == whole_study_files(grouped_dir)


def test_the_demo_as_shipped_streams(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["export", "--demo", "--format", "ndjson", "-o", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    assert NOT_GROUPED not in result.stderr
    assert files_in(tmp_path / "out") == whole_study_files(demo_folder())


def earlier_output(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    (out / "Patient.ndjson").write_text("earlier\n")
    (out / "notes.txt").write_text("kept")
    return out


def assert_untouched(out: Path) -> None:
    assert files_in(out) == {"Patient.ndjson": "earlier\n", "notes.txt": "kept"}


def test_defect_in_the_fifth_participant_is_named_and_nothing_is_written(
    grouped_dir: Path,
    tmp_path: Path,
    jobs: int,
) -> None:
    index = row_index(grouped_dir, "outcomes.csv", "P05", 3)
    line = set_cell(grouped_dir, "outcomes.csv", index, "value", "eleven")
    out = earlier_output(tmp_path)
    result = export(grouped_dir, out, jobs)
    assert result.exit_code == 1
    assert (
        f"{grouped_dir / 'outcomes.csv'}:{line}: column 'value': 'eleven' is not a number"
        in result.stderr
    )
    assert whole_study_problems(grouped_dir) in result.stderr
    assert "Traceback" not in result.output
    assert_untouched(out)


def test_defect_that_is_not_utf8_is_named_like_the_whole_study_read(
    grouped_dir: Path,
    tmp_path: Path,
    jobs: int,
) -> None:
    path = grouped_dir / "visits.csv"
    line = row_index(grouped_dir, "visits.csv", "P05") + 2
    path.write_bytes(path.read_bytes().replace(b"P05,baseline", b"P\xe905,baseline"))
    out = earlier_output(tmp_path)
    result = export(grouped_dir, out, jobs)
    assert result.exit_code == 1
    problems = whole_study_problems(grouped_dir)
    assert f"visits.csv:{line}: column 'participant_id': 'Pé05' is not UTF-8 text" in problems
    assert problems in result.stderr
    assert_untouched(out)


# (file, participant, its nth row, column, new value): defects whose rows are in two participants'
# groups, or in rows of no participant.
CROSS_PARTICIPANT = [
    pytest.param(
        "procedures.csv", "P05", 2, "procedure_id", "P01-I1", id="procedure-id-of-another"
    ),
    pytest.param(
        "procedures.csv", "P05", 1, "harvest_procedure_id", "P01-H", id="harvest-of-earlier"
    ),
    pytest.param(
        "procedures.csv", "P01", 1, "harvest_procedure_id", "P05-H", id="harvest-of-later"
    ),
    pytest.param(
        "procedures.csv", "P01", 1, "harvest_procedure_id", "P05-I1", id="harvest-is-injection"
    ),
    pytest.param("procedures.csv", "P05", 1, "product_lot", "LOT-P01", id="lot-of-another"),
    pytest.param(
        "adverse_events.csv",
        "P03",
        0,
        "suspected_procedure_id",
        "P06-I1",
        id="suspect-of-later",
    ),
    pytest.param(
        "adverse_events.csv",
        "P06",
        0,
        "suspected_procedure_id",
        "P03-H",
        id="suspect-of-earlier",
    ),
    pytest.param("adverse_events.csv", "P06", 0, "event_id", "AE-002", id="event-id-of-another"),
    pytest.param(
        "imaging_reports.csv", "P05", 0, "report_id", "P01-MRI-0", id="report-id-of-another"
    ),
    pytest.param("visits.csv", "P05", 1, "participant_id", "P99", id="unknown-participant"),
    pytest.param("participants.csv", "P05", 0, "participant_id", "P01", id="participant-twice"),
]


@pytest.mark.parametrize(("file", "participant", "nth", "column", "value"), CROSS_PARTICIPANT)
def test_defects_across_participants_are_those_of_the_whole_study_read(
    grouped_dir: Path,
    tmp_path: Path,
    file: str,
    participant: str,
    nth: int,
    column: str,
    value: str,
    jobs: int,
) -> None:
    line = set_cell(
        grouped_dir, file, row_index(grouped_dir, file, participant, nth), column, value
    )
    out = earlier_output(tmp_path)
    result = export(grouped_dir, out, jobs)
    assert result.exit_code == 1, result.output
    problems = whole_study_problems(grouped_dir)
    assert f"{grouped_dir / file}:{line}: column " in problems
    assert problems in result.stderr
    assert NOT_GROUPED not in result.stderr
    assert_untouched(out)


def test_finding_of_no_report_is_named(grouped_dir: Path, tmp_path: Path, jobs: int) -> None:
    line = set_cell(grouped_dir, "imaging_findings.csv", 40, "report_id", "NOPE")
    result = export(grouped_dir, earlier_output(tmp_path), jobs)
    assert result.exit_code == 1
    assert (
        f"imaging_findings.csv:{line}: column 'report_id': 'NOPE' is not in imaging_reports.csv"
    ) in result.stderr
    assert whole_study_problems(grouped_dir) in result.stderr


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(RuntimeError("boom"), id="error"),
        pytest.param(KeyboardInterrupt(), id="ctrl-c"),
    ],
)
def test_interrupted_export_leaves_no_partial_or_temporary_file(
    grouped_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
    jobs: int,
) -> None:
    mapped = []
    patient = study_family.patient

    def failing_patient(participant, ctx):
        mapped.append(participant.participant_id)
        if participant.participant_id == "P05":
            raise error
        return patient(participant, ctx)

    monkeypatch.setattr(study_family, "patient", failing_patient)
    out = earlier_output(tmp_path)
    result = export(grouped_dir, out, jobs)
    assert result.exit_code != 0
    assert mapped == ["P01", "P02", "P03", "P04", "P05"]
    assert_untouched(out)


def test_staged_parts_are_joined_in_part_order(tmp_path: Path) -> None:
    with StagedFiles(tmp_path) as staged:
        staged.write("a.ndjson", b"second\n", part=1)
        staged.write("a.ndjson", b"first\n", part=0)
        staged.write("b.ndjson", b"only\n", part=3)
        staged.write("a.ndjson", b"third\n", part=1)
        assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == []
    assert files_in(tmp_path) == {"a.ndjson": "first\nsecond\nthird\n", "b.ndjson": "only\n"}


def test_staged_files_replace_targets_and_remove_stale_ones(tmp_path: Path) -> None:
    (tmp_path / "a.ndjson").write_text("old")
    (tmp_path / "gone.ndjson").write_text("old")
    with StagedFiles(tmp_path, stale=["a.ndjson", "gone.ndjson"]) as staged:
        staged.write("a.ndjson", b"new\n")
    assert files_in(tmp_path) == {"a.ndjson": "new\n"}


def test_failure_while_staging_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "a.ndjson").write_text("old")
    cannot = r"cannot write .*missing/b\.ndjson: No such file or directory"
    with (
        pytest.raises(FileAccessError, match=cannot),
        StagedFiles(tmp_path, ["a.ndjson"]) as staged,
    ):
        staged.write("a.ndjson", b"new\n", part=0)
        staged.write("a.ndjson", b"more\n", part=1)
        staged.write("missing/b.ndjson", b"no such folder\n")
    assert files_in(tmp_path) == {"a.ndjson": "old"}


def test_write_files_still_writes_whole_files(tmp_path: Path) -> None:
    write_files(tmp_path / "new", {"x.txt": b"x", "y.txt": b""})
    assert files_in(tmp_path / "new") == {"x.txt": "x", "y.txt": ""}


@pytest.fixture
def hundred_and_eight(tmp_path: Path, demo_study: Study) -> Path:
    """A grouped study of 108 participants: large enough for the workers by default."""
    folder = tmp_path / "study"
    write_study(grouped(scaled_study(demo_study, 12)), folder)
    assert len(read_rows(folder / "participants.csv")[1]) >= export_module.SMALLEST_STUDY
    return folder


def test_workers_write_the_files_one_process_writes(
    hundred_and_eight: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alone = export_module.export_ndjson(hundred_and_eight, tmp_path / "one", jobs=1)

    def one_process(*args, **kwargs):
        raise AssertionError("the export fell back to one process")

    monkeypatch.setattr(export_module, "_write_ndjson", one_process)
    counts: list[int] = []
    shared = export_module.export_ndjson(
        hundred_and_eight, tmp_path / "two", jobs=2, progress=counts.append
    )
    assert shared == alone
    assert files_in(tmp_path / "two") == files_in(tmp_path / "one")
    assert counts and counts[-1] == alone.count  # progress ends at the whole count
    assert not [p for p in (tmp_path / "two").iterdir() if p.name.startswith(".")]


def test_a_worker_that_dies_leaves_no_trace_and_one_process_finishes(
    hundred_and_eight: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = os.getpid()
    rows_to_fhir = export_module.rows_to_fhir

    def killed_in_workers(study):
        if os.getpid() != parent and study.participants[0].participant_id.endswith("-011"):
            os._exit(9)  # as the kernel's out-of-memory killer would end it
        return rows_to_fhir(study)

    monkeypatch.setattr(export_module, "rows_to_fhir", killed_in_workers)
    one_process = export_module._write_ndjson
    fallbacks = []
    monkeypatch.setattr(
        export_module, "_write_ndjson", lambda *a: fallbacks.append(1) or one_process(*a)
    )
    out = earlier_output(tmp_path)
    done = export_module.export_ndjson(hundred_and_eight, out, jobs=2)
    assert fallbacks == [1]
    assert files_in(out) == {**whole_study_files(hundred_and_eight), "notes.txt": "kept"}
    assert done.count == sum(
        len(t.splitlines()) for t in whole_study_files(hundred_and_eight).values()
    )
