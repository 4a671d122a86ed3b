"""A local Spark session for the view tests that run on Spark (Java 17; started once)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fhir_admsc.views import spark as views_on_spark


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    session = views_on_spark.session("local[2]")
    yield session
    session.stop()
