"""What an installed fhir-admsc needs is declared: every third-party module the package imports
comes from a distribution in pyproject.toml's dependencies (or, for an import guarded by
``except ImportError``, in an extra). A module that only the test extra brings would pass the
suite and break the README's first command."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "fhir_admsc"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement string (PEP 503)."""
    bare = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert bare, requirement
    return re.sub(r"[-_.]+", "-", bare.group()).lower()


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether an import sits in a ``try`` that handles ImportError."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.Try):
            for handler in node.handlers:
                names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
                if any(
                    getattr(n, "id", "") in ("ImportError", "ModuleNotFoundError") for n in names
                ):
                    return True
    return False


def _imports() -> dict[str, tuple[str, bool]]:
    """Top-level module -> (first file importing it, every import of it guarded)."""
    found: dict[str, tuple[str, bool]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in ("fhir_admsc", "__future__"):
                    continue
                where, guarded = found.get(top, (str(path.relative_to(ROOT)), True))
                found[top] = (where, guarded and _guarded(node, parents))
    return found


IMPORTS = _imports()
DISTRIBUTIONS = packages_distributions()
CORE = {_name(r) for r in PROJECT["dependencies"]}
EXTRAS = {_name(r) for rs in PROJECT["optional-dependencies"].values() for r in rs}


def test_the_scan_sees_the_package_imports() -> None:
    assert {"click", "requests", "pydantic", "fhirpathpy", "matplotlib"} <= IMPORTS.keys()
    assert IMPORTS["matplotlib"][1] and not IMPORTS["click"][1]


@pytest.mark.parametrize("module", sorted(IMPORTS))
def test_every_imported_module_is_declared(module: str) -> None:
    where, guarded = IMPORTS[module]
    provided = {_name(d) for d in DISTRIBUTIONS.get(module, [])}
    assert provided, f"{module} (imported in {where}) is installed by no distribution"
    declared = CORE | EXTRAS if guarded else CORE
    assert provided & declared, (
        f"{module} is imported in {where} but {', '.join(sorted(provided))} is not in "
        f"pyproject.toml's {'dependencies or extras' if guarded else 'dependencies'}"
    )
