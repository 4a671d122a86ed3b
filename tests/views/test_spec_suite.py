"""The SQL-on-FHIR v2 specification's own test suite (tests/data/sql-on-fhir, a pinned commit of
FHIR/sql-on-fhir-v2) run through the compiler on DuckDB and on Spark: every case, one test each.

A case passes when the rows are those expected (as a multiset: the specification does not order
rows; numbers compared as numbers), the columns come in the expected order where it says so, and a
case that expects an error raises a ViewError (never another exception).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fhir_admsc.views import duck
from fhir_admsc.views import spark as views_on_spark
from fhir_admsc.views.definition import ViewError
from tests.conftest import DATA

SUITE = DATA / "sql-on-fhir"
# Cases an engine is known to fail, with the reason.
KNOWN_FAILURES: dict[tuple[str, str], str] = {
    (engine, f"fn_boundary: decimal {side}Boundary"): (
        "Spark's VARIANT keeps a decimal's value, not the digits it was written with (1.0 is "
        "stored as 1), and the boundary of a decimal depends on its written precision"
    )
    for engine in ["spark"]
    for side in ("low", "high")
}


def _cases() -> list[tuple[Path, str, dict[str, Any]]]:
    cases = []
    for path in sorted(SUITE.glob("*.json")):
        suite = json.loads(path.read_text(encoding="utf-8"))
        cases += [(path, f"{path.stem}: {case['title']}", case) for case in suite["tests"]]
    return cases


CASES = _cases()


def _params() -> list[Any]:
    params = []
    for engine in ("duckdb", "spark"):
        for _path, name, case in CASES:
            reason = KNOWN_FAILURES.get((engine, name))
            marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
            params.append(pytest.param(engine, name, case, id=f"{engine} {name}", marks=marks))
    return params


def _value(value: Any) -> Any:
    """A cell as JSON would hold it, numbers as numbers (5 == 5.0; 0.95 to nine places)."""
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float):
        return int(value) if value.is_integer() else round(value, 9)
    if isinstance(value, list):
        return [_value(v) for v in value]
    return value


def _rows(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(
        json.dumps({k: _value(v) for k, v in row.items()}, sort_keys=True) for row in rows
    )


Outcome = tuple[list[str], list[tuple[Any, ...]]] | ViewError


@pytest.fixture(scope="module")
def on_duckdb() -> dict[str, Outcome]:
    """Every case run on DuckDB, one connection per file of the suite."""
    found: dict[str, Outcome] = {}
    for path in sorted(SUITE.glob("*.json")):
        connection = duck.connect()
        duck.load_resources(connection, json.loads(path.read_text(encoding="utf-8"))["resources"])
        for file, name, case in CASES:
            if file == path:
                try:
                    found[name] = duck.run(connection, case["view"])
                except ViewError as e:
                    found[name] = e
    return found


@pytest.fixture(scope="module")
def on_spark(spark: Any) -> dict[str, Outcome]:
    """Every case run on Spark, four at a time (each file's resources a view of its own)."""
    for path in sorted(SUITE.glob("*.json")):
        resources = json.loads(path.read_text(encoding="utf-8"))["resources"]
        views_on_spark.load_resources(spark, resources, f"suite_{path.stem}")

    def one(item: tuple[Path, str, dict[str, Any]]) -> Outcome:
        path, _, case = item
        try:
            return views_on_spark.run(spark, case["view"], f"suite_{path.stem}")
        except ViewError as e:
            return e

    with ThreadPoolExecutor(4) as pool:
        return dict(zip([name for _, name, _ in CASES], pool.map(one, CASES), strict=True))


def test_the_suite_is_the_pinned_one() -> None:
    assert len(CASES) == 134
    assert len(list(SUITE.glob("*.json"))) == 22
    assert "49fc1adffa8490e7cd5c1e8917d8eb24cbea9dee" in (SUITE / "SOURCE").read_text()


@pytest.mark.parametrize(("engine", "name", "case"), _params())
def test_specification_case(
    request: pytest.FixtureRequest, engine: str, name: str, case: dict[str, Any]
) -> None:
    outcome = request.getfixturevalue(f"on_{engine}")[name]
    if case.get("expectError"):
        assert isinstance(outcome, ViewError), outcome
        return
    assert not isinstance(outcome, BaseException), outcome
    columns, rows = outcome
    if "expectColumns" in case:
        assert columns == case["expectColumns"]
    found = [dict(zip(columns, row, strict=True)) for row in rows]
    if "expectCount" in case:
        assert len(found) == case["expectCount"]
    if "expect" in case:
        assert _rows(found) == _rows(case["expect"])
