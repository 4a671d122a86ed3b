"""Every code of the study's code tables is written once, in terminology.py: the study models, the
synthetic studies, the report and its figures name terminology's constants, never the code text."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from fhir_admsc import terminology as term

PACKAGE = Path(__file__).resolve().parent.parent / "fhir_admsc"
MODULES = ["study.py", "synth.py", "report.py", "plots.py"]

# Words that are codes here and plain words or other systems' codes elsewhere (administrative
# gender "other" and "unknown", matplotlib's "none"): the scan cannot tell them apart.
COMMON_WORDS = {"other", "unknown", "none"}
# Code text that is not a code where it stands.
NOT_CODES = {
    ("synth.py", "paracetamol"): "a medication's name (its category is term.PARACETAMOL)",
    ("report.py", "baseline"): "the report table's field naming the baseline visit",
    ("plots.py", "baseline"): "the same field, read by the figures",
    ("plots.py", "protrusion"): "an axis label",
}


def codes() -> set[str]:
    """The codes of terminology's code tables, the ones study tables hold."""
    tables = [
        term.VISITS,
        term.DISC_LEVELS,
        term.OUTCOME_MEASURES,
        term.IMAGING_FINDINGS,
        term.PRESENCE,
        term.GUIDANCE,
        term.ANALGESIC_CATEGORIES,
        term.CAUSALITY,
        term.AE_SEVERITY_DISPLAY,
        term.AE_OUTCOME_DISPLAY,
        term.MEDICATION_STATUS,
        term.PROCEDURES,
    ]
    found = {code for table in tables for code in table} | {term.WITHDRAWN, term.OFF_STUDY}
    return found - COMMON_WORDS


def code_literals(source: str, module: str, wanted: set[str]) -> list[str]:
    """``line: 'code'`` for each string constant of ``source`` that is one of ``wanted`` (in
    f-strings too; docstrings and the NOT_CODES of ``module`` aside)."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        f"{module}:{node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and node.value in wanted
        and id(node) not in docstrings
        and (module, node.value) not in NOT_CODES
    ]


def test_the_code_tables_are_read_from_terminology() -> None:
    assert {"baseline", "month12", "L4-L5", "odi", "protrusion_mm", "taking", "harvest"} <= codes()


@pytest.mark.parametrize("module", MODULES)
def test_no_code_is_written_outside_terminology(module: str) -> None:
    source = (PACKAGE / module).read_text(encoding="utf-8")
    assert code_literals(source, module, codes()) == []


def test_a_code_literal_is_found() -> None:
    source = '"""baseline"""\nVISIT = "month12"\nx = f"{d[\'odi\']}"\n'
    assert code_literals(source, "x.py", codes()) == ["x.py:2: 'month12'", "x.py:3: 'odi'"]
