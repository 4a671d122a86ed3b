"""The SQL-on-FHIR v2 specification's own test suite (tests/data/sql-on-fhir, a pinned commit of
FHIR/sql-on-fhir-v2) run through the compiler on DuckDB: every case, one test each.

A case passes when the rows are those expected (as a multiset: the specification does not order
rows; numbers compared as numbers), the columns come in the expected order where it says so, and a
case that expects an error raises a ViewError (never another exception).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fhir_admsc.views import duck
from fhir_admsc.views.definition import ViewError
from tests.conftest import DATA

SUITE = DATA / "sql-on-fhir"
# Cases this runner is known to fail, with the reason; none today.
KNOWN_FAILURES: dict[str, str] = {}


def _cases() -> list[Any]:
    cases = []
    for path in sorted(SUITE.glob("*.json")):
        suite = json.loads(path.read_text(encoding="utf-8"))
        for case in suite["tests"]:
            name = f"{path.stem}: {case['title']}"
            reason = KNOWN_FAILURES.get(name)
            marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
            cases.append(pytest.param(path, case, id=name, marks=marks))
    return cases


CASES = _cases()


def _value(value: Any) -> Any:
    """A cell as JSON would hold it, numbers as numbers (5 == 5.0; 0.95 to nine places)."""
    if isinstance(value, float):
        return int(value) if value.is_integer() else round(value, 9)
    if isinstance(value, list):
        return [_value(v) for v in value]
    return value


def _rows(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(
        json.dumps({k: _value(v) for k, v in row.items()}, sort_keys=True) for row in rows
    )


_connections: dict[Path, Any] = {}


def _loaded(path: Path) -> Any:
    """One DuckDB connection per file of the suite, holding that file's resources."""
    if path not in _connections:
        connection = duck.connect()
        duck.load_resources(connection, json.loads(path.read_text(encoding="utf-8"))["resources"])
        _connections[path] = connection
    return _connections[path]


def test_the_suite_is_the_pinned_one() -> None:
    assert len(CASES) == 134
    assert len(list(SUITE.glob("*.json"))) == 22
    assert "49fc1adffa8490e7cd5c1e8917d8eb24cbea9dee" in (SUITE / "SOURCE").read_text()


@pytest.mark.parametrize(("path", "case"), CASES)
def test_specification_case(path: Path, case: dict[str, Any]) -> None:
    connection = _loaded(path)
    if case.get("expectError"):
        with pytest.raises(ViewError):
            duck.run(connection, case["view"])
        return
    columns, rows = duck.run(connection, case["view"])
    if "expectColumns" in case:
        assert columns == case["expectColumns"]
    found = [dict(zip(columns, row, strict=True)) for row in rows]
    if "expectCount" in case:
        assert len(found) == case["expectCount"]
    if "expect" in case:
        assert _rows(found) == _rows(case["expect"])
