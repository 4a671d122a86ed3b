"""Rows come back in the contract's order: the demo and a synthetic study folder, exported, shuffled
or pushed and pulled, are written back byte for byte as they were."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from fhir_admsc.cli import cli, demo_folder
from fhir_admsc.mappings import natural, study_from_fhir, study_to_fhir
from fhir_admsc.synth import write_synthetic_study
from fhir_admsc.tables import read_study, write_study
from tests.servers import FhirServer, running_sekmet


def files(folder: Path) -> dict[str, bytes]:
    """Every file of a folder by name, as bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module", params=["demo", "synthetic"])
def source(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo folder, and a synthetic study folder of 30 participants (P001..P030)."""
    if request.param == "demo":
        return demo_folder()
    folder = tmp_path_factory.mktemp("synthetic") / "study"
    write_synthetic_study(folder, 30, seed=11)
    return folder


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shuffled_resources_give_back_the_folder_byte_for_byte(
    source: Path, tmp_path: Path, seed: int
) -> None:
    resources = list(study_to_fhir(read_study(source)))
    random.Random(seed).shuffle(resources)
    write_study(study_from_fhir(resources), tmp_path / "back")
    assert files(tmp_path / "back") == files(source)


@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirServer]:
    """A server of this module's own, so the demo keeps its own study id there."""
    with running_sekmet(tmp_path_factory.mktemp("sekmet-order")) as server:
        yield server


def test_push_then_pull_gives_back_the_folder_byte_for_byte(
    fresh_server: FhirServer, source: Path, tmp_path: Path
) -> None:
    server = ["--server", fresh_server.base_url]
    pushed = CliRunner().invoke(cli, ["push", str(source), *server])
    assert pushed.exit_code == 0, pushed.output
    study_id = read_study(source).info.study_id
    pulled = CliRunner().invoke(
        cli, ["pull", *server, "--study", study_id, "-o", str(tmp_path / "back")]
    )
    assert pulled.exit_code == 0, pulled.output
    assert files(tmp_path / "back") == files(source)


@pytest.mark.parametrize(
    ("texts", "ordered"),
    [
        pytest.param(["P10", "P9", "P1"], ["P1", "P9", "P10"], id="numbers-as-numbers"),
        pytest.param(["P1", "P01", "P001"], ["P001", "P01", "P1"], id="ties-by-text"),
        pytest.param(["S2-P10", "S10-P1", "S2-P9"], ["S2-P9", "S2-P10", "S10-P1"], id="runs"),
        pytest.param(["b", "a2", "a10", "10"], ["10", "a2", "a10", "b"], id="mixed"),
    ],
)
def test_natural_order(texts: list[str], ordered: list[str]) -> None:
    assert sorted(texts, key=natural) == ordered
