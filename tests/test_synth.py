"""Synthetic study folders: reproducible, inside the data contract at any size, realistic enough."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from fhir_admsc.cli import cli
from fhir_admsc.errors import ConfigurationError
from fhir_admsc.mappings import study_from_fhir, study_to_fhir
from fhir_admsc.study import STUDY_FILE, TABLES, Study, check_study
from fhir_admsc.synth import synthesize, write_synthetic_study
from fhir_admsc.tables import read_study, write_study
from tests.helpers import read_rows, table_differences

SIZES = [pytest.param(n, id=f"{n}-participants") for n in (1, 7, 200)]
SEEDS = [pytest.param(seed, id=f"seed-{seed}") for seed in (1, 2, 3)]


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory):
    """Write (once per module) and read back the synthetic folder of a size and seed."""
    made: dict[tuple[int, int], tuple[Path, Study]] = {}

    def make(participants: int, seed: int) -> tuple[Path, Study]:
        if (participants, seed) not in made:
            folder = tmp_path_factory.mktemp(f"synth-{participants}-{seed}")
            write_synthetic_study(folder, participants, seed)
            made[participants, seed] = (folder, read_study(folder))
        return made[participants, seed]

    return make


def test_same_seed_gives_a_byte_identical_folder_and_another_seed_differs(tmp_path: Path) -> None:
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        result = run(
            "synth", "--participants", "30", "--seed", str(seed), "-o", str(tmp_path / name)
        )
        assert result.exit_code == 0, result.output
    first, again, other = (folder_bytes(tmp_path / name) for name in "abc")
    assert first == again
    assert first.keys() == other.keys()
    assert all(first[name] != other[name] for name in first if name != STUDY_FILE)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("participants", SIZES)
def test_streamed_folder_is_what_write_study_writes_for_the_same_study(
    tmp_path: Path, participants: int, seed: int
) -> None:
    write_synthetic_study(tmp_path / "streamed", participants, seed)
    write_study(synthesize(participants, seed), tmp_path / "models")
    assert folder_bytes(tmp_path / "streamed") == folder_bytes(tmp_path / "models")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("participants", SIZES)
def test_the_folder_keeps_the_data_contract(synthetic, participants: int, seed: int) -> None:
    _folder, study = synthetic(participants, seed)
    assert check_study(study) == []
    assert len(study.participants) == participants
    assert study.info.study_id == f"ADMSC-SYN-{seed}"
    assert "SYNTHETIC" in study.info.title
    dates = [v.visit_date for v in study.visits] + [p.performed_on for p in study.procedures]
    assert study.info.start <= min(dates) and max(dates) <= study.info.end


@pytest.mark.parametrize("seed", SEEDS)
def test_rows_are_grouped_by_participant_in_participants_order(synthetic, seed: int) -> None:
    folder, study = synthetic(200, seed)
    order = {p.participant_id: i for i, p in enumerate(study.participants)}
    owner = {r.report_id: r.participant_id for r in study.imaging_reports}
    for table in TABLES[1:]:
        if not (folder / table.file).exists():
            continue
        header, rows = read_rows(folder / table.file)
        if "participant_id" in header:
            owners = [row[header.index("participant_id")] for row in rows]
        else:
            owners = [owner[row[header.index("report_id")]] for row in rows]
        positions = [order[pid] for pid in owners]
        assert positions == sorted(positions), table.file


@pytest.mark.parametrize("seed", SEEDS)
def test_distributions_look_like_the_trial(synthetic, seed: int) -> None:
    _, study = synthetic(200, seed)
    n = len(study.participants)
    by_participant = Counter(v.participant_id for v in study.visits)
    completers = [p for p in study.participants if p.status != "withdrawn"]
    withdrawn = [p for p in study.participants if p.status == "withdrawn"]
    assert any(by_participant[p.participant_id] < 7 for p in completers), "no missed visit"
    assert 0 < len(withdrawn) < 0.15 * n

    assert sum(p.disc_level in ("L4-L5", "L5-S1") for p in study.participants) > 0.7 * n
    ages = [p.enrolled_on.year - p.birth_year for p in study.participants if p.birth_year]
    assert min(ages) >= 18 and max(ages) <= 75

    injections = [p for p in study.procedures if p.type == "injection"]
    harvests = {p.procedure_id: p for p in study.procedures if p.type == "harvest"}
    assert len(harvests) == n
    assert all(9_000_000 <= p.cell_dose <= 11_000_000 for p in injections)
    assert all(harvests[p.harvest_procedure_id].performed_on < p.performed_on for p in injections)
    repeats = [p for p in injections if p.injection_number == 2]
    assert 0.15 * n <= len(repeats) <= 0.45 * n

    events = study.adverse_events
    assert events
    assert Counter(e.severity for e in events)["mild"] > len(events) / 2
    assert sum(e.serious for e in events) <= 0.05 * n
    assert sum(e.suspected_procedure_id is not None for e in events) > len(events) / 2

    visits_with_mri = Counter(r.visit for r in study.imaging_reports)
    assert visits_with_mri["baseline"] == n
    assert 0.7 * n <= visits_with_mri["month12"] < n
    found_at = {r.report_id: r.visit for r in study.imaging_reports}
    findings = Counter((found_at[f.report_id], f.finding) for f in study.imaging_findings)
    for visit in ("baseline", "month12"):
        for finding in ("disc_height_mm", "modic_type", "annular_fissure", "protrusion"):
            assert findings[visit, finding] > 0, (visit, finding)

    pain = {
        (o.participant_id, o.visit): o.value for o in study.outcomes if o.measure == "nprs_average"
    }
    change = [
        pain[p.participant_id, "month12"] - pain[p.participant_id, "baseline"]
        for p in study.participants
        if (p.participant_id, "month12") in pain and (p.participant_id, "baseline") in pain
    ]
    improved = sum(c < 0 for c in change)
    assert improved > len(change) / 2
    assert improved < len(change), "nobody without improvement"


def test_outcome_values_follow_the_visit_schedule(synthetic) -> None:
    _, study = synthetic(200, 1)
    measures = {}
    for o in study.outcomes:
        measures.setdefault(o.visit, set()).add(o.measure)
    assert "week1" not in measures
    assert {"nprs_average", "odi", "work_capacity_pct"} <= measures["baseline"]
    assert measures["month3"] == {"nprs_average", "nprs_worst"}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("participants", SIZES)
def test_study_to_fhir_and_back_gives_the_same_tables(
    synthetic, participants: int, seed: int
) -> None:
    _folder, study = synthetic(participants, seed)
    back = study_from_fhir(study_to_fhir(study))
    # Equal row for row, in order; the differences (slow to compute at this size) only on failure.
    assert back == study, table_differences(study, back)


def test_the_export_validates_without_errors(tmp_path: Path) -> None:
    study, out = tmp_path / "study", tmp_path / "ndjson"
    assert run("synth", "--participants", "25", "--seed", "4", "-o", str(study)).exit_code == 0
    exported = run("export", str(study), "--format", "ndjson", "-o", str(out))
    assert exported.exit_code == 0, exported.output
    count = re.search(r"exported (\d+) resources", exported.stderr).group(1)
    result = run("validate", str(out))
    assert result.exit_code == 0, result.stdout
    assert f"{count} resources checked: 0 errors" in result.stderr


def test_cli_writes_the_folder_and_names_the_study(tmp_path: Path) -> None:
    result = run(
        "synth",
        "--participants",
        "3",
        "--seed",
        "9",
        "--study-id",
        "SYN-X",
        "-o",
        str(tmp_path / "s"),
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "3 synthetic participants of SYN-X" in result.stderr
    study = read_study(tmp_path / "s")
    assert study.info.study_id == "SYN-X"
    assert [p.participant_id for p in study.participants] == ["P001", "P002", "P003"]


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--participants", "0"], id="no-participants"),
        pytest.param(["--participants", "-3"], id="negative-participants"),
        pytest.param(["--participants", "many"], id="not-a-number"),
        pytest.param(["--participants", "2", "--seed", "-1"], id="negative-seed"),
        pytest.param(["--participants", "2", "--study-id", "bad id!"], id="bad-study-id"),
        pytest.param([], id="participants-missing"),
    ],
)
def test_bad_arguments_exit_2_and_write_nothing(tmp_path: Path, args: list[str]) -> None:
    result = run("synth", *args, "-o", str(tmp_path / "s"))
    assert result.exit_code == 2, result.output
    assert result.stderr
    assert not (tmp_path / "s").exists()


def test_the_library_refuses_an_empty_study_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="1 or more"):
        write_synthetic_study(tmp_path / "s", 0, 1)
    assert not (tmp_path / "s").exists()


def test_a_non_empty_folder_is_refused_unless_forced(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me\n")
    refused = run("synth", "--participants", "2", "-o", str(folder))
    assert refused.exit_code == 2
    assert "not empty" in refused.stderr and "--force" in refused.stderr
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]

    # A stale table of an earlier study must go: the forced folder holds one study only.
    (folder / "adverse_events.csv").write_text("participant_id\nP999\n")
    forced = run("synth", "--participants", "2", "--seed", "3", "-o", str(folder), "--force")
    assert forced.exit_code == 0, forced.output
    write_synthetic_study(tmp_path / "fresh", 2, 3)
    assert folder_bytes(folder) == {**folder_bytes(tmp_path / "fresh"), "notes.txt": b"keep me\n"}
