"""The registry of cross-table rules (study.RULES): each rule reads only the columns it declares,
the streamed reader keeps of other participants' rows every column the rules across participants
read, and a defect of each such rule reads the same streamed and whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_admsc.errors import InvalidDataError
from fhir_admsc.study import RULES, TABLES, Rule, Study
from fhir_admsc.tables import _OtherRows, read_participant_groups, write_study
from tests.helpers import set_cell
from tests.test_streaming import grouped, row_index, whole_study_problems

# (file, participant, its nth row, column, new value, the problem at that row) for each rule
# across participants: a defect that only rows of two participants show.
ACROSS: dict[str, tuple[str, str, int, str, str, str]] = {
    "_procedure_ids": (
        "procedures.csv",
        "P05",
        2,
        "procedure_id",
        "P01-I1",
        "column 'procedure_id': 'P01-I1' is a duplicate",
    ),
    "_harvests": (
        "procedures.csv",
        "P05",
        1,
        "harvest_procedure_id",
        "P01-H",
        "column 'harvest_procedure_id': 'P01-H' is a harvest of another participant",
    ),
    "_lots": (
        "procedures.csv",
        "P05",
        1,
        "product_lot",
        "LOT-P01",
        "column 'participant_id': 'P05' differs",
    ),
    "_event_ids": (
        "adverse_events.csv",
        "P06",
        0,
        "event_id",
        "AE-002",
        "column 'event_id': 'AE-002' is a duplicate",
    ),
    "_suspected_procedures": (
        "adverse_events.csv",
        "P03",
        0,
        "suspected_procedure_id",
        "P06-I1",
        "column 'suspected_procedure_id': 'P06-I1' is a procedure of another participant",
    ),
    "_report_ids": (
        "imaging_reports.csv",
        "P05",
        0,
        "report_id",
        "P01-MRI-0",
        "column 'report_id': 'P01-MRI-0' is a duplicate",
    ),
    "_finding_reports": (
        "imaging_findings.csv",
        "",
        40,
        "report_id",
        "NOPE",
        "column 'report_id': 'NOPE' is not in imaging_reports.csv",
    ),
}
RULES_ACROSS = [rule for rule in RULES if rule.across_participants]


@pytest.fixture
def grouped_dir(tmp_path: Path, demo_study: Study) -> Path:
    """The demo study written grouped by participant."""
    write_study(grouped(demo_study), tmp_path / "study")
    return tmp_path / "study"


def streamed_problems(folder: Path) -> str:
    with pytest.raises(InvalidDataError) as caught:
        for _ in read_participant_groups(folder):
            pass
    return str(caught.value)


def make_defect(folder: Path, name: str) -> str:
    """Make the defect of rule ``name`` in ``folder``; returns the start of the problem it shows."""
    file, participant, nth, column, value, says = ACROSS[name]
    index = row_index(folder, file, participant, nth) if participant else nth
    line = set_cell(folder, file, index, column, value)
    return f"{folder / file}:{line}: {says}"


def test_every_rule_across_participants_has_a_defect_below() -> None:
    assert [rule.check.__name__ for rule in RULES_ACROSS] == list(ACROSS)


def test_the_streamed_reader_keeps_every_column_the_rules_across_participants_read(
    grouped_dir: Path,
) -> None:
    kept = _OtherRows(grouped_dir).columns
    for rule in RULES_ACROSS:
        for attribute, columns in rule.reads.items():
            # imaging findings always travel with their report: no finding is shown elsewhere
            if attribute != "imaging_findings":
                assert set(columns) <= set(kept[attribute]), (rule.check.__name__, attribute)


class _Recorded:
    """A row that notes each column read of it."""

    def __init__(self, row: object, attribute: str, seen: set[tuple[str, str]]) -> None:
        self._row, self._attribute, self._seen = row, attribute, seen

    def __getattr__(self, name: str) -> object:
        self._seen.add((self._attribute, name))
        return getattr(self._row, name)


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.check.__name__)
def test_each_rule_reads_only_the_columns_it_declares(demo_study: Study, rule: Rule) -> None:
    seen: set[tuple[str, str]] = set()
    update: dict[str, object] = {"info": _Recorded(demo_study.info, "info", seen)}
    for table in TABLES:
        rows = getattr(demo_study, table.attribute)
        update[table.attribute] = [_Recorded(row, table.attribute, seen) for row in rows]
    assert list(rule.check(demo_study.model_copy(update=update))) == []
    assert seen <= {(a, column) for a, columns in rule.reads.items() for column in columns}


@pytest.mark.parametrize("name", list(ACROSS))
def test_a_defect_across_participants_reads_the_same_streamed_and_whole(
    grouped_dir: Path, name: str
) -> None:
    problem = make_defect(grouped_dir, name)
    problems = whole_study_problems(grouped_dir)
    assert problem in problems
    assert streamed_problems(grouped_dir) == problems


def test_a_defect_of_every_rule_across_participants_reads_the_same_streamed_and_whole(
    grouped_dir: Path,
) -> None:
    made = [make_defect(grouped_dir, name) for name in ACROSS]
    problems = whole_study_problems(grouped_dir)
    assert all(problem in problems for problem in made)
    assert streamed_problems(grouped_dir) == problems
