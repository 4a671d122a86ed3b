"""The data contract's rules and the profiles stay one small function each: a new rule or profile
goes into the function of its table or family, not into one long body."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fhir_admsc"
LONGEST = 60  # lines, decorators and docstring included


def long_functions(source: str, longest: int = LONGEST) -> list[str]:
    """The functions of ``source`` longer than ``longest`` lines, with their length."""
    return [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > longest
    ]


@pytest.mark.parametrize("module", ["study.py", "tables.py", "conformance.py", "validation/run.py"])
def test_rules_and_profiles_are_small_functions(module: str) -> None:
    assert long_functions((PACKAGE / module).read_text(encoding="utf-8")) == []


def test_a_long_function_is_found() -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(LONGEST))
    assert long_functions(f"def f():\n{body}") == [f"f ({LONGEST + 1} lines)"]
