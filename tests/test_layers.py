"""The module map of the README is the import order: each module imports only from its own line
of the map or the lines above it, and nothing is imported inside a function."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fhir_admsc"


def _map_lines() -> list[list[str]]:
    """The module groups of the README's "Where things live" block, top to bottom."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("### Where things live", 1)[1].split("```", 2)[1]
    groups = []
    for line in block.splitlines():
        if line and not line.startswith(" "):
            names = re.split(r",\s*", line.split("  ")[0].strip())
            groups.append([n.removesuffix(".py").removesuffix("/") for n in names])
    return groups


def _unit(path: Path) -> str:
    """The map's name for a module: its top-level module or subpackage under fhir_admsc."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imported_units(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == "fhir_admsc":
                if len(parts) > 1:
                    found.append((node.lineno, parts[1]))
                else:  # from fhir_admsc import x
                    found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "fhir_admsc" and len(parts) > 1:
                    found.append((node.lineno, parts[1]))
    return found


def _modules() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if p != PACKAGE / "__init__.py"]


def test_the_map_names_every_module() -> None:
    mapped = {name for group in _map_lines() for name in group}
    assert {_unit(p) for p in _modules()} == mapped


def test_modules_import_only_from_their_line_or_above() -> None:
    level = {name: i for i, group in enumerate(_map_lines()) for name in group}
    wrong = []
    for path in _modules():
        unit = _unit(path)
        for line, imported in _imported_units(ast.parse(path.read_text(encoding="utf-8"))):
            if imported != unit and level.get(imported, -1) > level[unit]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    assert wrong == []


# The command line imports what a command runs when the command runs, so that --version, --help
# and each command load only their own part (start-up); its imports still follow the map.
LAZY = {PACKAGE / "cli.py"}


def test_nothing_is_imported_inside_a_function() -> None:
    inside = []
    for path in _modules():
        if path in LAZY:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in ast.walk(tree):
            if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                for line, _ in _imported_units(function):  # optional extras may be: matplotlib
                    inside.append(f"{path.relative_to(ROOT)}:{line}")
    assert inside == []


def test_the_version_and_help_load_no_command() -> None:
    code = (
        "import sys; from click.testing import CliRunner; from fhir_admsc.cli import cli; "
        "CliRunner().invoke(cli, ['--version']); CliRunner().invoke(cli, ['validate', '--help']); "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith(('fhir_admsc', 'requests', "
        "'jwt', 'fhirpathpy', 'fhir', 'pydantic')))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    heavy = ("requests", "jwt", "fhirpathpy", "fhir.", "pydantic", "fhir_admsc.validation.engine")
    assert [m for m in loaded if m.startswith(heavy) or m == "fhir"] == [], loaded


def test_the_check_can_fail() -> None:
    source = "def f():\n    from fhir_admsc.cli import cli\n"
    assert _imported_units(ast.parse(source)) == [(2, "cli")]
