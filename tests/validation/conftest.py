"""Fixtures of the validation tests: the HL7 reference validator (tests/reference), built once."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from tests.reference import harness


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> harness.Reference:
    """The reference validator jar (built by Maven unless up to date) and our package.tgz.

    Fails, never skips, when Java or Maven is missing: CI installs them.
    """
    missing = harness.missing_tools()
    if missing:
        pytest.fail(missing, pytrace=False)
    jar = harness.build()
    return harness.Reference(jar, harness.write_package(tmp_path_factory.mktemp("reference")))


@pytest.fixture(scope="session")
def reference_validate(
    reference: harness.Reference,
) -> Callable[[Iterable[Path]], dict[str, list[dict[str, Any]]]]:
    """``reference_validate(paths)``: the reference validator's issues by resource ("Type/id")."""
    return reference.validate
