"""Shared fixtures: the demo study, scratch copies of it, and a clean environment."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import Phase, settings

from fhir_admsc.cli import demo_folder
from fhir_admsc.study import Study
from fhir_admsc.tables import read_study
from tests.builds import one_at_a_time

DATA = Path(__file__).parent / "data"

pytest_plugins = ["tests.servers"]

# Property tests draw the same examples on every run and machine (CI reproduces a failure) and are
# never timed; a test may set fewer max_examples to stay quick. No explain phase: it reruns a
# failing example hundreds of times, a minute here, to point at lines the traceback names anyway.
settings.register_profile(
    "fhir-admsc",
    max_examples=50,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
)
settings.load_profile("fhir-admsc")


# The suite runs on every core (pytest-xdist, --dist loadgroup): each test file is one group, so a
# module's fixtures are made once, except that every test of a server or engine that is slow to
# start joins that one's group, so that one worker starts it. (pytest 9 keeps a node's id where
# xdist 3.8 cannot add the group to it: the test extra holds pytest below 9.)
STARTED_ONCE = {"reference": "hl7-validator", "hapi_server": "hapi", "spark": "spark"}


def _group(item: pytest.Item) -> str:
    names = getattr(item, "fixturenames", ())
    for fixture, group in STARTED_ONCE.items():
        if fixture in names:
            return group
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "hapi" in {
        v for v in callspec.params.values() if isinstance(v, str)
    }:
        return "hapi"  # a test given a server's name asks for the server when it runs
    if "spark" in item.name.lower():
        return "spark"  # the specification's cases on Spark ask for the session when they run
    return item.nodeid.split("::")[0]


def pytest_itemcollected(item: pytest.Item) -> None:  # before xdist reads the groups
    item.add_marker(pytest.mark.xdist_group(_group(item)))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long groups first (a worker takes the next group when it is free, in this order), so
    that no long group starts last; within a group the files keep their order."""
    first = list(STARTED_ONCE.values())
    items.sort(key=lambda item: first.index(group) if (group := _group(item)) in first else 3)


@pytest.fixture(autouse=True)
def _no_fhir_admsc_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see FHIR_ADMSC_* settings of the machine they run on."""
    for name in list(os.environ):
        if name.startswith("FHIR_ADMSC_"):
            monkeypatch.delenv(name)


NODE = Path(__file__).parent / "node"


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """The test suite's Node packages (tests/node/package-lock.json), installed once if missing."""
    installed = NODE / "node_modules" / ".package-lock.json"
    lock = NODE / "package-lock.json"
    with one_at_a_time(NODE):
        if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
            subprocess.run(
                ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--silent"],
                cwd=NODE,
                check=True,
            )
    return NODE / "node_modules"


@pytest.fixture(scope="session")
def demo_study() -> Study:
    return read_study(demo_folder())


@pytest.fixture
def study_dir(tmp_path: Path) -> Path:
    """A scratch copy of the demo study folder, free to edit."""
    target = tmp_path / "study"
    shutil.copytree(demo_folder(), target)
    return target
