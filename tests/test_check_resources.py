"""Reading FHIR files to check them, without keeping them (what the views' engines read after):
the same count, types and errors from one process and from two sharing the lines."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from fhir_admsc import resources
from fhir_admsc.cli import cli
from fhir_admsc.errors import InvalidDataError
from fhir_admsc.parallel import SMALLEST_BYTES, can_fork


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An NDJSON export large enough to be checked by two processes."""
    folder = tmp_path_factory.mktemp("check")
    runner = CliRunner()
    assert (
        runner.invoke(cli, ["synth", "--participants", "60", "-o", str(folder / "s")]).exit_code
        == 0
    )
    out = folder / "nd"
    assert (
        runner.invoke(
            cli, ["export", str(folder / "s"), "--format", "ndjson", "-o", str(out)]
        ).exit_code
        == 0
    )
    assert sum(p.stat().st_size for p in out.iterdir()) > SMALLEST_BYTES
    return out


@pytest.mark.skipif(not can_fork(), reason="two processes need fork")
def test_two_processes_count_and_type_as_one(export: Path) -> None:
    one: dict[str, set] = {}
    two: dict[str, set] = {}
    assert resources.check_resources(export, one, jobs=1) == resources.check_resources(
        export, two, jobs=2
    )
    assert one == two
    assert one[str(export / "Patient.ndjson")] == {"Patient"}


def _broken(export: Path, folder: Path, third: str, fourth: str) -> Path:
    """``export`` with lines 3 and 4 of its Observations replaced (one in each share of two),
    and a file that is not UTF-8."""
    folder.mkdir()
    for path in export.iterdir():
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        if path.name == "Observation.ndjson":
            lines[2], lines[3] = third + "\n", fourth + "\n"
        (folder / path.name).write_text("".join(lines), encoding="utf-8")
    (folder / "Zzz.ndjson").write_bytes(b"\xff\xfe\n")
    return folder


def _messages(folder: Path) -> list[str]:
    found = []
    for jobs in (1, 2):
        with pytest.raises(InvalidDataError) as raised:
            resources.check_resources(folder, jobs=jobs)
        found.append(raised.value.render(None))
    return found


def test_two_processes_report_every_problem_one_does(export: Path, tmp_path: Path) -> None:
    one, two = _messages(_broken(export, tmp_path / "b", "not json", '{"resourceType": 1'))
    assert one == two
    assert "3 problems in the FHIR input" in one
    assert "Observation.ndjson:3" in one and "Observation.ndjson:4" in one
    assert "Zzz.ndjson:1: is not UTF-8 text" in one


def test_a_limit_stops_two_processes_where_it_stops_one(export: Path, tmp_path: Path) -> None:
    """A number JSON cannot carry stops the reading: one process reports it alone (what it had
    found before is not reported), and so do two, though the other share read on."""
    one, two = _messages(_broken(export, tmp_path / "b", "not json", '{"value": NaN}'))
    assert one == two
    assert one.startswith("1 problem in")
    assert "Observation.ndjson:4: holds NaN" in one
