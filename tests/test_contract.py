"""The study data contract page says what the reader checks, and `fhir-admsc template` writes an
empty study folder that reads back and, once filled in, exports."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
from click.testing import CliRunner

from fhir_admsc import contract, output
from fhir_admsc import terminology as term
from fhir_admsc.cli import cli
from fhir_admsc.study import (
    _IDENTIFIER,
    STUDY_FILE,
    TABLES,
    Arm,
    Participant,
    Procedure,
    Study,
    StudyInfo,
    check_study,
)
from fhir_admsc.tables import read_study
from tests.helpers import read_rows, write_rows

ROOT = Path(__file__).parent.parent
PAGE = (ROOT / contract.PAGE).read_text(encoding="utf-8")
FILES = [STUDY_FILE, *(table.file for table in TABLES)]
MODELS = {STUDY_FILE: StudyInfo} | {table.file: table.model for table in TABLES}


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def section(file: str) -> str:
    """The part of the page on one file, up to the next file's."""
    return PAGE.split(f"\n## {file}\n", 1)[1].split("\n## ", 1)[0]


def literal_codes(annotation: Any) -> list[Any]:
    """Every code a type allows, looking inside unions, Annotated and lists."""
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    return [code for arg in get_args(annotation) for code in literal_codes(arg)]


def test_the_committed_page_is_the_generated_one() -> None:
    assert contract.page() == PAGE, "run `python -m fhir_admsc.contract` and commit the page"


def test_the_module_writes_the_page_to_the_path_given(tmp_path: Path) -> None:
    page = tmp_path / "study-data.md"
    done = subprocess.run(
        [sys.executable, "-m", "fhir_admsc.contract", str(page)], capture_output=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == done.stderr == b""
    assert page.read_text(encoding="utf-8") == PAGE


@pytest.mark.parametrize("file", FILES)
def test_every_column_has_a_meaning_and_every_meaning_a_column(file: str) -> None:
    columns = contract.keys(file)
    meanings = contract.MEANINGS[file]
    assert not set(columns) - set(meanings), f"{file}: columns without a meaning"
    assert not set(meanings) - set(columns), f"{file}: meanings of no column"
    assert set(contract.FILES) == set(contract.RULES) == set(contract.MEANINGS) == set(FILES)
    for conditional in contract.REQUIRED_WHEN.get(file, {}):
        assert not MODELS[file].model_fields[conditional].is_required(), conditional


@pytest.mark.parametrize("file", FILES)
def test_the_page_shows_every_column_with_its_codes(file: str) -> None:
    text = section(file)
    assert ("Required." if file in (STUDY_FILE, "participants.csv") else "Optional:") in text
    for key in contract.keys(file):
        assert f"\n| `{key}` |" in text, key
    for name, field in MODELS[file].model_fields.items():
        for code in literal_codes(field.annotation):
            assert f"`{code}`" in text, (name, code)


@pytest.mark.parametrize(
    ("file", "measures"),
    [
        pytest.param("outcomes.csv", term.OUTCOME_MEASURES, id="measures"),
        pytest.param("imaging_findings.csv", term.IMAGING_FINDINGS, id="findings"),
    ],
)
def test_the_page_shows_every_measure_with_its_range_and_unit(
    file: str, measures: dict[str, term.Measure]
) -> None:
    rows = {line.split(" | ")[0]: line for line in section(file).splitlines()}
    for key, measure in measures.items():
        row = rows[f"| `{key}`"]
        assert measure.concept.display in row
        if measure.kind == "presence":
            assert all(f"`{code}`" in row for code in term.PRESENCE)
        else:
            assert measure.expected() in row
        if measure.unit:
            assert f"`{measure.unit[0]}`" in row


def test_the_page_states_the_format_rules_of_the_reader() -> None:
    assert f"`{_IDENTIFIER.pattern}`" in PAGE
    assert "`YYYY-MM-DD`" in PAGE and "`true` or `false`" in PAGE
    excel = PAGE.split("## Saving from Excel", 1)[1].split("\n## ", 1)[0]
    for said in ["CSV UTF-8 (Comma delimited)", "`yyyy-mm-dd`", "`TRUE`", "00:00:00", "`;`"]:
        assert said in excel, said
    for said in ["UTF-16", "Windows-1252", "`05/06/2017`"]:
        assert said in excel, said


def _procedure(kind: str, **cells: Any) -> Procedure:
    return Procedure(
        participant_id="P1", procedure_id=kind, type=kind, performed_on="2020-01-02", **cells
    )


def test_the_injection_columns_are_those_the_reader_holds_to_the_type() -> None:
    """What the page says of the columns of injections is what check_study enforces."""
    filled = {
        "disc_level": "L4-L5",
        "injection_number": 1,
        "cell_dose": 10_000_000,
        "product_lot": "LOT1",
        "viability_pct": 90,
        "harvest_procedure_id": "harvest",
    }
    info = StudyInfo(study_id="S", title="t", status="active", arm=Arm(name="a"))
    participant = Participant(
        participant_id="P1",
        sex="male",
        enrolled_on=date(2020, 1, 1),
        disc_level="L4-L5",
        status="on-study",
    )
    study = Study(
        info=info,
        participants=[participant],
        procedures=[_procedure("harvest", **filled), _procedure("injection")],
    )
    problems = check_study(study)
    only = {p.column for p in problems if p.message.startswith("is for injections only")}
    needed = {p.column for p in problems if p.message == "is required for an injection"}
    assert set(filled) == only == set(contract.INJECTION_COLUMNS)
    assert needed == {column for column, must in contract.INJECTION_COLUMNS.items() if must}
    withdrawn = participant.model_copy(update={"status": "withdrawn"})
    problems = check_study(Study(info=info, participants=[withdrawn]))
    assert [p.column for p in problems] == list(contract.REQUIRED_WHEN["participants.csv"])


def test_template_writes_every_file_with_its_header_only(tmp_path: Path) -> None:
    folder = tmp_path / "new"
    result = run("template", "-o", str(folder))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr == (
        f"wrote an empty study folder to {folder} (study.json and {len(TABLES)} tables); "
        f"what goes in each file and column: {contract.PAGE} in the fhir-admsc sources\n"
    )
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)
    for table in TABLES:
        assert (folder / table.file).read_text() == ",".join(table.columns) + "\n"
    info = json.loads((folder / STUDY_FILE).read_text())
    assert info["study_id"] == contract.DEFAULT_STUDY_ID
    assert info["title"].startswith("Replace with")
    study = read_study(folder)
    assert study.participants == [] and study.info == StudyInfo.model_validate(info)


def test_template_takes_the_study_id(tmp_path: Path) -> None:
    result = run("template", "-o", str(tmp_path / "new"), "--study-id", "ADMSC-2")
    assert result.exit_code == 0, result.output
    assert read_study(tmp_path / "new").info.study_id == "ADMSC-2"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        pytest.param(["--study-id", "bad id!"], "study id 'bad id!' is not an identifier", id="id"),
        pytest.param([], "does not exist", id="missing-parent"),
    ],
)
def test_template_refuses_bad_arguments_and_writes_nothing(
    tmp_path: Path, args: list[str], said: str
) -> None:
    folder = tmp_path / "new" if args else tmp_path / "missing" / "new"
    result = run("template", "-o", str(folder), *args)
    assert result.exit_code == 2
    assert said in result.stderr
    assert list(tmp_path.iterdir()) == []


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_template_refuses_a_non_empty_folder_unless_forced(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    assert run("synth", "--participants", "2", "-o", str(folder)).exit_code == 0
    (folder / "README.md").write_text("keep me\n")
    before = _contents(folder)

    refused = run("template", "-o", str(folder))
    assert refused.exit_code == 2
    assert f"{folder} is not empty" in refused.stderr and "--force" in refused.stderr
    assert _contents(folder) == before

    forced = run("template", "-o", str(folder), "--force")
    assert forced.exit_code == 0, forced.output
    assert (folder / "README.md").read_text() == "keep me\n"
    assert read_rows(folder / "participants.csv")[1] == []
    assert read_study(folder).participants == []


def test_a_failed_template_leaves_the_folder_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "study"
    assert run("synth", "--participants", "2", "-o", str(folder)).exit_code == 0
    before = _contents(folder)
    synced = []

    def disk_full(handle: int) -> None:
        synced.append(handle)
        if len(synced) == 3:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(output.os, "fsync", disk_full)
    result = run("template", "-o", str(folder), "--force")
    assert result.exit_code == 2
    assert "No space left on device" in result.stderr
    assert _contents(folder) == before


def test_a_filled_in_template_exports(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    assert run("template", "-o", str(folder), "--study-id", "ADMSC-2").exit_code == 0
    header, _ = read_rows(folder / "participants.csv")
    row = {
        "participant_id": "P01",
        "sex": "female",
        "enrolled_on": "2020-03-02",
        "disc_level": "L4-L5",
        "status": "on-study",
    }
    write_rows(folder / "participants.csv", header, [[row.get(c, "") for c in header]])

    result = run("export", str(folder), "-o", str(tmp_path / "bundle.json"))
    assert result.exit_code == 0, result.output
    assert "exported 4 resources of ADMSC-2" in result.stderr
    bundle = json.loads((tmp_path / "bundle.json").read_text())
    resources = {e["resource"]["resourceType"]: e["resource"] for e in bundle["entry"]}
    assert sorted(resources) == ["Condition", "Patient", "ResearchStudy", "ResearchSubject"]
    assert resources["Patient"]["gender"] == "female"


def test_template_is_quiet_with_dash_q_and_has_help(tmp_path: Path) -> None:
    quiet = run("template", "-q", "-o", str(tmp_path / "new"))
    assert quiet.exit_code == 0 and quiet.output == ""
    helped = run("template", "-h")
    assert helped.exit_code == 0
    assert "--study-id" in helped.stdout and contract.DEFAULT_STUDY_ID in helped.stdout
